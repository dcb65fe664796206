"""OpenVINO exporter: IR (.xml + .bin) via `openvino.convert_model`, fp16 weights, NNCF int8.

- fp32: the PyTorch model traced by `openvino.convert_model` with dynamic batch and sequence
  dimensions; logits are the only output.
- fp16: the same graph saved with `compress_to_fp16` (fp16 weights; the CPU plugin computes in
  f32 unless told otherwise).
- int8-dynamic: `nncf.compress_weights` (int8 weights, data-free; activations stay float and
  are handled by the plugin at run time) — OpenVINO's analogue of dynamic quantisation.
- int8-static: `nncf.quantize` with `ModelType.TRANSFORMER` on the calibration examples.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from edgekd.benchmarks.environment import installed_versions
from edgekd.errors import EdgekdError, first_line
from edgekd.exporters.verify import conversion_error

FORMAT = "openvino"
PRECISIONS = ("fp32", "fp16", "int8-dynamic", "int8-static")
RUNTIME_PACKAGE = "openvino"
ARTIFACT = "model.xml"
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
# Verification and benchmarks compare like with like: without this hint the CPU plugin runs
# bf16 on AMX/AVX512-bf16 CPUs, which would make an fp32 IR look lossy.
CPU_CONFIG = {"INFERENCE_PRECISION_HINT": "f32"}


def runtime_missing() -> str | None:
    """Why this format cannot be used here (a package missing), or None."""
    for module, package in (("openvino", "openvino"), ("nncf", "nncf")):
        try:
            __import__(module)
        except ImportError as exc:
            return f"{package} is not installed ({exc}); pip install 'edgekd[openvino]'"
    return None


def export(model_dir: Path, out_dir: Path, precision: str, *, seq_len: int,
           calibration: dict[str, np.ndarray] | None) -> dict:
    """Write `out_dir/model.xml` + `model.bin` for `precision`; return export.json's part."""
    import openvino as ov

    if precision not in PRECISIONS:
        raise EdgekdError(f"openvino cannot export precision {precision}")
    model, names = _convert(Path(model_dir), seq_len)
    settings: dict = {"dynamic_axes": ["batch", "sequence"], "cpu_config": CPU_CONFIG}
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
    except Exception as exc:
        raise conversion_error("openvino", "saving the IR", exc) from None
    if precision == "fp16":
        settings["weights"] = "fp16"
    return {"artifact": ARTIFACT, "batch_size": None, "input_names": names,
            "tools": installed_versions("openvino", "nncf", "torch", "transformers"), "settings": settings}


def load(artifact: Path, threads: int | None = None) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
    """Compile the IR for the CPU; the callable maps int64 feeds to float32 logits."""
    import openvino as ov

    artifact = Path(artifact)
    if not artifact.is_file() or not artifact.with_suffix(".bin").is_file():
        raise EdgekdError(f"openvino artifact incomplete: {artifact} needs "
                          f"{artifact.with_suffix('.bin').name} beside it")
    config = dict(CPU_CONFIG)
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    try:
        compiled = ov.Core().compile_model(str(artifact), "CPU", config)
    except Exception as exc:  # openvino raises RuntimeError with a multi-line trace
        raise EdgekdError(f"openvino: cannot load {artifact}: {first_line(exc)}") from None
    names = [port.get_any_name() for port in compiled.inputs]
    request = compiled.create_infer_request()

    def run(feeds: dict[str, np.ndarray]) -> np.ndarray:
        missing = [n for n in names if n not in feeds]
        if missing:
            raise EdgekdError(f"openvino model {artifact.name} needs inputs {missing}")
        result = request.infer({n: np.asarray(feeds[n], dtype=np.int64) for n in names})
        return np.asarray(result[compiled.outputs[0]], dtype=np.float32).copy()

    return run


def _logits_only(model):
    """Wrap a Hugging Face classifier so the traced graph has one output: the logits."""
    import torch

    class LogitsOnly(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
            if token_type_ids is not None:
                kwargs["token_type_ids"] = token_type_ids
            return self.inner(**kwargs, return_dict=False)[0]

    return LogitsOnly(model).eval()


def _convert(model_dir: Path, seq_len: int):
    import inspect

    import openvino as ov
    import torch

    from edgekd.exporters.verify import load_reference

    model = load_reference(model_dir)
    accepted = inspect.signature(model.forward).parameters
    names = [n for n in INPUT_NAMES if n in accepted and
             (n != "token_type_ids" or getattr(model.config, "type_vocab_size", 0))]
    example = {n: torch.ones((2, seq_len), dtype=torch.long) for n in names}
    example["token_type_ids" if "token_type_ids" in example else "input_ids"] *= 0
    dynamic = [ov.PartialShape([-1, -1])] * len(names)
    try:
        with torch.no_grad():
            ov_model = ov.convert_model(_logits_only(model), example_input=example,
                                        input=list(zip(names, dynamic)))
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
