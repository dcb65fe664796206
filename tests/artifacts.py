"""Tiny real artifacts for the harness tests, built with plain converters (no edgekd exporters).

Each builder writes a folder laid out as docs/contracts.md says: the artifact, `inputs.npz`
(real tokenized examples from the tiny tokenizer) and `export.json`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

SEQ_LEN = 16


def save_inputs(folder: Path, model_dir: Path, n: int = 8, seq_len: int = SEQ_LEN) -> Path:
    """Tokenize generated keyword texts with the tiny model's tokenizer into inputs.npz."""
    import random

    from transformers import AutoTokenizer

    from tiny import LABEL_WORDS, make_text

    rng = random.Random(0)
    labels = sorted(LABEL_WORDS)
    texts, ys = [], []
    for i in range(n):
        texts.append(make_text(rng, labels[i % len(labels)]))
        ys.append(i % len(labels))
    tok = AutoTokenizer.from_pretrained(model_dir)
    enc = tok(texts, padding="max_length", truncation=True, max_length=seq_len, return_tensors="np")
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "inputs.npz", input_ids=enc["input_ids"].astype(np.int64),
             attention_mask=enc["attention_mask"].astype(np.int64),
             token_type_ids=enc["token_type_ids"].astype(np.int64), labels=np.array(ys, np.int64))
    return folder / "inputs.npz"


def write_export_json(folder: Path, fmt: str, artifact: str, role: str = "student",
                      batch_size: int | None = None) -> None:
    """export.json as the exporter writes it (the typed record), with the runtime settings
    verification would have used."""
    from edgekd.benchmarks import runtimes
    from edgekd.benchmarks.contracts import ExportRecord

    size = sum(p.stat().st_size for p in folder.iterdir() if p.name.startswith(Path(artifact).stem))
    record = ExportRecord(
        name=f"{role}-{fmt}-fp32", role=role, format=fmt, precision="fp32", artifact=artifact,
        source_model="tiny", task="text-classification",
        parity={"max_abs_diff": 1e-6, "top1_agreement": 1.0, "n": 8, "min_agreement": 0.99},
        accuracy=0.75, size_bytes=size, export_time_s=0.1, seq_len=SEQ_LEN, batch_size=batch_size,
        input_names=["input_ids", "attention_mask", "token_type_ids"],
        runtime_settings=runtimes.module_for(fmt).settings("fp32", 1))
    (folder / "export.json").write_text(json.dumps(record.to_dict()))


def make_onnx(folder: Path, model_dir: Path) -> Path:
    """torch.onnx.export of the tiny BERT with dynamic batch and sequence axes."""
    import torch
    from transformers import AutoModelForSequenceClassification

    folder.mkdir(parents=True, exist_ok=True)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    model.config.return_dict = False
    ids = torch.ones(1, SEQ_LEN, dtype=torch.int64)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    axes = {n: {0: "batch", 1: "seq"} for n in names}
    axes["logits"] = {0: "batch"}
    torch.onnx.export(model, (ids, ids, torch.zeros_like(ids)), str(folder / "model.onnx"),
                      input_names=names, output_names=["logits"], dynamic_axes=axes,
                      opset_version=17, dynamo=False)
    save_inputs(folder, model_dir)
    write_export_json(folder, "onnx", "model.onnx")
    return folder


def make_openvino(folder: Path, onnx_dir: Path, model_dir: Path) -> Path:
    """openvino.convert_model of the ONNX file, saved as an IR (model.xml + model.bin)."""
    import openvino as ov

    folder.mkdir(parents=True, exist_ok=True)
    ov.save_model(ov.convert_model(str(onnx_dir / "model.onnx")), str(folder / "model.xml"))
    save_inputs(folder, model_dir)
    write_export_json(folder, "openvino", "model.xml")
    return folder


def make_tflite(folder: Path, model_dir: Path) -> Path:
    """litert_torch.convert of the tiny BERT at a fixed [1, SEQ_LEN] shape."""
    import litert_torch
    import torch
    from transformers import AutoModelForSequenceClassification

    folder.mkdir(parents=True, exist_ok=True)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()

    class Logits(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.m(input_ids=input_ids, attention_mask=attention_mask,
                          token_type_ids=token_type_ids).logits

    ids = torch.ones(1, SEQ_LEN, dtype=torch.int64)
    edge = litert_torch.convert(Logits(model).eval(), (ids, ids, torch.zeros_like(ids)))
    edge.export(str(folder / "model.tflite"))
    save_inputs(folder, model_dir)
    write_export_json(folder, "tflite", "model.tflite", batch_size=1)
    return folder


def cached(tmp_path_factory, name: str, build) -> Path:
    """Build an artifact folder once per test session, shared by tests/benchmarks and
    tests/targets (a fixture defined in two conftests would otherwise build it twice)."""
    root = tmp_path_factory.getbasetemp() / "bench-artifacts"
    root.mkdir(exist_ok=True)
    folder = root / name
    if not (folder / "export.json").is_file():
        build(folder)
    return folder


def onnx_export(tmp_path_factory, model_dir: Path) -> Path:
    return cached(tmp_path_factory, "student-onnx-fp32", lambda f: make_onnx(f, model_dir))


def openvino_export(tmp_path_factory, model_dir: Path) -> Path:
    onnx_dir = onnx_export(tmp_path_factory, model_dir)
    return cached(tmp_path_factory, "student-openvino-fp32",
                  lambda f: make_openvino(f, onnx_dir, model_dir))


def tflite_export(tmp_path_factory, model_dir: Path) -> Path:
    return cached(tmp_path_factory, "student-tflite-fp32", lambda f: make_tflite(f, model_dir))
