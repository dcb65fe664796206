"""`edgekd ab`: baseline and candidate measured now, alternately, in fresh runner processes.

Real tiny artifacts and the real local target; the runner invocations are recorded (not
replaced) to check their order. No timing is asserted: the verdict's statistics are tested in
test_gate_stats.py.
"""

from __future__ import annotations

import json
import shutil

import pytest

from edgekd.cli import main
from edgekd.report.ab import pair_order

FAST = ["--warmup", "1", "--min-iterations", "5", "--min-time", "0"]


@pytest.fixture
def runner_calls(monkeypatch):
    """The artifacts the local target really runs, in order."""
    from edgekd.targets.local import LocalTarget

    calls = []
    real = LocalTarget.run_runner

    def recording(self, artifact, inputs, options, timeout_s):
        calls.append(artifact.parent.name)
        return real(self, artifact, inputs, options, timeout_s)

    monkeypatch.setattr(LocalTarget, "run_runner", recording)
    return calls


def test_pair_order_alternates_and_balances_who_goes_first():
    assert pair_order(3) == [(0, 0), (0, 1), (1, 1), (1, 0), (2, 0), (2, 1)]
    firsts = [side for i, (p, side) in enumerate(pair_order(10)) if i % 2 == 0]
    assert firsts.count(0) == firsts.count(1) == 5


def test_ab_measures_alternately_in_fresh_processes(onnx_dir, openvino_dir, tmp_path, capsys,
                                                    runner_calls):
    a, b = tmp_path / "A", tmp_path / "B"
    shutil.copytree(onnx_dir, a)
    shutil.copytree(openvino_dir, b)
    md, js, out = tmp_path / "ab.md", tmp_path / "ab.json", tmp_path / "entries.json"
    code = main(["ab", str(a), str(b), "--pairs", "3", *FAST, "--max-slowdown", "1000%",
                 "--md", str(md), "--json", str(js), "--out", str(out)])
    assert code == 0
    # one runner process per measurement: A B, then B A, then A B
    assert runner_calls == ["A", "B", "B", "A", "A", "B"]
    text = capsys.readouterr().out
    assert md.read_text() == text and "### edgekd latency gate (ab): no regression" in text
    assert "paired t" in text and "student-onnx-fp32 → student-openvino-fp32" in text
    doc = json.loads(js.read_text())
    assert doc["mode"] == "ab" and doc["entries"][0]["n_repeats"] == [3, 3]
    assert doc["entries"][0]["verdict"] in ("unchanged", "faster")
    entries = json.loads(out.read_text())["entries"]
    assert [len(e["repeats"]) for e in entries] == [3, 3]
    assert [e["format"] for e in entries] == ["onnx", "openvino"]
    assert all(e["environment"]["runtimes"] for e in entries)


def test_a_paired_slowdown_is_a_regression():
    """The verdict of generated pairs (no timing): B 20% slower in every pair is regressed."""
    import numpy as np

    from edgekd.report.ab import ab_result

    rng = np.random.default_rng(0)
    pairs = []
    for i in range(5):
        drift = 1 + 0.05 * i                       # shared by both members of the pair
        a = rng.lognormal(np.log(10 * drift), 0.02, 50)
        pairs.append((a.tolist(), (a * 1.2).tolist()))
    entry = {"name": "student-onnx-fp32", "target": "local", "threads": 1, "batch_size": 1,
             "seq_len": 16}
    result = ab_result(pairs, [entry, entry], "p50", 0.05, 0.05)
    (row,) = result["rows"]
    assert result["regressed"] == 1 and row["verdict"] == "REGRESSED"
    assert row["ratio"] == pytest.approx(1.2) and row["n_repeats"] == [5, 5]


def test_ab_bad_input_exits_2_before_measuring(onnx_dir, tmp_path, capsys, runner_calls):
    for args in (["--pairs", "1"], ["--max-slowdown", "fast"], ["--threads", "0"]):
        before = len(runner_calls)
        assert main(["ab", str(onnx_dir), str(onnx_dir), *FAST, *args]) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("edgekd ab: error:") and err.count("\n") == 1
        assert len(runner_calls) == before          # refused before anything was measured
    assert main(["ab", str(tmp_path / "nope.onnx"), str(onnx_dir), *FAST]) == 2
    assert "artifact not found" in capsys.readouterr().err
    (tmp_path / "a-folder").mkdir()
    for flag in ("--md", "--json", "--out"):   # output places are checked first, not after measuring
        before = len(runner_calls)
        assert main(["ab", str(onnx_dir), str(onnx_dir), *FAST, flag, str(tmp_path / "a-folder")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("edgekd ab: error:") and flag in err and err.count("\n") == 1
        assert len(runner_calls) == before
    for bad in (["--prompt-lengths", "abc"], ["--new-tokens", "1"]):
        assert main(["ab", str(onnx_dir), str(onnx_dir), *FAST, *bad]) == 2
        assert bad[0] in capsys.readouterr().err
