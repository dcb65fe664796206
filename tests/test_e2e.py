"""Heavy end-to-end check on the real default (MiniLM teacher, BBC News): `make e2e`.

Not part of `make test` (it trains a real model for several minutes on 2 cores).
"""

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e


def test_default_recipe_end_to_end(tmp_path):
    out = tmp_path / "bbc-news"
    proc = subprocess.run(
        [sys.executable, "-m", "edgekd", "run", "--out", str(out),
         "--set", "teacher.fine_tune.epochs=1", "--set", "distill.epochs=2",
         "--set", "export.formats=[onnx]", "--set", "export.precisions=[fp32, int8-dynamic]",
         "--set", "bench.min_time_s=1", "--set", "bench.min_iterations=20"],
        capture_output=True, text=True, timeout=3000)
    assert proc.returncode == 0, proc.stderr[-3000:]
    teacher = json.loads((out / "teacher" / "metrics.json").read_text())
    student = json.loads((out / "student" / "metrics.json").read_text())
    assert teacher["accuracy"] >= 0.9
    assert student["accuracy"] / teacher["accuracy"] >= 0.95
    assert student["num_hidden_layers"] == 2 and teacher["num_hidden_layers"] == 6
    report = json.loads((out / "report.json").read_text())
    by_name = {e["name"]: e for e in report["entries"]}
    assert by_name["student-onnx-int8-dynamic"]["status"] == "ok"
    speedup = (by_name["teacher-pytorch-fp32"]["latency_ms"]["p50"]
               / by_name["student-onnx-int8-dynamic"]["latency_ms"]["p50"])
    assert speedup > 2, speedup
