"""Shared fixtures: a generated keyword dataset, a tiny random-init BERT model and its real
ONNX / OpenVINO / TFLite export folders (made once per session)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tiny.py, artifacts.py, tests_recipe.py

import artifacts  # noqa: E402
from tiny import make_keyword_dataset, make_tiny_bert  # noqa: E402


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory) -> Path:
    """A folder-per-label dataset: 3 labels x 60 short texts, labels follow from keywords."""
    return make_keyword_dataset(tmp_path_factory.mktemp("data") / "keywords")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A random-init 2-layer BERT classifier (width 64, 3 labels) with its tokenizer."""
    return make_tiny_bert(tmp_path_factory.mktemp("models") / "tiny-bert")


@pytest.fixture(scope="session")
def onnx_dir(tmp_path_factory, tiny_model_dir) -> Path:
    return artifacts.onnx_export(tmp_path_factory, tiny_model_dir)


@pytest.fixture(scope="session")
def openvino_dir(tmp_path_factory, tiny_model_dir) -> Path:
    return artifacts.openvino_export(tmp_path_factory, tiny_model_dir)


@pytest.fixture(scope="session")
def tflite_dir(tmp_path_factory, tiny_model_dir) -> Path:
    return artifacts.tflite_export(tmp_path_factory, tiny_model_dir)
