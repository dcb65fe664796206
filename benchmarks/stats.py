"""Latency statistics: percentiles, spread and throughput from raw samples.

Standalone (stdlib + numpy): it is copied next to the on-device runner.
"""

from __future__ import annotations

import numpy as np

PERCENTILES = (50, 90, 95, 99)


def summarize(samples_ms) -> dict:
    """p50/p90/p95/p99, mean, std (sample, ddof=1), min, max and n of latency samples in ms.

    Percentiles use linear interpolation between order statistics (numpy's default), the
    same definition `benchmark_app` and most vendors' tools report as the median.
    """
    values = np.asarray(samples_ms, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no latency samples")
    out = {f"p{p}": float(np.percentile(values, p)) for p in PERCENTILES}
    out.update(
        mean=float(values.mean()),
        std=float(values.std(ddof=1)) if values.size > 1 else 0.0,
        min=float(values.min()),
        max=float(values.max()),
        n=int(values.size),
    )
    return out


def throughput_per_s(n_calls: int, batch_size: int, wall_s: float) -> float:
    """Examples per second over the measured window (calls x batch / wall time)."""
    return float(n_calls * batch_size / wall_s) if wall_s > 0 else 0.0


def coefficient_of_variation(values) -> float:
    """std / mean (sample std); 0 for fewer than two values."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size < 2 or arr.mean() == 0:
        return 0.0
    return float(arr.std(ddof=1) / arr.mean())
