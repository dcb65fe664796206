"""`edgekd compare`: the regression gate on really measured latency samples.

The "artifact" here is a real computation timed in-process (sorting a numpy array k times per
call). The baseline and the candidate are measured in interleaved blocks, so that the load other
processes put on this shared 2-core machine falls on both alike — the same precaution a CI job
should take (or benchmark on a quiet machine).
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from edgekd.report.compare import bootstrap_ratio, compare_reports, parse_threshold
from edgekd.cli import main
from edgekd.errors import EdgekdError


def _one_call(data: np.ndarray, repeats: int) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        np.sort(data)
    return (time.perf_counter() - start) * 1e3


def measure_pair(base_repeats: int, cand_repeats: int, n: int = 240, block: int = 20, seed: int = 0):
    """Latency samples (ms) of two settings of the same computation, measured in alternating blocks."""
    data = np.random.default_rng(seed).random(2000)
    for _ in range(20):  # warm-up: caches, allocator
        _one_call(data, base_repeats)
    base, cand = [], []
    for _ in range(n // block):
        base += [_one_call(data, base_repeats) for _ in range(block)]
        cand += [_one_call(data, cand_repeats) for _ in range(block)]
    return base, cand


def entry(samples, name="student-onnx-int8-dynamic", target="local", **extra):
    values = np.asarray(samples)
    latency = {f"p{q}": float(np.percentile(values, q)) for q in (50, 90, 95, 99)}
    latency.update(mean=float(values.mean()), std=float(values.std(ddof=1)), n=len(samples))
    role, fmt, precision = name.split("-", 2)
    return {"name": name, "role": role, "format": fmt, "precision": precision, "target": target,
            "threads": 1, "batch_size": 1, "seq_len": 32, "status": "ok", "error": None,
            "latency_ms": latency, "samples_ms": list(samples), **extra}


def write_report(path, entries):
    path.write_text(json.dumps({"schema": "edgekd.report/1", "run": "t", "created": "now",
                                "environment": {}, "entries": entries}))
    return str(path)


def test_same_artifact_twice_is_never_flagged():
    flagged, changes = 0, []
    for seed in range(10):
        base, cand = measure_pair(5, 5, seed=seed)
        result = compare_reports([entry(base)], [entry(cand)], "p50", 0.05)
        flagged += result["regressed"]
        row = result["rows"][0]
        changes.append(row["change"])
        assert row["low"] <= row["change"] <= row["high"]
    print(f"same artifact twice: p50 changes {[f'{100 * c:+.1f}%' for c in changes]}")
    assert flagged == 0


def test_twenty_percent_slower_is_flagged(tmp_path, capsys):
    base, cand = measure_pair(5, 6)   # 6 sorts per call instead of 5: 20% more work
    ratio, low, high = bootstrap_ratio(base, cand, "p50")
    with capsys.disabled():
        print(f"\n20% more work: p50 ratio {ratio:.3f}, 95% CI [{low:.3f}, {high:.3f}]")
    assert 1.12 < ratio < 1.30 and low > 1.05
    baseline = write_report(tmp_path / "base.json", [entry(base)])
    candidate = write_report(tmp_path / "cand.json", [entry(cand)])
    assert main(["compare", baseline, candidate]) == 1
    out = capsys.readouterr().out
    assert "REGRESSED" in out and "1 of 1 regressed" in out and "bootstrap" in out
    with capsys.disabled():
        print(out)
    # The same slowdown under a 30% allowance passes the gate.
    assert main(["compare", baseline, candidate, "--max-slowdown", "30%"]) == 0
    assert main(["compare", baseline, baseline, "--metric", "mean"]) == 0
    assert "No regression" in capsys.readouterr().out


def test_bootstrap_interval_covers_a_known_ratio():
    rng = np.random.default_rng(1)
    base = rng.lognormal(np.log(10), 0.1, 300)
    cand = rng.lognormal(np.log(12), 0.1, 300)
    ratio, low, high = bootstrap_ratio(base, cand, "p50")
    assert low < 1.2 < high and high - low < 0.1
    assert bootstrap_ratio(base, cand, "p50") == (ratio, low, high)    # fixed seed: reproducible


def test_matching_point_values_failures_and_unmatched():
    rng = np.random.default_rng(2)
    samples = rng.lognormal(np.log(5), 0.05, 100).tolist()
    base = [entry(samples), entry(samples, name="student-openvino-fp16"),
            entry(samples, name="teacher-pytorch-fp32"), entry(samples, target="rpi4")]
    no_samples = entry(samples, name="student-openvino-fp16")
    no_samples["samples_ms"] = []
    no_samples["latency_ms"]["p50"] *= 1.5
    failed = {**entry(samples, name="teacher-pytorch-fp32"), "status": "failed", "error": "boom",
              "latency_ms": None, "samples_ms": []}
    cand = [entry(samples), no_samples, failed, entry(samples, threads_extra=1, name="student-tflite-fp16")]
    result = compare_reports(base, cand, "p50", 0.05)
    verdicts = {r["name"]: (r["verdict"], r["method"]) for r in result["rows"]}
    assert verdicts["student-onnx-int8-dynamic"][0] == "unchanged"
    assert verdicts["student-openvino-fp16"] == ("REGRESSED", "no samples, no interval")
    assert verdicts["teacher-pytorch-fp32"][0] == "regressed (failed)"
    assert result["regressed"] == 2
    assert [k[0] for k in result["only_baseline"]] == ["student-onnx-int8-dynamic"]   # the rpi4 one
    assert [k[0] for k in result["only_candidate"]] == ["student-tflite-fp16"]


def test_bad_input_exits_2(tmp_path, capsys):
    good = write_report(tmp_path / "good.json", [entry([1.0, 1.1, 1.2])])
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"schema": "edgekd.export/1", "entries": []}))
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    unmatched = write_report(tmp_path / "unmatched.json", [entry([1.0, 1.1], target="rpi4")])
    for args in ([str(tmp_path / "missing.json"), good], [good, str(other)], [str(broken), good],
                 [good, unmatched], [good, good, "--max-slowdown", "5"],
                 [good, good, "--max-slowdown", "fast"], [good, good, "--metric", "p42"]):
        assert main(["compare", *args]) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("edgekd compare: error:") and err.count("\n") == 1


def test_parse_threshold():
    assert parse_threshold("5%") == pytest.approx(0.05)
    assert parse_threshold("0.05") == pytest.approx(0.05)
    assert parse_threshold("0") == 0
    with pytest.raises(EdgekdError):
        parse_threshold("-5%")
