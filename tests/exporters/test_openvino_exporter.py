"""OpenVINO specifics: IR pair on disk, dynamic shapes, fp16 and int8 weights in the IR."""

from __future__ import annotations

import numpy as np
import pytest

ov = pytest.importorskip("openvino", reason="openvino is not installed")

from edgekd.benchmarks import runtimes  # noqa: E402
from edgekd.exporters import openvino as ov_exporter  # noqa: E402


def element_types(xml) -> set[str]:
    model = ov.Core().read_model(str(xml))
    return {op.get_output_element_type(0).get_type_name() for op in model.get_ops()
            if op.get_type_name() == "Constant"}


def test_ir_is_an_xml_bin_pair_with_dynamic_shapes(exported):
    folder, record = exported("openvino", "fp32")
    assert record["artifact"] == "openvino_model.xml" and (folder / "openvino_model.bin").is_file()
    assert record["size_bytes"] >= (folder / "openvino_model.bin").stat().st_size
    model = ov.Core().read_model(str(folder / "openvino_model.xml"))
    assert [i.get_any_name() for i in model.inputs] == record["input_names"]
    for port in model.inputs:
        assert port.get_partial_shape().is_dynamic
    assert model.outputs[0].get_any_name() == "logits"


def test_fp16_and_int8_weights_are_stored_as_such(exported):
    assert "f16" in element_types(exported("openvino", "fp16")[0] / "openvino_model.xml")
    assert "f16" not in element_types(exported("openvino", "fp32")[0] / "openvino_model.xml")
    assert {"u8", "i8"} & element_types(exported("openvino", "int8-dynamic")[0] / "openvino_model.xml")
    static = ov.Core().read_model(str(exported("openvino", "int8-static")[0] / "openvino_model.xml"))
    assert any(op.get_type_name() == "FakeQuantize" for op in static.get_ops())


def test_runs_any_batch_and_sequence_length(exported, task_inputs):
    folder, _ = exported("openvino", "fp32")
    adapter, _ = runtimes.open_adapter(str(folder / "openvino_model.xml"), threads=1)
    for batch, seq in ((1, 32), (4, 12)):
        feeds = {k: v[:batch, :seq] for k, v in task_inputs[0].items()}
        out = adapter.output(adapter(adapter.prepare(feeds)))
        assert out.shape == (batch, 3) and np.isfinite(out).all()
    with pytest.raises(runtimes.ArtifactError, match="needs inputs"):
        adapter.prepare({"input_ids": task_inputs[0]["input_ids"][:1]})


def test_fp32_runs_in_f32_and_bf16_is_its_own_precision(exported):
    """fp32 means fp32 on every CPU: the adapter pins the CPU plugin's inference precision, which
    would otherwise be bf16 on CPUs with AVX512-BF16/AMX. bf16 is asked for by name."""
    from edgekd.benchmarks.runtime_openvino import settings

    _, record = exported("openvino", "fp32")
    assert record["runtime_settings"]["INFERENCE_PRECISION_HINT"] == "f32"
    for precision in ("fp16", "int8-dynamic", "int8-static"):
        assert settings(precision, 1)["INFERENCE_PRECISION_HINT"] == "f32"
    assert settings("bf16", 1)["INFERENCE_PRECISION_HINT"] == "bf16"
    adapter, used = runtimes.open_adapter(str(exported("openvino", "fp32")[0] / "openvino_model.xml"))
    assert str(adapter.compiled.get_property("INFERENCE_PRECISION_HINT")) in ("f32", "<Type: 'float32'>")


def test_bf16_needs_a_cpu_with_native_bf16():
    zen3 = "flags\t: fpu sse avx avx2 fma\n"
    zen4 = "flags\t: fpu sse avx avx2 fma avx512f avx512_vnni avx512_bf16\n"
    assert not ov_exporter.cpu_has_bf16(zen3) and ov_exporter.cpu_has_bf16(zen4)
    reason = ov_exporter.runtime_missing("bf16")
    assert (reason is None) == ov_exporter.cpu_has_bf16()
    if reason:
        assert "no native bf16" in reason
