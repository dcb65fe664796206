"""Exporters: one module per format (`onnx.py`, `openvino.py`, `tflite.py`), found by name."""
