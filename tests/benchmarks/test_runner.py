"""The on-device runner, run as devices run it: copied alone into a folder, in a subprocess."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgekd.targets.base import runner_files

REPO = Path(__file__).parents[2]
DEVICE_PYTHON = REPO / ".venv-device" / "bin" / "python"
CONTRACT_KEYS = {"latency_ms", "samples_ms", "throughput_per_s", "load_time_ms", "first_inference_ms",
                 "peak_memory_mb", "peak_memory_window_mb", "energy_j", "energy_method", "runtime",
                 "runtime_version", "warmup", "cpu", "host", "threads", "batch_size", "seq_len",
                 "size_bytes"}

# Runs the copied runner in-process and then reports (on stderr) whether torch got imported.
WRAPPER = """
import runpy, sys
sys.argv = ["runner.py"] + sys.argv[1:]
try:
    runpy.run_path("runner.py", run_name="__main__")
except SystemExit as exc:
    code = exc.code
print("TORCH-IMPORTED" if "torch" in sys.modules else "NO-TORCH", file=sys.stderr)
sys.exit(code)
"""


@pytest.fixture()
def runner_dir(tmp_path) -> Path:
    for path in runner_files():
        shutil.copy2(path, tmp_path)
    (tmp_path / "wrapper.py").write_text(WRAPPER)
    return tmp_path


def run(runner_dir, model, inputs, *extra, python=sys.executable):
    argv = [str(python), "wrapper.py", "--model", str(model), "--inputs", str(inputs),
            "--warmup", "2", "--min-iterations", "10", "--min-time", "0", "--energy", "estimate",
            *map(str, extra)]
    return subprocess.run(argv, capture_output=True, text=True, cwd=runner_dir, timeout=300)


@pytest.mark.parametrize("fixture, artifact, runtime", [
    ("onnx_dir", "model.onnx", "onnxruntime"),
    ("openvino_dir", "model.xml", "openvino"),
    ("tflite_dir", "model.tflite", "ai_edge_litert"),
])
def test_runner_measures_each_runtime_without_torch(request, runner_dir, fixture, artifact, runtime):
    folder = request.getfixturevalue(fixture)
    proc = run(runner_dir, folder / artifact, folder / "inputs.npz", "--threads", 2)
    assert proc.returncode == 0, proc.stderr
    assert "NO-TORCH" in proc.stderr
    result = json.loads(proc.stdout)  # stdout is exactly one JSON document
    assert CONTRACT_KEYS <= set(result)
    assert result["runtime"] == runtime and result["threads"] == 2 and result["seq_len"] == 16
    lat = result["latency_ms"]
    assert lat["n"] == len(result["samples_ms"]) >= 10
    assert lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert result["warmup"]["iterations"] >= 2
    assert result["peak_memory_mb"] >= result["peak_memory_window_mb"] > 10
    assert result["energy_method"].startswith("estimate:") and result["energy_j"] >= 0
    assert result["size_bytes"] > 100_000


def test_batch_seq_len_and_min_time_are_honoured(runner_dir, onnx_dir):
    proc = run(runner_dir, onnx_dir / "model.onnx", onnx_dir / "inputs.npz", "--batch-size", 3,
               "--seq-len", 24, "--min-time", 0.4)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["batch_size"] == 3 and result["seq_len"] == 24
    assert result["measure"]["time_s"] >= 0.4
    assert result["throughput_per_s"] == pytest.approx(
        3 * result["latency_ms"]["n"] / result["measure"]["time_s"], rel=1e-6)


def test_corrupt_artifact_is_one_line_and_no_json(runner_dir, onnx_dir, tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"this is not a protobuf" * 10)
    proc = run(runner_dir, bad, onnx_dir / "inputs.npz")
    assert proc.returncode == 2 and proc.stdout == ""
    assert [line for line in proc.stderr.splitlines() if line.startswith("runner:")]
    proc = run(runner_dir, tmp_path / "absent.onnx", onnx_dir / "inputs.npz")
    assert proc.returncode == 2 and "artifact not found" in proc.stderr


BUGGY_ADAPTER = """
SUFFIXES = (".buggy",)
def settings(precision, threads):
    return {}
class Adapter:
    def __init__(self, path, options):
        self.inputs = [][1]  # a bug in an adapter, not a bad artifact
"""


def test_an_unexpected_error_says_where_it_was_raised(runner_dir, onnx_dir, tmp_path):
    (runner_dir / "runtime_buggy.py").write_text(BUGGY_ADAPTER)
    model = tmp_path / "model.buggy"
    model.write_bytes(b"x")
    proc = run(runner_dir, model, onnx_dir / "inputs.npz")
    assert proc.returncode == 2 and proc.stdout == ""
    lines = [line for line in proc.stderr.splitlines() if line.startswith("runner:")]
    assert lines == ["runner: IndexError: list index out of range "
                     "(at runtime_buggy.py:7 in __init__)"]


def test_missing_runtime_names_the_pip_package(runner_dir, openvino_dir):
    if not DEVICE_PYTHON.exists():
        pytest.skip(".venv-device is absent (bash scripts/device-venv.sh): it is the Python "
                    "without openvino")
    proc = run(runner_dir, openvino_dir / "model.xml", openvino_dir / "inputs.npz", python=DEVICE_PYTHON)
    assert proc.returncode == 3 and "pip install openvino" in proc.stderr and proc.stdout == ""
