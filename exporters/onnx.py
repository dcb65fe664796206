"""ONNX exporter: optimum-onnx export, ONNX Runtime graph optimisation, fp16, int8 quantisation.

- fp32: `optimum.exporters.onnx.main_export` (dynamic batch and sequence axes), then ONNX
  Runtime's transformer optimiser (fused attention / layer norm / GELU kernels).
- fp16: the optimised graph with float16 weights and float32 inputs/outputs (`keep_io_types`),
  so callers feed and read the same dtypes as fp32.
- int8-dynamic: `quantize_dynamic` on the optimised graph: int8 per-channel weights,
  activations quantised at run time. `reduce_range` (7-bit weights) is chosen from the CPU
  flags: without VNNI the u8*s8 multiply-add saturates at 8 bits, so 7 bits avoids overflow.
- int8-static: QDQ graph from `quantize_static` (MatMul/Gemm/Gather), calibrated on real task examples.
  It runs on the un-fused graph because the QDQ quantiser cannot place scales around fused
  contrib ops; ONNX Runtime fuses the QDQ pairs into int8 kernels when it loads the model.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
import numpy as np

from edgekd.benchmarks.environment import installed_versions
from edgekd.errors import EdgekdError
from edgekd.exporters.verify import conversion_error

FORMAT = "onnx"
PRECISIONS = ("fp32", "fp16", "int8-dynamic", "int8-static")
ARTIFACT = "model.onnx"
OPSET = 18
STATIC_OP_TYPES = ("MatMul", "Gemm", "Gather")
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8", "avx512vnni")


def runtime_missing(precision: str | None = None) -> str | None:
    """Why this format cannot be used here (a package missing), or None."""
    for module, package in (("onnxruntime", "onnxruntime"), ("onnx", "onnx"),
                            ("optimum.exporters.onnx", "optimum-onnx")):
        try:
            __import__(module)
        except ImportError as exc:
            return f"{package} is not installed ({exc}); pip install 'edgekd[onnx]'"
    return None


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (or the text given), lower case."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return set()
    return set(re.findall(r"[a-z0-9_]+", " ".join(
        line.split(":", 1)[1] for line in cpuinfo.splitlines()
        if line.lower().startswith(("flags", "features")) and ":" in line)))


def cpu_has_vnni(cpuinfo: str | None = None) -> bool:
    """True when the CPU has 8-bit dot-product instructions (x86 VNNI/AMX, or any ARM CPU,
    whose int8 kernels do not saturate), read from /proc/cpuinfo where there is one."""
    import platform

    if cpuinfo is None and platform.machine().lower() in ("aarch64", "arm64", "armv7l"):
        return True
    return any(flag in cpu_flags(cpuinfo) for flag in VNNI_FLAGS)


def export(model_dir: Path, out_dir: Path, precision: str, *, seq_len: int,
           calibration: dict[str, np.ndarray] | None, task) -> dict:
    """Write `out_dir/model.onnx` for `precision`; return the exporter's part of export.json."""
    if precision not in PRECISIONS:
        raise EdgekdError(f"onnx cannot export precision {precision}")
    out_dir = Path(out_dir)
    settings: dict = {"opset": OPSET, "dynamic_axes": ["batch", "sequence"]}
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".work-") as work:
        work = Path(work)
        raw = _export_raw(Path(model_dir), work / "raw", task.ONNX_TASK)
        input_names = _input_names(raw)
        if precision == "int8-static":
            if not calibration:
                raise EdgekdError("onnx int8-static needs calibration examples (--data)")
            settings.update(_quantize_static(raw, out_dir / ARTIFACT, calibration, work))
        else:
            optimized = _optimize(raw, Path(model_dir), work / "optimized.onnx",
                                  fp16=precision == "fp16")
            settings["graph_optimization"] = "onnxruntime.transformers bert fusion"
            if precision == "int8-dynamic":
                settings.update(_quantize_dynamic(optimized, out_dir / ARTIFACT))
            else:
                optimized.replace(out_dir / ARTIFACT)
                if precision == "fp16":
                    settings["keep_io_types"] = True
    return {"artifact": ARTIFACT, "batch_size": None, "input_names": input_names,
            "tools": installed_versions("optimum-onnx", "optimum", "onnx", "onnxruntime", "torch",
                               "transformers"),
            "settings": settings}


def _export_raw(model_dir: Path, folder: Path, onnx_task: str) -> Path:
    from optimum.exporters.onnx import main_export

    try:
        main_export(str(model_dir), folder, task=onnx_task, opset=OPSET,
                    do_validation=False, local_files_only=True)
    except EdgekdError:
        raise
    except Exception as exc:  # the exporter's message names the unsupported operator
        raise conversion_error("onnx", f"export of {model_dir}", exc) from None
    return folder / ARTIFACT


def _optimize(raw: Path, model_dir: Path, out: Path, fp16: bool) -> Path:
    """Fuse attention / layer norm / GELU with ONNX Runtime's transformer optimiser. Only the
    portable fusion passes run (opt_level 0 = no hardware-specific ORT rewrites baked in)."""
    from onnxruntime.transformers.optimizer import optimize_model
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_dir)
    model_type = config.model_type if config.model_type in ("bert", "roberta", "distilbert",
                                                            "albert") else "bert"
    try:
        model = optimize_model(str(raw), model_type=model_type,
                               num_heads=getattr(config, "num_attention_heads", 0) or 0,
                               hidden_size=getattr(config, "hidden_size", 0) or 0, opt_level=0)
        if fp16:
            model.convert_float_to_float16(keep_io_types=True)
        model.save_model_to_file(str(out))
    except Exception as exc:
        raise conversion_error("onnx", "graph optimisation", exc) from None
    return out


def _quantize_dynamic(model: Path, out: Path) -> dict:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    reduce_range = not cpu_has_vnni()
    try:
        # DefaultTensorType: shape inference cannot type the outputs of fused contrib ops.
        quantize_dynamic(model, out, per_channel=True, reduce_range=reduce_range,
                         weight_type=QuantType.QInt8,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    except Exception as exc:
        raise conversion_error("onnx", "int8-dynamic quantisation", exc) from None
    return {"quantization": "dynamic", "weight_type": "int8", "per_channel": True,
            "reduce_range": reduce_range, "reduce_range_reason": _reduce_range_reason(reduce_range)}


def _quantize_static(raw: Path, out: Path, calibration: dict[str, np.ndarray], work: Path) -> dict:
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                          QuantType, quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    names = _input_names(raw)
    missing = [n for n in names if n not in calibration]
    if missing:
        raise EdgekdError(f"onnx int8-static: calibration data lacks inputs {missing}")
    n = len(calibration[names[0]])

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._batches = iter([{k: np.asarray(calibration[k][i:i + 8], dtype=np.int64)
                                   for k in names} for i in range(0, n, 8)])

        def get_next(self):
            return next(self._batches, None)

    reduce_range = not cpu_has_vnni()
    prepared = work / "prepared.onnx"
    try:
        # Symbolic shape inference fails on the exported attention-mask arithmetic; ONNX's own
        # shape inference plus constant folding is what the quantiser needs here.
        quant_pre_process(str(raw), str(prepared), skip_symbolic_shape=True)
        # Only MatMul/Gemm/Gather (the weights and the time; Gather = the embedding tables,
        # ~half of a small BERT's bytes): quantising the attention-mask Add/Softmax path puts
        # the mask's huge negative constants into an activation range and wrecks its
        # resolution (measured on the test model: 67% top-1 agreement instead of 100%).
        quantize_static(prepared, out, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        op_types_to_quantize=list(STATIC_OP_TYPES),
                        reduce_range=reduce_range, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
    except Exception as exc:
        raise conversion_error("onnx", "int8-static quantisation", exc) from None
    return {"quantization": "static-qdq", "op_types": list(STATIC_OP_TYPES),
            "activation_type": "uint8", "weight_type": "int8",
            "per_channel": True, "calibration_method": "minmax", "calibration_samples": n,
            "reduce_range": reduce_range, "reduce_range_reason": _reduce_range_reason(reduce_range)}


def _reduce_range_reason(reduce_range: bool) -> str:
    return ("CPU without VNNI: 7-bit weights avoid u8*s8 saturation" if reduce_range
            else "CPU has VNNI (or is ARM): full 8-bit range")


def _input_names(model_path: Path) -> list[str]:
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    initializers = {t.name for t in graph.initializer}
    return [i.name for i in graph.input if i.name not in initializers]
