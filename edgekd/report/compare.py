"""`edgekd compare BASELINE.json CANDIDATE.json`: the latency regression gate for CI.

Entries are matched on (name, format, precision, target, threads, batch size, sequence length).
For each pair the relative change of the chosen statistic (p50 by default) gets a 95% confidence
interval by a percentile **bootstrap** of the ratio candidate/baseline: both sample sets are
resampled independently with replacement (2000 resamples, fixed seed, so a rerun prints the same
numbers). A regression is flagged only when the interval's *lower* bound is a slowdown beyond the
threshold — noise alone does not fail the gate. Entries without raw samples are compared on their
point values (a zero-width interval), and the table says "no samples, no interval".
Exit code: 0 nothing regressed, 1 something did; bad input raises EdgekdError (exit 2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekd.benchmarks.contracts import ContractError, Report
from edgekd.errors import EdgekdError
MATCH_KEY = ("name", "format", "precision", "target", "threads", "batch_size", "seq_len")
METRICS = {"p50": 50.0, "median": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0, "mean": None}
RESAMPLES, SEED, CONFIDENCE = 2000, 0, 0.95


def parse_threshold(text: str) -> float:
    """"5%" or "0.05" -> 0.05. A bare number above 1 is ambiguous and rejected."""
    raw = str(text).strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise EdgekdError(f"--max-slowdown expects a percentage like 5% or a fraction like 0.05, "
                          f"got '{text}'") from None
    if not raw.endswith("%") and value > 1:
        raise EdgekdError(f"--max-slowdown {text} is ambiguous: write {raw}% or {value / 100:g}")
    if value < 0:
        raise EdgekdError(f"--max-slowdown must not be negative, got '{text}'")
    return value


def load_entries(path: str | Path) -> list[dict[str, Any]]:
    """The entries of a report.json or `edgekd bench --out` file (schema edgekd.report/1)."""
    from edgekd.files import read_json

    try:
        data = read_json(path)
    except (OSError, ValueError) as exc:
        raise EdgekdError(f"cannot read {path}: {exc}") from None
    try:
        return Report.from_dict(data, str(path)).entries
    except ContractError as exc:
        raise EdgekdError(str(exc)) from None


def key_of(entry: dict[str, Any]) -> tuple:
    return tuple(entry.get(k) for k in MATCH_KEY)


def statistic(samples, metric: str, axis=None):
    """The chosen statistic (percentile or mean) of samples along `axis`."""
    import numpy as np

    q = METRICS[metric]
    return np.mean(samples, axis=axis) if q is None else np.percentile(samples, q, axis=axis)


def bootstrap_ratio(base, cand, metric: str = "p50", resamples: int = RESAMPLES,
                    seed: int = SEED) -> tuple[float, float, float]:
    """(point ratio, low, high): candidate/baseline ratio of `metric` with a percentile-bootstrap
    95% interval from independent resamples of the two sample sets."""
    import numpy as np

    base, cand = np.asarray(base, dtype=float), np.asarray(cand, dtype=float)
    rng = np.random.default_rng(seed)
    ratios = np.empty(resamples)
    # Chunks bound the memory of the index matrices (resamples x n) for long sample lists.
    chunk = max(1, min(resamples, 2_000_000 // max(len(base), len(cand), 1)))
    for start in range(0, resamples, chunk):
        n = min(chunk, resamples - start)
        b = statistic(base[rng.integers(0, len(base), (n, len(base)))], metric, axis=1)
        c = statistic(cand[rng.integers(0, len(cand), (n, len(cand)))], metric, axis=1)
        ratios[start:start + n] = c / b
    alpha = (1 - CONFIDENCE) / 2
    low, high = np.quantile(ratios, [alpha, 1 - alpha])
    return float(statistic(cand, metric) / statistic(base, metric)), float(low), float(high)


def compare_entry(base: dict[str, Any], cand: dict[str, Any], metric: str,
                  threshold: float) -> dict[str, Any]:
    """One comparison row: values, change, interval, verdict (regressed/faster/unchanged/...)."""
    row = {"key": key_of(base), "name": base.get("name"), "base": None, "cand": None,
           "change": None, "low": None, "high": None, "method": "bootstrap", "verdict": "unchanged"}
    if base.get("status", "ok") != "ok" or cand.get("status", "ok") != "ok":
        # A candidate that stopped working is worse than any slowdown.
        row["verdict"] = "regressed (failed)" if base.get("status", "ok") == "ok" else "baseline failed"
        row["method"] = cand.get("error") or base.get("error") or "failed"
        return row
    bs, cs = base.get("samples_ms") or [], cand.get("samples_ms") or []
    if len(bs) >= 2 and len(cs) >= 2:
        row["base"], row["cand"] = float(statistic(bs, metric)), float(statistic(cs, metric))
        ratio, low, high = bootstrap_ratio(bs, cs, metric)
    else:
        stat = "mean" if metric == "mean" else ("p50" if metric == "median" else metric)
        b, c = (base.get("latency_ms") or {}).get(stat), (cand.get("latency_ms") or {}).get(stat)
        if not b or c is None:
            row.update(verdict="no data", method=f"no {stat} value")
            return row
        row["base"], row["cand"] = float(b), float(c)
        ratio = low = high = float(c) / float(b)
        row["method"] = "no samples, no interval"
    row.update(change=ratio - 1, low=low - 1, high=high - 1)
    if low - 1 > threshold:
        row["verdict"] = "REGRESSED"
    elif high - 1 < 0:
        row["verdict"] = "faster"
    return row


def compare_reports(baseline: list[dict[str, Any]], candidate: list[dict[str, Any]],
                    metric: str = "p50", threshold: float = 0.05) -> dict[str, Any]:
    """Match entries and compare each pair. Returns {"rows", "only_baseline", "only_candidate",
    "regressed": int}. Raises EdgekdError when nothing matches."""
    if metric not in METRICS:
        raise EdgekdError(f"--metric must be one of {', '.join(METRICS)}, got '{metric}'")
    cand_by_key = {key_of(e): e for e in candidate}
    base_keys = {key_of(e) for e in baseline}
    rows = [compare_entry(e, cand_by_key[key_of(e)], metric, threshold)
            for e in baseline if key_of(e) in cand_by_key]
    if not rows:
        raise EdgekdError("nothing to compare: no entry of the candidate matches the baseline on "
                          f"({', '.join(MATCH_KEY)})")
    return {"rows": rows, "metric": metric, "threshold": threshold,
            "only_baseline": [key_of(e) for e in baseline if key_of(e) not in cand_by_key],
            "only_candidate": [key_of(e) for e in candidate if key_of(e) not in base_keys],
            "regressed": sum(r["verdict"].startswith(("REGRESSED", "regressed")) for r in rows)}


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:+.1f}%"


def render_markdown(result: dict[str, Any]) -> str:
    """The comparison as a Markdown table plus the unmatched entries and the verdict line."""
    from edgekd.report.markdown import table
    from edgekd.report.rows import fmt_ms

    metric, threshold = result["metric"], result["threshold"]
    rows = []
    for r in result["rows"]:
        _, fmt, precision, target, threads, batch, seq = r["key"]
        interval = (f"[{_pct(r['low'])}, {_pct(r['high'])}]" if r["method"] == "bootstrap"
                    and r["low"] is not None else r["method"])
        rows.append([r["name"], target, threads, batch, seq, fmt_ms(r["base"]), fmt_ms(r["cand"]),
                     _pct(r["change"]), interval, r["verdict"]])
    out = [table(("artifact", "target", "threads", "batch", "seq", f"baseline {metric}",
                  f"candidate {metric}", "change", "95% CI", "verdict"), rows), ""]
    for label, keys in (("Only in the baseline", result["only_baseline"]),
                        ("Only in the candidate", result["only_candidate"])):
        if keys:
            out.append(f"{label} (not compared): " + "; ".join(
                f"{k[0]} on {k[3]} t{k[4]} b{k[5]} s{k[6]}" for k in keys))
    out.append(f"Method: percentile bootstrap of the {metric} ratio candidate/baseline, "
               f"{RESAMPLES} resamples, seed {SEED}, {int(CONFIDENCE * 100)}% interval; a regression "
               f"is flagged when the interval's lower bound exceeds +{100 * threshold:g}%.")
    n = result["regressed"]
    out.append(f"**{n} of {len(result['rows'])} regressed.**" if n else
               f"**No regression** in {len(result['rows'])} compared entries.")
    return "\n".join(out) + "\n"


def compare_command(args) -> int:
    """`edgekd compare BASELINE CANDIDATE [--metric p50] [--max-slowdown 5%]`: 0 ok, 1 regressed."""
    threshold = parse_threshold(args.max_slowdown)
    result = compare_reports(load_entries(args.baseline), load_entries(args.candidate),
                             args.metric, threshold)
    print(render_markdown(result), end="")
    return 1 if result["regressed"] else 0
