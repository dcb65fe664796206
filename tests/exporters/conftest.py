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


@pytest.fixture(scope="session")
def exported(tmp_path_factory, export_model_dir, task_inputs):
    """`exported(fmt, precision)` -> (export folder, export.json record), exported once."""
    from edgekd.exporters import export_artifact

    root = tmp_path_factory.mktemp("exports")
    cache: dict = {}
    test, labels, calibration = task_inputs

    def get(fmt: str, precision: str):
        if (fmt, precision) not in cache:
            folder = root / f"student-{fmt}-{precision}"
            record = export_artifact(export_model_dir, fmt, precision, folder, role="student",
                                     seq_len=SEQ_LEN, eval_inputs=test, eval_labels=labels,
                                     calibration=calibration)
            cache[fmt, precision] = (folder, record)
        return cache[fmt, precision]

    return get
