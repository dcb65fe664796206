"""Every export folder is a bundle: tokenizer, config, labels and a model card beside the artifact;
the ONNX and OpenVINO folders load with optimum's own classes; `edgekd predict` on a bundle gives
the PyTorch student's labels, for every format."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from edgekd.benchmarks import runtimes
from edgekd.cli import main
from edgekd.exporters import available_formats, export_artifact
from edgekd.exporters.bundle import LABELS_FILE, README_FILE

SEQ_LEN = 32  # the exporter fixtures' sequence length (tests/exporters/conftest.py)

# The files that are the artifact itself (export.json's size_bytes counts exactly these).
ARTIFACT_FILES = {"onnx": ("model.onnx",), "openvino": ("openvino_model.xml", "openvino_model.bin"),
                  "tflite": ("model.tflite",)}


@pytest.mark.parametrize("fmt", available_formats())
def test_export_folder_is_a_bundle(exported, export_model_dir, fmt):
    from transformers import AutoConfig, AutoTokenizer

    folder, record = exported(fmt, "fp32")
    assert record["status"] == "ok"
    config = AutoConfig.from_pretrained(folder)
    labels = json.loads((folder / LABELS_FILE).read_text())
    assert labels == [config.id2label[i] for i in range(config.num_labels)]
    assert labels == [AutoConfig.from_pretrained(export_model_dir).id2label[i]
                      for i in range(len(labels))]
    text = "a tokenizer saved beside the artifact"
    assert (AutoTokenizer.from_pretrained(folder)(text)["input_ids"]
            == AutoTokenizer.from_pretrained(export_model_dir)(text)["input_ids"])
    card = (folder / README_FILE).read_text()
    for expected in (record["name"], record["artifact"], f"Sequence length {SEQ_LEN}",
                     f"**{record['precision']}**", str(record["runtime_version"]),
                     f"{record['accuracy']:.4f}", *record["input_names"], *labels):
        assert expected in card, expected
    # The bundle files are not counted as the artifact's size.
    if fmt in ARTIFACT_FILES:
        assert record["size_bytes"] == sum((folder / f).stat().st_size for f in ARTIFACT_FILES[fmt])


def test_tflite_card_documents_the_file_signature(exported):
    folder, record = exported("tflite", "fp32")
    adapter, _ = runtimes.open_adapter(str(folder / record["artifact"]))
    card = (folder / README_FILE).read_text()
    for name, dtype in adapter.inputs.items():
        assert f"| `{name}` | [1, {SEQ_LEN}] | {np.dtype(dtype).name} |" in card
    assert "get_signature_runner" in card


def _adapter_logits(folder, record):
    adapter, _ = runtimes.open_adapter(str(folder / record["artifact"]),
                                       precision=record["precision"], fmt=record["format"])
    inputs = dict(np.load(folder / "inputs.npz"))
    return inputs, runtimes.run_outputs(adapter, {k: inputs[k] for k in record["input_names"]})


def test_onnx_bundle_loads_with_optimum(exported):
    import torch
    from optimum.onnxruntime import ORTModelForSequenceClassification

    folder, record = exported("onnx", "fp32")
    inputs, expected = _adapter_logits(folder, record)
    model = ORTModelForSequenceClassification.from_pretrained(folder)
    got = model(**{k: torch.from_numpy(inputs[k]) for k in record["input_names"]}).logits
    np.testing.assert_allclose(np.asarray(got), expected, atol=1e-5)


def test_openvino_bundle_loads_with_optimum_intel(exported):
    import torch
    from optimum.intel import OVModelForSequenceClassification

    folder, record = exported("openvino", "fp32")
    inputs, expected = _adapter_logits(folder, record)
    model = OVModelForSequenceClassification.from_pretrained(
        folder, ov_config={"INFERENCE_PRECISION_HINT": "f32"})
    got = model(**{k: torch.from_numpy(inputs[k]) for k in record["input_names"]}).logits
    np.testing.assert_allclose(np.asarray(got), expected, atol=1e-5)
    # the IR carries the name optimum-intel recognises, so nothing is duplicated
    assert record["artifact"] == "openvino_model.xml"


def _pytorch_labels(model_dir, texts):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from edgekd.data import encode

    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    enc = encode(AutoTokenizer.from_pretrained(model_dir), texts, SEQ_LEN)
    with torch.no_grad():
        logits = model(**{k: torch.from_numpy(v) for k, v in enc.items()}).logits
    return [model.config.id2label[int(i)] for i in logits.argmax(-1)]


@pytest.mark.parametrize("fmt, precision", [(f, "fp32") for f in available_formats()]
                         + [("onnx", "int8-dynamic")])
def test_predict_gives_the_pytorch_label_on_the_test_split(exported, export_model_dir,
                                                           tiny_data_dir, tmp_path, capsys,
                                                           fmt, precision):
    from edgekd.data import DataConfig, load_task_data

    folder, record = exported(fmt, precision)
    texts = [e.text for e in load_task_data(DataConfig(path=str(tiny_data_dir),
                                                       max_length=SEQ_LEN)).test]
    (tmp_path / "texts.txt").write_text("\n".join(texts) + "\n")
    capsys.readouterr()
    assert main(["predict", str(folder / record["artifact"]), "--file",
                 str(tmp_path / "texts.txt"), "--json", "--top-k", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["runtime_settings"] == record["runtime_settings"]
    got = [p["label"] for p in result["predictions"]]
    expected = _pytorch_labels(export_model_dir, texts)
    assert len(got) == len(texts) == len(expected)
    assert len(set(expected)) > 1  # a trained model: agreement is not trivial
    agreement = np.mean([a == b for a, b in zip(got, expected)])
    assert agreement >= record["parity"]["min_agreement"], agreement


def test_old_export_without_bundle_is_refused_then_completed_by_a_rerun(
        tmp_path, exported, export_model_dir, task_inputs, capsys):
    folder, record = exported("onnx", "fp32")
    old = tmp_path / "student-onnx-fp32"
    shutil.copytree(folder, old)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt",
                 "special_tokens_map.json", "config.json", LABELS_FILE, README_FILE):
        (old / name).unlink(missing_ok=True)
    capsys.readouterr()
    assert main(["predict", str(old), "shares fell"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no tokenizer" in err and "rerun the export" in err

    artifact_time = (old / "model.onnx").stat().st_mtime_ns
    test, labels, _ = task_inputs
    again = export_artifact(export_model_dir, "onnx", "fp32", old, role="student",
                            seq_len=SEQ_LEN, eval_inputs=test, eval_labels=labels)
    assert again == json.loads((old / "export.json").read_text())  # skipped, not re-exported
    assert (old / "model.onnx").stat().st_mtime_ns == artifact_time
    assert main(["predict", str(old), "shares fell"]) == 0


@pytest.mark.parametrize("fmt", available_formats())
def test_model_card_snippet_runs_and_gives_the_adapters_logits(exported, monkeypatch, fmt):
    """The inference code in README.md, run as written in the bundle folder."""
    from edgekd.predict import Predictor

    folder, record = exported(fmt, "fp32")
    card = (folder / README_FILE).read_text()
    code = card.split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(folder)
    scope: dict = {}
    exec(compile(code, str(folder / README_FILE), "exec"), scope)
    predictor = Predictor(folder)
    expected = predictor.logits(predictor.encode(["some text"])[0])
    np.testing.assert_allclose(np.asarray(scope["logits"], dtype=np.float32), expected, atol=1e-5)


def test_source_without_tokenizer_then_with_one(tmp_path, export_model_dir, task_inputs, capsys):
    """A model folder saved without its tokenizer exports fine; predict names the fix; once the
    tokenizer is saved there, rerunning the export completes the bundle without re-exporting."""
    from transformers import AutoTokenizer

    source = tmp_path / "model"
    shutil.copytree(export_model_dir, source)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        (source / name).unlink(missing_ok=True)
    out = tmp_path / "model-onnx-fp32"
    export_artifact(source, "onnx", "fp32", out, role=None, seq_len=SEQ_LEN,
                    eval_inputs=task_inputs[0])
    capsys.readouterr()
    assert main(["predict", str(out), "goal"]) == 2
    err = capsys.readouterr().err
    assert "source model folder had none" in err and "tokenizer.save_pretrained" in err

    AutoTokenizer.from_pretrained(export_model_dir).save_pretrained(source)
    artifact_time = (out / "model.onnx").stat().st_mtime_ns
    export_artifact(source, "onnx", "fp32", out, role=None, seq_len=SEQ_LEN,
                    eval_inputs=task_inputs[0])
    assert (out / "model.onnx").stat().st_mtime_ns == artifact_time
    assert main(["predict", str(out), "goal"]) == 0
