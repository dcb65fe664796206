"""Shared fixtures: a generated keyword dataset and tiny random-init BERT models."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tiny.py, tests_recipe.py

from tiny import make_keyword_dataset, make_tiny_bert  # noqa: E402


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory) -> Path:
    """A folder-per-label dataset: 3 labels x 60 short texts, labels follow from keywords."""
    return make_keyword_dataset(tmp_path_factory.mktemp("data") / "keywords")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A random-init 2-layer BERT classifier (width 64, 3 labels) with its tokenizer."""
    return make_tiny_bert(tmp_path_factory.mktemp("models") / "tiny-bert")


@pytest.fixture()
def tiny_recipe(tmp_path, tiny_data_dir, tiny_model_dir) -> Path:
    """A recipe file for a quick run on the tiny model and data."""
    path = tmp_path / "recipe.yaml"
    path.write_text(f"""\
name: tiny
data:
  path: {tiny_data_dir}
  max_length: 32
teacher:
  model: {tiny_model_dir}
  fine_tune: {{epochs: 3, learning_rate: 1.0e-3, batch_size: 16}}
student:
  from_teacher: {{layers: [1]}}
distill:
  epochs: 3
  learning_rate: 1.0e-3
  batch_size: 16
export:
  formats: [onnx]
  precisions: [fp32]
  calibration_samples: 16
bench:
  threads: [1]
  warmup: 2
  min_iterations: 5
  min_time_s: 0
""")
    return path
