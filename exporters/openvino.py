"""OpenVINO exporter: IR (.xml + .bin) via `openvino.convert_model`, fp16 weights, NNCF int8.

- fp32: the PyTorch model traced by `openvino.convert_model` with dynamic batch and sequence
  dimensions; logits are the only output.
- fp16: the same graph saved with `compress_to_fp16` (fp16 weights; the CPU plugin computes in
  f32 unless told otherwise).
- int8-dynamic: `nncf.compress_weights` (int8 weights, data-free; activations stay float and
  are handled by the plugin at run time) — OpenVINO's analogue of dynamic quantisation.
- int8-static: `nncf.quantize` with `ModelType.TRANSFORMER` on the calibration examples.
- bf16: the fp32 graph, run by the CPU plugin in bf16 (`INFERENCE_PRECISION_HINT: bf16`, set by
  the runtime adapter). Only on CPUs with native bf16 (AVX512-BF16 or AMX); elsewhere refused.
  fp32 is always run as f32: bf16 is never a silent substitute for it.
"""


from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekd.benchmarks.environment import installed_versions
from edgekd.errors import EdgekdError
from edgekd.exporters.verify import conversion_error

FORMAT = "openvino"
PRECISIONS = ("fp32", "fp16", "bf16", "int8-dynamic", "int8-static")
# optimum-intel's OVModelFor*.from_pretrained(folder) recognises a converted folder by this
# name, so the export folder loads with the ecosystem's own classes as it is.
ARTIFACT = "openvino_model.xml"
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def runtime_missing(precision: str | None = None) -> str | None:
    """Why this format (and precision) cannot be used here, or None."""
    for module, package in (("openvino", "openvino"), ("nncf", "nncf")):
        try:
            __import__(module)
        except ImportError as exc:
            return f"{package} is not installed ({exc}); pip install 'edgekd[openvino]'"
    if precision == "bf16" and not cpu_has_bf16():
        return ("this CPU has no native bf16 (avx512_bf16 or amx_bf16), so OpenVINO would "
                "emulate it; export bf16 on a CPU that has it")
    return None


def cpu_has_bf16(cpuinfo: str | None = None) -> bool:
    """True when the CPU computes bf16 natively (x86 AVX512-BF16 or AMX-BF16)."""
    from edgekd.exporters.onnx import cpu_flags

    return any(flag in cpu_flags(cpuinfo) for flag in BF16_FLAGS)


def export(model_dir: Path, out_dir: Path, precision: str, *, seq_len: int,
           calibration: dict[str, np.ndarray] | None, task) -> dict:
    """Write `out_dir/model.xml` + `model.bin` for `precision`; return export.json's part."""
    import openvino as ov

    if precision not in PRECISIONS:
        raise EdgekdError(f"openvino cannot export precision {precision}")
    model, names = _convert(Path(model_dir), seq_len, task)
    settings: dict = {"dynamic_axes": ["batch", "sequence"]}
    if precision == "int8-dynamic":
        model = _compress_weights(model)
        settings.update({"quantization": "nncf.compress_weights", "mode": "int8_asym"})
    elif precision == "int8-static":
        if not calibration:
            raise EdgekdError("openvino int8-static needs calibration examples (--data)")
        model, n = _quantize(model, names, calibration)
        settings.update({"quantization": "nncf.quantize", "model_type": "transformer",
                         "calibration_samples": n, "preset": "performance"})
    try:
        ov.save_model(model, str(Path(out_dir) / ARTIFACT), compress_to_fp16=precision == "fp16")
    except Exception as exc:  # the converter raises many types; all mean "cannot save"
        raise conversion_error("openvino", "saving the IR", exc) from None
    if precision == "fp16":
        settings["weights"] = "fp16"
    if precision == "bf16":
        settings["weights"] = "fp32 (computed in bf16 by the CPU plugin)"
    return {"artifact": ARTIFACT, "batch_size": None, "input_names": names,
            "tools": installed_versions("openvino", "nncf", "torch", "transformers"), "settings": settings}


def _convert(model_dir: Path, seq_len: int, task):
    import openvino as ov
    import torch

    model = task.load_reference(model_dir)
    names = list(task.input_names(model, model_dir))
    example = {n: torch.ones((2, seq_len), dtype=torch.long) for n in names}
    example["token_type_ids" if "token_type_ids" in example else "input_ids"] *= 0
    dynamic = [ov.PartialShape([-1, -1])] * len(names)
    try:
        with torch.no_grad():
            ov_model = ov.convert_model(task.conversion_module(model, tuple(names)),
                                        example_input=example, input=list(zip(names, dynamic)))
    except Exception as exc:  # the converter's message names the unsupported operator
        raise conversion_error("openvino", f"conversion of {model_dir}", exc) from None
    for port, name in zip(ov_model.inputs, names):
        port.get_tensor().set_names({name})
    ov_model.outputs[0].get_tensor().set_names({"logits"})
    return ov_model, names


def _compress_weights(model):
    import nncf

    try:
        return nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM)
    except Exception as exc:
        raise conversion_error("openvino", "int8 weight compression", exc) from None


def _quantize(model, names: list[str], calibration: dict[str, np.ndarray]):
    import nncf

    missing = [n for n in names if n not in calibration]
    if missing:
        raise EdgekdError(f"openvino int8-static: calibration data lacks inputs {missing}")
    n = len(calibration[names[0]])
    items = [{k: np.asarray(calibration[k][i:i + 1], dtype=np.int64) for k in names}
             for i in range(n)]
    try:
        quantized = nncf.quantize(model, nncf.Dataset(items), subset_size=n,
                                  model_type=nncf.ModelType.TRANSFORMER,
                                  preset=nncf.QuantizationPreset.PERFORMANCE)
    except Exception as exc:
        raise conversion_error("openvino", "int8-static quantisation", exc) from None
    return quantized, n
