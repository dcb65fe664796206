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

A causal LM (a task with `GENERATIVE`) is exported with its KV cache: optimum's
`text-generation-with-past` graph takes `past_key_values.<layer>.key|value` and returns
`present.<layer>.key|value`, so one graph serves both the prompt (empty cache) and each decode
step (`benchmarks/runtime_onnx.Generator`). No BERT fusion for decoders (`LM_PRECISIONS`):
- fp32: optimum's graph as written;
- fp16: float16 weights, float32 inputs/outputs (`keep_io_types`): the KV cache stays float32;
- int8-dynamic: MatMul weights int8 per channel (GPT-2's Conv1D Gemms are quantised as
  MatMuls too), activations quantised at run time; embeddings stay float.
- int4: weight-only int4 in blocks (ONNX Runtime's `MatMulNBitsQuantizer`: every MatMul with a
  constant weight becomes a `MatMulNBits` contrib op, asymmetric, `INT4_GROUP_SIZE` weights per
  scale or `export.int4_group_size`); activations stay float32, so unlike int8-dynamic no
  activation rounding is added.
"""

from __future__ import annotations

import contextlib
import re
import tempfile
from pathlib import Path
import numpy as np

from edgekd.benchmarks.environment import installed_versions
from edgekd.errors import EdgekdError
from edgekd.exporters.verify import conversion_error

FORMAT = "onnx"
PRECISIONS = ("fp32", "fp16", "int8-dynamic", "int8-static")
LM_PRECISIONS = ("fp32", "fp16", "int8-dynamic", "int4")
OPTIONS = ("int4_group_size",)   # recipe export.* it honours
INT4_GROUP_SIZE = 32   # weights per int4 scale (MatMulNBits block_size: a power of two >= 16)
ARTIFACT = "model.onnx"
EXTERNAL_DATA = "model.onnx_data"   # weights beside the graph when over protobuf's 2 GiB limit
PROTOBUF_LIMIT = 2_000_000_000
KV_CACHE = "past_key_values inputs / present outputs"
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
           calibration: dict[str, np.ndarray] | None, task, options: dict | None = None) -> dict:
    """Write `out_dir/model.onnx` for `precision`; return the exporter's part of export.json.
    `options`: `int4_group_size` for a causal LM's int4 weights."""
    if getattr(task, "GENERATIVE", False):
        return export_lm(Path(model_dir), Path(out_dir), precision, seq_len=seq_len, task=task,
                         group_size=(options or {}).get("int4_group_size"))
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


def export_lm(model_dir: Path, out_dir: Path, precision: str, *, seq_len: int, task,
              group_size: int | None = None) -> dict:
    """Write `out_dir/model.onnx` (+ `model.onnx_data` for a model over 2 GB): a causal LM with
    its KV cache as inputs and outputs, for contexts up to `seq_len` tokens. `group_size`:
    int4's weights per scale (default INT4_GROUP_SIZE)."""
    if precision not in LM_PRECISIONS:
        raise EdgekdError(f"onnx cannot export precision {precision} for a causal LM "
                          f"(supported: {', '.join(LM_PRECISIONS)})")
    group = group_size or INT4_GROUP_SIZE
    if precision == "int4" and group < 16:
        raise EdgekdError(f"onnx int4 (MatMulNBits) needs blocks of at least 16 weights, not "
                          f"{group}: set export.int4_group_size to a power of two >= 16")
    _check_context(model_dir, seq_len)
    settings: dict = {"opset": OPSET, "kv_cache": KV_CACHE, "context": int(seq_len),
                      "dynamic_axes": ["batch", "sequence", "past_sequence"],
                      "graph_optimization": "none at export (ONNX Runtime's own at load)"}
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".work-") as work:
        raw = _export_raw(model_dir, Path(work) / "raw", task.ONNX_TASK)
        graph_inputs = _input_names(raw)
        if precision == "fp32":
            _save(_load(raw), out_dir / ARTIFACT)
        elif precision == "fp16":
            settings.update(_to_fp16(raw, out_dir / ARTIFACT))
        elif precision == "int4":
            settings.update(_quantize_int4_lm(raw, out_dir / ARTIFACT, group))
        else:
            settings.update(_quantize_dynamic_lm(raw, out_dir / ARTIFACT, Path(work)))
    # The token inputs a caller supplies; positions and the cache are the Generator's business.
    input_names = [n for n in graph_inputs if n in task.INPUT_NAMES]
    return {"artifact": ARTIFACT, "batch_size": None, "input_names": input_names,
            "tools": installed_versions("optimum-onnx", "optimum", "onnx", "onnxruntime", "torch",
                                        "transformers"),
            "settings": settings}


def _check_context(model_dir: Path, seq_len: int) -> None:
    """A context longer than the model's position table cannot run (GPT-2's learned positions
    index out of range; RoPE models were never trained there): refuse it before exporting."""
    from transformers import AutoConfig

    limit = getattr(AutoConfig.from_pretrained(model_dir), "max_position_embeddings", None)
    if limit and seq_len > limit:
        raise EdgekdError(f"onnx: context {seq_len} exceeds the model's {limit} positions "
                          "(max_position_embeddings); export with a shorter context")


def _to_fp16(raw: Path, out: Path) -> dict:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    try:
        # keep_io_types: logits and the KV cache stay float32 at the graph's edge, so the
        # Generator feeds every precision the same way.
        model = convert_float_to_float16(_load(raw), keep_io_types=True)
    except Exception as exc:
        raise conversion_error("onnx", "fp16 conversion", exc) from None
    _save(model, out)
    return {"weights": "float16", "keep_io_types": True, "kv_cache_dtype": "float32"}


def _quantize_dynamic_lm(raw: Path, out: Path, work: Path) -> dict:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    reduce_range = not cpu_has_vnni()
    quantized = work / "quantized.onnx"
    try:
        # MatMul only: the weight matrices are where the bytes and the time are; the embedding
        # Gather stays float (it also feeds the tied LM head).
        quantize_dynamic(raw, quantized, op_types_to_quantize=["MatMul"], per_channel=True,
                         reduce_range=reduce_range, weight_type=QuantType.QInt8,
                         use_external_data_format=_size_of(raw) > PROTOBUF_LIMIT)
    except Exception as exc:
        raise conversion_error("onnx", "int8-dynamic quantisation", exc) from None
    _save(_load(quantized), out)    # ORT names external data differently: one name for all
    return {"quantization": "dynamic", "op_types": ["MatMul"], "weight_type": "int8",
            "per_channel": True, "activations": "float, quantised to uint8 at run time",
            "reduce_range": reduce_range, "reduce_range_reason": _reduce_range_reason(reduce_range)}


def _quantize_int4_lm(raw: Path, out: Path, group: int) -> dict:
    """Weight-only int4: MatMulNBits (4 bits, asymmetric, `group` weights per scale and zero
    point along the input dimension); the embedding Gather stays float."""
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    model = _load(raw)
    rewritten = _gemms_as_matmuls(model)
    try:
        quantizer = MatMulNBitsQuantizer(model, bits=4, block_size=group, is_symmetric=False)
        with _quiet_quantizer():
            quantizer.process()
    except Exception as exc:
        raise conversion_error("onnx", "int4 weight quantisation", exc) from None
    packed = sum(n.op_type == "MatMulNBits" for n in quantizer.model.model.graph.node)
    if not packed:
        raise EdgekdError("onnx int4: the graph has no MatMul with constant weights to pack")
    _save(quantizer.model.model, out)
    return {"quantization": "weight-only (MatMulNBitsQuantizer)", "op_types": ["MatMul"],
            "weight_type": "int4", "symmetric": False, "group_size": group,
            "activations": "float32", "packed_matmuls": packed, "gemms_rewritten": rewritten}


@contextlib.contextmanager
def _quiet_quantizer():
    """MatMulNBitsQuantizer logs one INFO line per quantized MatMul (hundreds for an LM):
    edgekd's stage progress is the one display."""
    import logging

    logger = logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _gemms_as_matmuls(model) -> int:
    """Rewrite, in place, each plain Gemm (alpha = beta = 1, no transposes) whose weight B is a
    constant into MatMul(A, B) (+ Add(C)): GPT-2's Conv1D layers export as such Gemms, which
    MatMulNBits does not take. Returns how many were rewritten."""
    from onnx import helper

    constants = {t.name for t in model.graph.initializer}
    nodes, count = [], 0
    for node in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        plain = (node.op_type == "Gemm" and len(node.input) >= 2 and node.input[1] in constants
                 and attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0
                 and not attrs.get("transA", 0) and not attrs.get("transB", 0))
        if not plain:
            nodes.append(node)
            continue
        count += 1
        bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
        product = f"{node.output[0]}_matmul" if bias else node.output[0]
        nodes.append(helper.make_node("MatMul", list(node.input[:2]), [product],
                                      name=f"{node.name}_MatMul"))
        if bias:
            nodes.append(helper.make_node("Add", [product, bias], list(node.output),
                                          name=f"{node.name}_Add"))
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return count


def _load(path: Path):
    import onnx

    return onnx.load(str(path))     # external data, if any, is read from beside the file


def _save(model, out: Path) -> None:
    """Save `model` as `out`, with its weights in one `model.onnx_data` beside it when the
    graph would pass protobuf's 2 GiB limit."""
    import onnx

    large = model.ByteSize() > PROTOBUF_LIMIT
    onnx.save_model(model, str(out), save_as_external_data=large, all_tensors_to_one_file=True,
                    location=EXTERNAL_DATA)


def _size_of(model_path: Path) -> int:
    """Bytes of a graph and the external data files beside it."""
    return sum(p.stat().st_size for p in model_path.parent.iterdir()
               if p.name.startswith(model_path.name))


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
