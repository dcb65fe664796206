"""Every exporter module found x every precision it supports, on a tiny trained model.

New format files are picked up by discovery: no test code to add for them.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from edgekd.benchmarks import runtimes
from edgekd.errors import EdgekdError
from edgekd.exporters import (available_formats, check_supported, export_artifact,
                              get_exporter)
from edgekd.tasks.text_classification import MIN_AGREEMENT

FORMATS = available_formats()
PAIRS = [(fmt, p) for fmt in FORMATS for p in get_exporter(fmt).PRECISIONS]
INT8 = [(fmt, p) for fmt, p in PAIRS if p.startswith("int8")]


def needs_runtime(fmt: str, precision: str | None = None):
    """Skip (with the reason) only when the format's runtime/converter really is absent, or the
    precision needs hardware this CPU lacks (OpenVINO bf16 on a CPU without native bf16)."""
    reason = get_exporter(fmt).runtime_missing(precision)
    if reason:
        pytest.skip(f"{fmt} {precision or ''}: {reason}")
    return get_exporter(fmt)


def run_artifact(path, precision: str, feeds: dict) -> np.ndarray:
    """Open the artifact with its runtime adapter (as verification and the runner do); logits."""
    adapter, _ = runtimes.open_adapter(str(path), precision=precision, threads=1)
    return runtimes.run_outputs(adapter, feeds)


def test_discovery_finds_the_format_modules_only():
    assert {"onnx", "openvino"} <= set(FORMATS)
    assert not {"verify", "command", "tflite_quant"} & set(FORMATS)
    for fmt in FORMATS:
        module = get_exporter(fmt)
        assert module.FORMAT == fmt
        assert set(module.PRECISIONS) <= set(MIN_AGREEMENT)
        assert callable(module.export)
        assert runtimes.module_for(fmt).FORMAT == fmt   # its runtime adapter, found by name


@pytest.mark.parametrize("fmt,precision", PAIRS)
def test_artifact_runs_in_its_runtime_and_agrees_with_pytorch(fmt, precision, exported,
                                                               task_inputs):
    needs_runtime(fmt, precision)
    folder, record = exported(fmt, precision)
    assert record["status"] == "ok", record["error"]
    assert record["name"] == f"student-{fmt}-{precision}" and record["role"] == "student"
    parity = record["parity"]
    assert parity["min_agreement"] == MIN_AGREEMENT[precision]
    assert parity["top1_agreement"] >= parity["min_agreement"]
    assert parity["n"] == len(task_inputs[1])
    if precision in ("fp32", "fp16"):
        assert parity["max_abs_diff"] < 0.05
    assert record["accuracy"] is not None and 0.0 <= record["accuracy"] <= 1.0
    assert record["size_bytes"] > 10_000 and record["export_time_s"] > 0
    assert record["tools"] and all(isinstance(v, str) for v in record["tools"].values())

    on_disk = json.loads((folder / "export.json").read_text())
    assert on_disk == json.loads(json.dumps(record))
    saved = np.load(folder / "inputs.npz")
    assert set(record["input_names"]) <= set(saved.files) and "labels" in saved.files
    assert not list(folder.parent.glob(f".{folder.name}.partial"))

    # Verified through the benchmark's own adapter, with the settings the runner will use.
    adapter_module = runtimes.module_for(fmt)
    assert record["runtime_settings"] == adapter_module.settings(precision, 1)
    assert record["runtime"] and record["runtime_version"]
    # The artifact, reopened on its own, gives logits for any number of rows.
    logits = run_artifact(folder / record["artifact"], precision,
                          {k: saved[k][:3] for k in record["input_names"]})
    assert logits.dtype == np.float32 and logits.shape == (3, 3)
    assert np.isfinite(logits).all()


@pytest.mark.parametrize("fmt,precision", INT8)
def test_int8_is_at_least_2_5x_smaller_than_fp32(fmt, precision, exported):
    needs_runtime(fmt, precision)
    _, fp32 = exported(fmt, "fp32")
    _, int8 = exported(fmt, precision)
    assert fp32["size_bytes"] / int8["size_bytes"] >= 2.5, (fp32["size_bytes"], int8["size_bytes"])


@pytest.mark.parametrize("fmt", FORMATS)
def test_corrupt_or_truncated_artifact_gives_a_clear_error(fmt, exported, tmp_path):
    needs_runtime(fmt)
    folder, record = exported(fmt, "fp32")
    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    artifact = bad / record["artifact"]
    data = artifact.read_bytes()
    artifact.write_bytes(data[: len(data) // 3])  # truncated mid-file
    for sibling in bad.glob("*.bin"):               # OpenVINO weights beside the .xml
        sibling.write_bytes(sibling.read_bytes()[:100])
    feeds = {k: np.load(bad / "inputs.npz")[k][:1] for k in record["input_names"]}
    with pytest.raises(runtimes.ArtifactError) as truncated:
        run_artifact(artifact, "fp32", feeds)
    artifact.write_bytes(b"this is not a model at all\n" * 10)
    with pytest.raises(runtimes.ArtifactError) as garbage:
        run_artifact(artifact, "fp32", feeds)
    for error in (truncated.value, garbage.value):
        assert len(str(error).splitlines()) == 1
    with pytest.raises(runtimes.ArtifactError):
        run_artifact(bad / "missing" / record["artifact"], "fp32", feeds)


def test_unsupported_pair_and_unknown_format_are_refused_up_front():
    with pytest.raises(EdgekdError, match="cannot export int4"):
        check_supported("onnx", "int4")
    with pytest.raises(EdgekdError, match="unknown export format 'coreml'.*onnx"):
        check_supported("coreml", "fp32")
    with pytest.raises(EdgekdError, match="int8-static needs calibration"):
        check_supported("openvino", "int8-static", calibration=None)


@pytest.mark.parametrize("fmt", FORMATS)
def test_folder_that_is_not_a_model_is_refused(fmt, tmp_path, tiny_data_dir):
    needs_runtime(fmt)
    out = tmp_path / "out"
    with pytest.raises(EdgekdError, match="not a model folder"):
        export_artifact(tiny_data_dir, fmt, "fp32", out, role="student", seq_len=16,
                        eval_inputs=None)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "bert"')  # truncated JSON
    (broken / "model.safetensors").write_bytes(b"\0" * 64)
    with pytest.raises(EdgekdError, match="cannot load the model"):
        export_artifact(broken, fmt, "fp32", out, role="student", seq_len=16, eval_inputs=None)
    assert not out.exists() and not list(tmp_path.glob(".out.partial"))
