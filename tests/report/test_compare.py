"""`edgekd compare`: the wiring of the regression gate (matching, repeats, environments, outputs).

The statistics themselves are tested in test_gate_stats.py. Samples here are generated (no
timing): what is asserted is which entries are judged how, what is refused, and what is written.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgekd.cli import main
from edgekd.errors import EdgekdError
from edgekd.report.compare import compare_reports, machine_difference, parse_threshold

ENV = {"cpu": {"model": "Test CPU 9000", "cores_logical": 2, "flags": ["avx2", "fma"],
               "machine": "x86_64"},
       "memory_total_mb": 4096.0, "os": "Linux", "python": "3.11.7", "host": "box",
       "runtimes": {"onnxruntime": "1.23.2", "numpy": "2.1.0"}, "threads_env": {}}


def samples(p50: float, seed: int, n: int = 60) -> list[float]:
    return np.random.default_rng(seed).lognormal(np.log(p50), 0.03, n).tolist()


def entry(repeats, name="student-onnx-int8-dynamic", target="local", env=ENV, **extra):
    """An entry as bench writes it: per-repeat samples, pooled top level, its machine."""
    pooled = [x for r in repeats for x in r]
    values = np.asarray(pooled)
    latency = {f"p{q}": float(np.percentile(values, q)) for q in (50, 90, 95, 99)}
    latency.update(mean=float(values.mean()), std=float(values.std(ddof=1)), n=len(pooled))
    role, fmt, precision = name.split("-", 2)
    reps = [{"samples_ms": r, "latency_ms": {"p50": float(np.median(r)), "mean": float(np.mean(r)),
                                             "n": len(r)}} for r in repeats]
    return {"name": name, "role": role, "format": fmt, "precision": precision, "target": target,
            "threads": 1, "batch_size": 1, "seq_len": 32, "status": "ok", "error": None,
            "latency_ms": latency, "samples_ms": pooled, "repeats": reps,
            "environment": json.loads(json.dumps(env)), **extra}


def side(p50s, seed, **kw):
    return entry([samples(p, seed * 100 + i) for i, p in enumerate(p50s)], **kw)


def write_report(path, entries):
    path.write_text(json.dumps({"schema": "edgekd.report/1", "run": "t", "created": "now",
                                "environment": {}, "entries": entries}))
    return str(path)


def test_repeats_are_judged_per_repeat_with_holm_over_entries():
    base = [side([10.0, 10.2, 9.9, 10.1, 10.0], 1),
            side([20.0, 20.3, 19.8, 20.1, 20.0], 2, name="teacher-onnx-fp32")]
    cand = [side([13.0, 13.1, 12.9, 13.2, 13.0], 3),                      # +30%
            side([20.1, 19.9, 20.2, 20.0, 19.9], 4, name="teacher-onnx-fp32")]
    result = compare_reports(base, cand, "p50", 0.05)
    rows = {r["name"]: r for r in result["rows"]}
    slow, same = rows["student-onnx-int8-dynamic"], rows["teacher-onnx-fp32"]
    assert slow["verdict"] == "REGRESSED" and same["verdict"] == "unchanged"
    assert slow["n_repeats"] == [5, 5] and slow["warning"] is None
    assert slow["ci_low"] <= slow["ratio"] <= slow["ci_high"]
    assert slow["confidence"] == pytest.approx(1 - 0.05 / 2)     # simultaneous over 2 entries
    assert "welch" in result["method"].lower() and result["correction"] == "holm over 2 entries"
    assert result["regressed"] == 1


def test_a_flat_old_entry_is_one_repeat_with_a_warning():
    flat = side([10.0], 1)
    del flat["repeats"], flat["environment"]
    flat["cpu"] = {"model": "Test CPU 9000", "cores": 2, "flags": ["fma", "avx2", "sse3"]}
    row = compare_reports([flat], [side([10.0, 10.1, 9.9], 2)], "p50", 0.05)["rows"][0]
    assert row["n_repeats"] == [1, 3]
    assert "the baseline has no repeats" in row["warning"]


def test_a_different_machine_is_refused_in_one_line(tmp_path, capsys):
    other_cpu = {**ENV, "cpu": {**ENV["cpu"], "model": "Other CPU 1"}}
    other_ort = {**ENV, "runtimes": {"onnxruntime": "1.24.0", "numpy": "2.1.0"}}
    fewer_flags = {**ENV, "cpu": {**ENV["cpu"], "flags": ["avx2"]}}
    base = write_report(tmp_path / "b.json", [side([10, 10, 10], 1)])
    for env, words in ((other_cpu, "CPU model 'Test CPU 9000' vs 'Other CPU 1'"),
                       (other_ort, "runtime versions"), (fewer_flags, "baseline only: ['fma']")):
        cand = write_report(tmp_path / "c.json", [side([10, 10, 10], 2, env=env)])
        assert main(["compare", base, cand]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "not comparable" in err and words in err, err
        assert "--allow-different-env" in err
        # the override compares anyway and says so
        assert main(["compare", base, cand, "--allow-different-env"]) == 0
        assert "Different machines (compared anyway" in capsys.readouterr().out


def test_machine_of_an_old_entry_uses_its_cpu_fields():
    new = side([10], 1)
    old = {k: v for k, v in side([10], 2).items() if k != "environment"}
    old["cpu"] = {"model": "Test CPU 9000", "cores": 2, "flags": ["avx2", "fma", "sse3"]}
    assert machine_difference(new, old) is None
    old["cpu"]["cores"] = 8
    assert machine_difference(new, old) == "cores 2 vs 8"


def test_md_and_json_outputs(tmp_path, capsys):
    base = write_report(tmp_path / "b.json", [side([10.0, 10.1, 9.9, 10.0, 10.1], 1)])
    cand = write_report(tmp_path / "c.json", [side([12.0, 12.1, 11.9, 12.0, 12.2], 2)])
    md, js = tmp_path / "gate.md", tmp_path / "gate.json"
    assert main(["compare", base, cand, "--md", str(md), "--json", str(js)]) == 1
    out = capsys.readouterr().out
    assert md.read_text() == out
    assert "### edgekd latency gate (compare): 1 regressed" in out and "Method: " in out
    assert "none (one entry)" in out and "REGRESSED" in out
    doc = json.loads(js.read_text())
    assert doc["schema"] == "edgekd.gate/1" and doc["mode"] == "compare" and doc["regressed"] == 1
    (verdict,) = doc["entries"]
    assert verdict["verdict"] == "REGRESSED" and verdict["n_repeats"] == [5, 5]
    assert verdict["ci_low"] > 1.05 and doc["threshold"] == 0.05
    # the same slowdown under a 30% allowance passes, and an identical report too
    assert main(["compare", base, cand, "--max-slowdown", "30%", "--json", str(js)]) == 0
    assert json.loads(js.read_text())["regressed"] == 0
    assert main(["compare", base, base, "--metric", "mean"]) == 0
    assert "No regression" in capsys.readouterr().out


def test_matching_point_values_failures_and_unmatched():
    reps = [samples(5.0, s) for s in range(3)]
    base = [entry(reps), entry(reps, name="student-openvino-fp16"),
            entry(reps, name="teacher-pytorch-fp32"), entry(reps, target="rpi4")]
    no_samples = entry(reps, name="student-openvino-fp16")
    no_samples.update(samples_ms=[], repeats=[])
    no_samples["latency_ms"]["p50"] *= 1.5
    failed = {**entry(reps, name="teacher-pytorch-fp32"), "status": "failed", "error": "boom",
              "latency_ms": None, "samples_ms": [], "repeats": []}
    cand = [entry(reps), no_samples, failed, entry(reps, name="student-tflite-fp16")]
    result = compare_reports(base, cand, "p50", 0.05)
    verdicts = {r["name"]: (r["verdict"], r["method"]) for r in result["rows"]}
    assert verdicts["student-onnx-int8-dynamic"][0] == "unchanged"
    assert verdicts["student-openvino-fp16"] == ("REGRESSED", "no samples: point values, no test")
    assert verdicts["teacher-pytorch-fp32"][0] == "regressed (failed)"
    assert result["regressed"] == 2
    assert [k[0] for k in result["only_baseline"]] == ["student-onnx-int8-dynamic"]   # the rpi4 one
    assert [k[0] for k in result["only_candidate"]] == ["student-tflite-fp16"]


def test_bad_input_exits_2(tmp_path, capsys):
    good = write_report(tmp_path / "good.json", [entry([[1.0, 1.1, 1.2]])])
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"schema": "edgekd.export/1", "entries": []}))
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    unmatched = write_report(tmp_path / "unmatched.json", [entry([[1.0, 1.1]], target="rpi4")])
    bad_repeat = entry([[1.0, 1.1]])
    bad_repeat["repeats"][0]["samples_ms"] = "fast"
    bad_repeats = write_report(tmp_path / "bad_repeats.json", [bad_repeat])
    for args in ([str(tmp_path / "missing.json"), good], [good, str(other)], [str(broken), good],
                 [good, unmatched], [good, bad_repeats], [good, good, "--max-slowdown", "5"],
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
