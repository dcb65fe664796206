"""TFLite (LiteRT) export: PyTorch -> `.tflite` with litert-torch, quantized with ai-edge-quantizer.

The model is converted once at a fixed shape (batch 1 x seq_len, recorded in export.json as
`batch_size: 1`): litert-torch bakes static shapes into the graph's reshapes, so the file cannot
be resized later. Verification feeds it one row per call, and a benchmark at another batch size
is refused before measuring (see `benchmarks/runtime_tflite.py`, which loads and runs the file).
litert-torch downcasts int64 inputs to int32 (its default `enable_x64=False`, which keeps the
graph runnable on TFLite kernels that lack int64); the adapter casts feeds to the file's dtype.
fp16 / int8 variants are derived from the float file (see `tflite_quant`).
"""

from __future__ import annotations

import importlib.util
import re
import tempfile
from pathlib import Path

import numpy as np

from edgekd.benchmarks.environment import installed_versions
from edgekd.errors import EdgekdError, first_line
from edgekd.exporters import tflite_lm

FORMAT = "tflite"
PRECISIONS = ("fp32", "fp16", "int8-dynamic", "int8-static")
# A causal LM is exported with a KV cache by `tflite_lm` (litert-torch's generative API).
LM_PRECISIONS = tflite_lm.LM_PRECISIONS
OPTIONS = ("int4_group_size",)   # recipe export.* it honours
ARTIFACT = "model.tflite"


def runtime_missing(precision: str | None = None) -> str | None:
    """Why TFLite export/loading cannot run here, or None when it can."""
    from edgekd.benchmarks.runtime_tflite import interpreter_class
    from edgekd.benchmarks.runtimes import RuntimeMissing

    # find_spec, not import: importing litert_torch costs ~7 s (it pulls torch and the
    # converter); an incomplete install still fails later with a clear export error.
    for package, dist in (("litert_torch", "litert-torch"),
                          ("ai_edge_quantizer", "ai-edge-quantizer")):
        if importlib.util.find_spec(package) is None:
            return f"{dist} is not installed (pip install 'edgekd[tflite]')"
    try:
        interpreter_class()
    except RuntimeMissing as exc:
        return str(exc)
    return None


def export(model_dir: Path, out_dir: Path, precision: str, *, seq_len: int,
           calibration: dict[str, np.ndarray] | None, task, options: dict | None = None) -> dict:
    """Convert the model in `model_dir` to `out_dir/model.tflite` at `precision` (fixed shape
    1 x `seq_len`) and return the export.json fields this format owns."""
    from edgekd.exporters import tflite_quant

    if getattr(task, "GENERATIVE", False):
        return tflite_lm.export(model_dir, out_dir, precision, seq_len=seq_len, task=task,
                                group_size=(options or {}).get("int4_group_size"))
    if precision not in PRECISIONS:
        raise EdgekdError(f"tflite: unknown precision '{precision}' (choose from "
                          f"{', '.join(PRECISIONS)})")
    if precision == "int8-static" and calibration is None:
        raise EdgekdError("tflite int8-static needs calibration data (export.calibration_samples)")
    out_dir = Path(out_dir)
    model, input_names = _load_model(Path(model_dir), seq_len, task)
    tools = installed_versions("torch", "transformers", "litert-torch", "ai-edge-litert")
    settings = {"seq_len": seq_len, "batch_size": 1, "enable_x64": False,
                "batching": "fixed batch 1 (static shapes): other batch sizes are refused"}
    if precision == "fp32":
        convert(model, input_names, seq_len, out_dir / ARTIFACT)
    else:
        with tempfile.TemporaryDirectory(prefix="edgekd-tflite-") as tmp:
            float_path = Path(tmp) / "float.tflite"
            convert(model, input_names, seq_len, float_path)
            settings |= tflite_quant.quantize(float_path, out_dir / ARTIFACT, precision,
                                              calibration)
        tools |= installed_versions("ai-edge-quantizer")
    settings["input_dtype"] = _input_dtype(out_dir / ARTIFACT)
    return {"artifact": ARTIFACT, "batch_size": 1, "input_names": list(input_names),
            "tools": tools, "settings": settings}


def convert(model, input_names: tuple[str, ...], seq_len: int, path: Path) -> Path:
    """Convert a `(**inputs) -> logits` torch module to a float `.tflite` at `path` with
    litert-torch; the signature's inputs are named after `input_names`."""
    import litert_torch
    import torch

    # Tracing values do not matter (shapes are static); ones are valid ids and a full mask.
    sample = {name: (torch.zeros if name == "token_type_ids" else torch.ones)(
        1, seq_len, dtype=torch.long) for name in input_names}
    try:
        edge_model = litert_torch.convert(model, sample_kwargs=sample)
        edge_model.export(str(path))
    except Exception as exc:  # the converter raises many types; all mean "cannot convert"
        operator = _operator_in(str(exc))
        where = f" at operator {operator}" if operator else ""
        raise EdgekdError(f"tflite: litert-torch conversion failed{where}: "
                          f"{first_line(exc)}") from exc
    return path


def _load_model(model_dir: Path, seq_len: int, task):
    """The task's conversion module (eager attention: one plain softmax(QK^T)V graph, which
    every TFLite kernel set handles) and the input names it takes."""
    if not (model_dir / "config.json").is_file():
        raise EdgekdError(f"tflite: {model_dir} is not a Hugging Face model folder "
                          "(no config.json)")
    from transformers import AutoConfig

    max_positions = getattr(AutoConfig.from_pretrained(model_dir), "max_position_embeddings", None)
    if max_positions and seq_len > max_positions:
        raise EdgekdError(f"tflite: seq_len {seq_len} exceeds the model's max_position_embeddings "
                          f"({max_positions})")
    model = task.load_reference(model_dir, attn_implementation="eager")
    names = task.input_names(model, model_dir)
    return task.conversion_module(model, names), names


_OPERATOR_PATTERNS = (
    r"Lowering not found: (\S+)",                # litert-torch: no lowering for an aten op
    r"failed to legalize operation '([^']+)'",   # MLIR / TFLite converter
    r"'([\w]+\.[\w.]+)' op",                     # MLIR op diagnostics ('tfl.gather' op ...)
    r"\b(aten\.[\w.]+)",                         # torch.export / decomposition errors
)


def _operator_in(message: str) -> str | None:
    """The operator a converter error names, when it names one."""
    for pattern in _OPERATOR_PATTERNS:
        match = re.search(pattern, message)
        if match:
            return match.group(1)
    return None


def _input_dtype(path: Path) -> str:
    """The integer type the file's inputs take (int32 after litert-torch's x64 downcast)."""
    from edgekd.benchmarks.runtime_tflite import interpreter_class

    interpreter_cls, _, _ = interpreter_class()
    details = interpreter_cls(model_path=str(path)).get_input_details()
    return ",".join(sorted({np.dtype(d["dtype"]).name for d in details}))
