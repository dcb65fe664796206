"""Fixtures of the harness tests: tiny real ONNX / OpenVINO / TFLite export folders."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import artifacts  # noqa: E402


@pytest.fixture(scope="session")
def onnx_dir(tmp_path_factory, tiny_model_dir) -> Path:
    return artifacts.onnx_export(tmp_path_factory, tiny_model_dir)


@pytest.fixture(scope="session")
def openvino_dir(tmp_path_factory, tiny_model_dir) -> Path:
    return artifacts.openvino_export(tmp_path_factory, tiny_model_dir)


@pytest.fixture(scope="session")
def tflite_dir(tmp_path_factory, tiny_model_dir) -> Path:
    return artifacts.tflite_export(tmp_path_factory, tiny_model_dir)
