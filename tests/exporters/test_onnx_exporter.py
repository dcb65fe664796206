"""ONNX specifics: dynamic axes, fp16 storage, the int8 graphs, reduce_range from CPU flags."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
onnx = pytest.importorskip("onnx", reason="onnx is not installed")

from edgekd.exporters import onnx as onnx_exporter  # noqa: E402
from edgekd.benchmarks import runtimes  # noqa: E402
from edgekd.tasks.text_classification import load_reference, reference_outputs  # noqa: E402

X86_NO_VNNI = "processor : 0\nflags\t\t: fpu vme sse2 avx avx2 fma\n"
X86_VNNI = "processor : 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n"
ARM = "processor : 0\nFeatures\t: fp asimd evtstrm aes crc32 asimddp\n"


def test_vnni_detection_from_cpu_flags():
    assert not onnx_exporter.cpu_has_vnni(X86_NO_VNNI)
    assert onnx_exporter.cpu_has_vnni(X86_VNNI)
    assert onnx_exporter.cpu_has_vnni("flags : sse2 avx_vnni\n")
    assert not onnx_exporter.cpu_has_vnni(ARM)  # parsed as text; the real ARM check is the arch


@pytest.mark.parametrize("precision", ["int8-dynamic", "int8-static"])
def test_int8_records_reduce_range_chosen_from_this_cpu(precision, exported):
    folder, record = exported("onnx", precision)
    settings = record["settings"]
    assert settings["reduce_range"] is (not onnx_exporter.cpu_has_vnni())
    assert "VNNI" in settings["reduce_range_reason"]
    ops = {node.op_type for node in onnx.load(str(folder / "model.onnx")).graph.node}
    if precision == "int8-static":
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops
        assert settings["calibration_samples"] == 32
    else:
        assert ops & {"DynamicQuantizeLinear", "MatMulInteger", "QAttention", "DynamicQuantizeMatMul"}


def test_fp16_stores_half_weights_with_float32_inputs_and_outputs(exported):
    folder, _ = exported("onnx", "fp16")
    model = onnx.load(str(folder / "model.onnx"))
    half = sum(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
    assert half > 10
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_batch_and_sequence_axes_are_dynamic(exported, export_model_dir, task_inputs):
    folder, record = exported("onnx", "fp32")
    assert record["batch_size"] is None
    adapter, _ = runtimes.open_adapter(str(folder / "model.onnx"), threads=1)
    test = task_inputs[0]
    for batch, seq in ((1, 32), (5, 16), (3, 8)):
        feeds = {k: v[:batch, :seq].copy() for k, v in test.items()}
        expected = reference_outputs(load_reference(export_model_dir), feeds)
        got = adapter.output(adapter(adapter.prepare(feeds)))
        assert got.shape == (batch, 3)
        np.testing.assert_allclose(got, expected, atol=1e-4)
