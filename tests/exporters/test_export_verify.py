"""Shared verification: parity numbers, failed status for an artifact outside its tolerance,
resume of a finished export, generated inputs when there is no task data."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from edgekd.benchmarks import runtimes
from edgekd.errors import EdgekdError
from edgekd.exporters import available_formats, export_artifact, get_exporter
from edgekd.exporters.verify import ReferenceOutputs
from edgekd.tasks.text_classification import generated_inputs, parity, parity_error

SEQ_LEN = 32
FORMATS = available_formats()


def test_parity_numbers_and_thresholds():
    ref = np.array([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 2.0], [2.0, 1.0, 0.0]])
    close = ref + 0.01
    result = parity(ref, close, "fp32")
    assert result == {"max_abs_diff": pytest.approx(0.01), "top1_agreement": 1.0, "n": 4,
                      "min_agreement": 0.99}
    assert parity_error(result) is None
    flipped = ref.copy()
    flipped[3] = [0.0, 3.0, 0.0]              # one of four disagrees: 75% < 90%
    result = parity(ref, flipped, "int8-dynamic")
    assert result["top1_agreement"] == 0.75 and result["min_agreement"] == 0.90
    assert "75.0% is below 90%" in parity_error(result)
    nan = ref.copy()
    nan[0, 0] = np.nan
    assert parity_error(parity(ref, nan, "fp16")) is not None
    with pytest.raises(EdgekdError, match="shape"):
        parity(ref, ref[:, :2], "fp32")


class FixedBatchAdapter:
    """The adapter surface of a static-shape artifact that computes ids[:, :3]."""

    runtime, fixed_batch, errors = "fake", 2, (RuntimeError,)
    inputs = {"input_ids": np.int64, "attention_mask": np.int64}

    def __init__(self):
        self.seen = []

    def prepare(self, batch):
        return batch

    def __call__(self, feed):
        self.seen.append(len(feed["input_ids"]))
        return feed["input_ids"][:, :3].astype(np.float32)

    def output(self, raw):
        return raw


def test_fixed_batch_artifacts_get_padded_batches():
    adapter = FixedBatchAdapter()
    inputs = {"input_ids": np.arange(5 * 4).reshape(5, 4), "attention_mask": np.ones((5, 4))}
    out = runtimes.run_outputs(adapter, inputs)
    assert adapter.seen == [2, 2, 2] and out.shape == (5, 3)
    np.testing.assert_array_equal(out, inputs["input_ids"][:, :3])


def test_generated_inputs_follow_the_tokenizer(export_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(export_model_dir)
    inputs = generated_inputs(export_model_dir, SEQ_LEN, n=8)
    assert set(inputs) == {"input_ids", "attention_mask", "token_type_ids"}
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    assert ids.shape == (8, SEQ_LEN) and ids.dtype == np.int64
    assert (ids[:, 0] == tokenizer.cls_token_id).all()
    assert ids.max() < len(tokenizer) and (ids[mask == 0] == tokenizer.pad_token_id).all()
    assert mask.sum(1).min() < SEQ_LEN  # padding is exercised


def test_without_data_verification_uses_generated_inputs(export_model_dir, tmp_path):
    record = export_artifact(export_model_dir, "onnx", "fp32", tmp_path / "e", role=None,
                             seq_len=16, eval_inputs=None)
    assert record["status"] == "ok" and record["accuracy"] is None
    assert record["name"] == "model-onnx-fp32" and record["role"] is None
    saved = np.load(tmp_path / "e" / "inputs.npz")
    assert saved["input_ids"].shape == (32, 16) and "labels" not in saved.files


@pytest.mark.parametrize("fmt", FORMATS)
def test_artifact_outside_tolerance_is_marked_failed_and_kept(fmt, broken_converter, task_inputs,
                                                              export_model_dir, tmp_path):
    if get_exporter(fmt).runtime_missing():
        pytest.skip(get_exporter(fmt).runtime_missing())
    test, labels, _ = task_inputs
    good = export_artifact(export_model_dir, fmt, "fp32", tmp_path / "good",
                           role="student", seq_len=SEQ_LEN, eval_inputs=test, eval_labels=labels)
    assert good["status"] == "ok", good["parity"]
    broken_converter(fmt)
    out = tmp_path / f"student-{fmt}-fp32"
    record = export_artifact(export_model_dir, fmt, "fp32", out, role="student",
                             seq_len=SEQ_LEN, eval_inputs=test, eval_labels=labels)
    assert record["status"] == "failed", record["parity"]
    assert "is below 99%" in record["error"]
    assert record["parity"]["top1_agreement"] == 0.0
    assert (out / record["artifact"]).is_file()          # kept for inspection
    assert json.loads((out / "export.json").read_text())["status"] == "failed"


def test_finished_export_is_skipped_on_rerun_and_redone_when_settings_change(
        export_model_dir, task_inputs, tmp_path):
    test, labels, _ = task_inputs
    out = tmp_path / "student-onnx-fp32"
    first = export_artifact(export_model_dir, "onnx", "fp32", out, role="student",
                            seq_len=SEQ_LEN, eval_inputs=test, eval_labels=labels)
    stamp = (out / "model.onnx").stat().st_mtime_ns
    again = export_artifact(export_model_dir, "onnx", "fp32", out, role="student",
                            seq_len=SEQ_LEN, eval_inputs=test, eval_labels=labels)
    assert again == json.loads(json.dumps(first))
    assert (out / "model.onnx").stat().st_mtime_ns == stamp
    # A different sequence length is a different export: redone, not reused.
    short = {k: v[:, :16] for k, v in test.items()}
    redone = export_artifact(export_model_dir, "onnx", "fp32", out, role="student", seq_len=16,
                             eval_inputs=short, eval_labels=labels)
    assert redone["seq_len"] == 16 and (out / "model.onnx").stat().st_mtime_ns != stamp
    # A retrained (re-saved) model is a different source: redone too.
    model_copy = tmp_path / "student"
    shutil.copytree(export_model_dir, model_copy)
    export_artifact(model_copy, "onnx", "fp32", out, role="student", seq_len=16,
                    eval_inputs=short, eval_labels=labels)
    stamp = (out / "model.onnx").stat().st_mtime_ns
    weights = model_copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes())
    export_artifact(model_copy, "onnx", "fp32", out, role="student", seq_len=16,
                    eval_inputs=short, eval_labels=labels)
    assert (out / "model.onnx").stat().st_mtime_ns != stamp


def test_conversion_errors_name_the_format_and_the_operator():
    """Real converter failures (an op neither converter supports) become one-line errors."""
    import io

    import torch

    from edgekd.exporters.verify import conversion_error

    class Eig(torch.nn.Module):
        def forward(self, x):
            return torch.linalg.eig(x)[0].real

    x = torch.randn(1, 3, 3)
    with pytest.raises(Exception) as onnx_failure:
        torch.onnx.export(Eig(), (x,), io.BytesIO(), dynamo=False, opset_version=18)
    error = conversion_error("onnx", "export", onnx_failure.value)
    assert str(error).startswith("onnx: export failed") and "aten::linalg_eig" in str(error)
    assert len(str(error).splitlines()) == 1
    ov = pytest.importorskip("openvino", reason="openvino is not installed")
    with pytest.raises(Exception) as ov_failure:
        ov.convert_model(Eig(), example_input=x)
    error = conversion_error("openvino", "conversion", ov_failure.value)
    assert "(operator aten::linalg_eig)" in str(error) and "src/" not in str(error)
    assert len(str(error).splitlines()) == 1


def test_reference_outputs_are_computed_once_per_source_and_cached_on_disk(
        export_model_dir, task_inputs, tmp_path):
    from edgekd.tasks import get_task

    test, labels, _ = task_inputs
    references = ReferenceOutputs(tmp_path / "cache")
    for precision in ("fp32", "int8-dynamic"):
        record = export_artifact(export_model_dir, "onnx", precision, tmp_path / precision,
                                 role="student", seq_len=SEQ_LEN, eval_inputs=test,
                                 eval_labels=labels, references=references)
        assert record["status"] == "ok"
    assert references.computed == 1 and len(list((tmp_path / "cache").glob("*.npy"))) == 1
    again = ReferenceOutputs(tmp_path / "cache")   # a rerun: read from disk, model not run
    task = get_task()
    np.testing.assert_array_equal(again.get(export_model_dir, task, test),
                                  references.get(export_model_dir, task, test))
    assert again.computed == 0
    other = {k: v[:5] for k, v in test.items()}     # other inputs: computed anew
    assert again.get(export_model_dir, task, other).shape[0] == 5 and again.computed == 1
