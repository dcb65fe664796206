"""Every exporter module found x every precision it supports, on a tiny trained model.

New format files are picked up by discovery: no test code to add for them.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from edgekd.errors import EdgekdError
from edgekd.exporters import (available_formats, check_supported, export_artifact,
                              get_exporter)
from edgekd.exporters.verify import MIN_AGREEMENT

FORMATS = available_formats()
PAIRS = [(fmt, p) for fmt in FORMATS for p in get_exporter(fmt).PRECISIONS]
INT8 = [(fmt, p) for fmt, p in PAIRS if p.startswith("int8")]


def needs_runtime(fmt: str):
    """Skip (with the reason) only when the format's runtime/converter really is absent."""
    reason = get_exporter(fmt).runtime_missing()
    if reason:
        pytest.skip(f"{fmt}: {reason}")
    return get_exporter(fmt)


def test_discovery_finds_the_format_modules_only():
    assert {"onnx", "openvino"} <= set(FORMATS)
    assert not {"verify", "command", "tflite_quant"} & set(FORMATS)
    for fmt in FORMATS:
        module = get_exporter(fmt)
        assert module.FORMAT == fmt
        assert set(module.PRECISIONS) <= set(MIN_AGREEMENT)
        assert callable(module.export) and callable(module.load)


@pytest.mark.parametrize("fmt,precision", PAIRS)
def test_artifact_runs_in_its_runtime_and_agrees_with_pytorch(fmt, precision, exported,
                                                               task_inputs):
    exporter = needs_runtime(fmt)
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

    # The artifact, reopened on its own, gives the logits that were verified (any batch size).
    run = exporter.load(folder / record["artifact"], threads=1)
    rows = {k: saved[k][:3] for k in record["input_names"]}
    if record["batch_size"] is not None:
        rows = {k: saved[k][:record["batch_size"]] for k in record["input_names"]}
    logits = run(rows)
    assert logits.dtype == np.float32 and logits.shape == (len(rows["input_ids"]), 3)
    assert np.isfinite(logits).all()


@pytest.mark.parametrize("fmt,precision", INT8)
def test_int8_is_at_least_2_5x_smaller_than_fp32(fmt, precision, exported):
    needs_runtime(fmt)
    _, fp32 = exported(fmt, "fp32")
    _, int8 = exported(fmt, precision)
    assert fp32["size_bytes"] / int8["size_bytes"] >= 2.5, (fp32["size_bytes"], int8["size_bytes"])


@pytest.mark.parametrize("fmt", FORMATS)
def test_corrupt_or_truncated_artifact_gives_a_clear_error(fmt, exported, tmp_path):
    exporter = needs_runtime(fmt)
    folder, record = exported(fmt, "fp32")
    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    artifact = bad / record["artifact"]
    data = artifact.read_bytes()
    artifact.write_bytes(data[: len(data) // 3])  # truncated mid-file
    for sibling in bad.glob("*.bin"):               # OpenVINO weights beside the .xml
        sibling.write_bytes(sibling.read_bytes()[:100])
    with pytest.raises(EdgekdError, match=fmt):
        exporter.load(artifact)(
            {k: np.load(bad / "inputs.npz")[k][:1] for k in record["input_names"]})
    artifact.write_bytes(b"this is not a model at all\n" * 10)
    with pytest.raises(EdgekdError, match=fmt):
        exporter.load(artifact)
    with pytest.raises(EdgekdError):
        exporter.load(bad / "missing" / record["artifact"])


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
