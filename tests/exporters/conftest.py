"""Fixtures for the exporter tests: a small trained classifier, its task inputs, and a cache of
exports shared by the whole session (each format x precision is exported once)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tiny import make_tiny_bert

SEQ_LEN = 32
CALIBRATION_SAMPLES = 32


def train_briefly(model_dir: Path, data_dir: Path, epochs: int = 10) -> None:
    """A few epochs on the keyword data, so predictions differ between examples and classes
    (a random-init head predicts one class for everything, which makes top-1 agreement trivial)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from edgekd.data import DataConfig, encode, load_task_data

    data = load_task_data(DataConfig(path=str(data_dir), max_length=SEQ_LEN))
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    ids = model.config.label2id
    enc = {k: torch.from_numpy(v) for k, v in
           encode(tokenizer, [e.text for e in data.train], SEQ_LEN).items()}
    labels = torch.tensor([ids[data.labels[e.label]] for e in data.train])
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is faster than two fighting other tests
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(epochs):
        for i in range(0, len(labels), 8):
            batch = {k: v[i:i + 8] for k, v in enc.items()}
            loss = model(**batch, labels=labels[i:i + 8]).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    torch.set_num_threads(threads)
    model.eval().save_pretrained(model_dir)


@pytest.fixture(scope="session")
def export_model_dir(tmp_path_factory, tiny_data_dir) -> Path:
    """A weight-dominated tiny BERT (width 128, FFN 512, 2 layers), briefly trained."""
    folder = make_tiny_bert(tmp_path_factory.mktemp("export-model") / "student", hidden=128,
                            intermediate=512, heads=2, layers=2)
    train_briefly(folder, tiny_data_dir)
    return folder


@pytest.fixture(scope="session")
def task_inputs(export_model_dir, tiny_data_dir):
    """(test inputs, test labels, calibration inputs) encoded for `export_model_dir`."""
    from edgekd.exporters.command import task_inputs as encode_task

    test, labels, calibration, _ = encode_task(export_model_dir, str(tiny_data_dir), SEQ_LEN,
                                               CALIBRATION_SAMPLES)
    return test, labels, calibration


@pytest.fixture
def broken_converter(monkeypatch, tmp_path, export_model_dir):
    """`broken_converter(fmt)` makes format `fmt`'s converter emit a wrong artifact, as a buggy
    converter would: it converts a copy of the model whose classifier rows are rotated
    (class i scores what class i+1 did), so the artifact's top-1 class differs from PyTorch's
    on every example, on any CPU and at any precision. Verification must mark it failed."""
    import shutil

    import torch
    from transformers import AutoModelForSequenceClassification

    from edgekd.exporters import get_exporter

    wrong = tmp_path / "rotated-classifier"
    shutil.copytree(export_model_dir, wrong)
    model = AutoModelForSequenceClassification.from_pretrained(wrong)
    order = [(i + 1) % model.config.num_labels for i in range(model.config.num_labels)]
    with torch.no_grad():
        model.classifier.weight.copy_(model.classifier.weight[order].clone())
        model.classifier.bias.copy_(model.classifier.bias[order].clone())
    model.save_pretrained(wrong)

    def apply(fmt: str) -> None:
        exporter = get_exporter(fmt)
        real = exporter.export
        monkeypatch.setattr(exporter, "export",
                            lambda model_dir, *args, **kwargs: real(wrong, *args, **kwargs))

    return apply


@pytest.fixture(scope="session")
def exported(tmp_path_factory, export_model_dir, task_inputs):
    """`exported(fmt, precision)` -> (export folder, export.json record), exported once."""
    from edgekd.exporters import export_artifact

    from edgekd.exporters.verify import ReferenceOutputs

    root = tmp_path_factory.mktemp("exports")
    cache: dict = {}
    references = ReferenceOutputs()  # the PyTorch logits once, shared by every export
    test, labels, calibration = task_inputs

    def get(fmt: str, precision: str):
        if (fmt, precision) not in cache:
            folder = root / f"student-{fmt}-{precision}"
            record = export_artifact(export_model_dir, fmt, precision, folder, role="student",
                                     seq_len=SEQ_LEN, eval_inputs=test, eval_labels=labels,
                                     calibration=calibration, references=references)
            cache[fmt, precision] = (folder, record)
        return cache[fmt, precision]

    return get
