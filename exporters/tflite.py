"""TFLite (LiteRT) export: PyTorch -> `.tflite` with litert-torch, quantized with ai-edge-quantizer.

The model is converted once at a fixed shape (batch 1 x seq_len, recorded in export.json as
`batch_size: 1`): litert-torch bakes static shapes into the graph's reshapes, so the file cannot
be resized later. `load` therefore runs a batch of b rows as b invocations of the batch-1 model.
litert-torch downcasts int64 inputs to int32 (its default `enable_x64=False`, which keeps the
graph runnable on TFLite kernels that lack int64); `load` casts the feeds to whatever dtype the
file declares. fp16 / int8 variants are derived from the float file (see `tflite_quant`).

Loading on a host or device uses the first interpreter found: `ai_edge_litert`, else
`tflite_runtime` (old boards), else `tensorflow.lite`.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from edgekd.benchmarks.environment import installed_versions
from edgekd.errors import EdgekdError, first_line

FORMAT = "tflite"
PRECISIONS = ("fp32", "fp16", "int8-dynamic", "int8-static")
RUNTIME_PACKAGE = "ai-edge-litert"
ARTIFACT = "model.tflite"
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")

# (runtime name, module to import, attribute path to the Interpreter class), in order of choice.
INTERPRETERS = (
    ("ai_edge_litert", "ai_edge_litert.interpreter", "Interpreter"),
    ("tflite_runtime", "tflite_runtime.interpreter", "Interpreter"),
    ("tensorflow.lite", "tensorflow", "lite.Interpreter"),
)


def interpreter_class() -> tuple[type, str]:
    """The first TFLite interpreter class that imports, and its runtime name."""
    reasons = []
    for runtime, module_name, attribute in INTERPRETERS:
        try:
            found = importlib.import_module(module_name)
            for part in attribute.split("."):
                found = getattr(found, part)
        except (ImportError, AttributeError) as exc:
            reasons.append(f"{runtime}: {exc}")
            continue
        return found, runtime
    raise EdgekdError("tflite: no TFLite interpreter found (pip install ai-edge-litert; "
                      "tried " + "; ".join(reasons) + ")")


def runtime_missing() -> str | None:
    """Why TFLite export/loading cannot run here, or None when it can."""
    # find_spec, not import: importing litert_torch costs ~7 s (it pulls torch and the
    # converter); an incomplete install still fails later with a clear export error.
    for package, dist in (("litert_torch", "litert-torch"),
                          ("ai_edge_quantizer", "ai-edge-quantizer")):
        if importlib.util.find_spec(package) is None:
            return f"{dist} is not installed (pip install 'edgekd[tflite]')"
    try:
        interpreter_class()
    except EdgekdError as exc:
        return str(exc)
    return None


def export(model_dir: Path, out_dir: Path, precision: str, *, seq_len: int,
           calibration: dict[str, np.ndarray] | None) -> dict:
    """Convert the Hugging Face classifier in `model_dir` to `out_dir/model.tflite` at
    `precision` (fixed shape 1 x `seq_len`) and return the export.json fields this format owns."""
    from edgekd.exporters import tflite_quant

    if precision not in PRECISIONS:
        raise EdgekdError(f"tflite: unknown precision '{precision}' (choose from "
                          f"{', '.join(PRECISIONS)})")
    if precision == "int8-static" and calibration is None:
        raise EdgekdError("tflite int8-static needs calibration data (export.calibration_samples)")
    out_dir = Path(out_dir)
    model, input_names = _load_model(Path(model_dir), seq_len)
    tools = installed_versions("torch", "transformers", "litert-torch", "ai-edge-litert")
    settings = {"seq_len": seq_len, "batch_size": 1, "enable_x64": False,
                "batching": "fixed batch 1; load() runs b rows as b invocations"}
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


def logits_only(model):
    """Wrap a Hugging Face classifier as a module taking named int64 inputs and returning only
    the logits tensor (a tuple/ModelOutput return is not a clean single-output signature)."""
    import torch

    class LogitsOnly(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, **inputs):
            return self.model(**inputs, return_dict=False)[0]

    return LogitsOnly().eval()


def _load_model(model_dir: Path, seq_len: int):
    """The classifier wrapped for conversion, and the input names it takes (INPUT_NAMES order)."""
    import inspect

    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    if not (model_dir / "config.json").is_file():
        raise EdgekdError(f"tflite: {model_dir} is not a Hugging Face model folder "
                          "(no config.json)")
    config = AutoConfig.from_pretrained(model_dir)
    max_positions = getattr(config, "max_position_embeddings", None)
    if max_positions and seq_len > max_positions:
        raise EdgekdError(f"tflite: seq_len {seq_len} exceeds the model's max_position_embeddings "
                          f"({max_positions})")
    try:
        # eager attention: one plain softmax(QK^T)V graph, which every TFLite kernel set handles
        model = AutoModelForSequenceClassification.from_pretrained(
            model_dir, attn_implementation="eager", dtype=torch.float32).eval()
    except (OSError, ValueError) as exc:
        raise EdgekdError(f"tflite: cannot load {model_dir}: {first_line(exc)}") from None
    accepted = inspect.signature(model.forward).parameters
    names = _tokenizer_input_names(model_dir)
    input_names = tuple(n for n in INPUT_NAMES if n in accepted and (names is None or n in names))
    if "input_ids" not in input_names:
        raise EdgekdError(f"tflite: {type(model).__name__} does not take input_ids")
    return logits_only(model), input_names


def _tokenizer_input_names(model_dir: Path) -> set[str] | None:
    """What the saved tokenizer produces (so the file takes what inputs.npz holds), if any."""
    if not any((model_dir / f).is_file() for f in ("tokenizer_config.json", "tokenizer.json")):
        return None
    try:
        from transformers import AutoTokenizer

        return set(AutoTokenizer.from_pretrained(model_dir).model_input_names)
    except (OSError, ValueError, KeyError, TypeError):  # a broken tokenizer: fall back to forward()
        return None


def load(artifact: Path,
         threads: int | None = None) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
    """Open `artifact` in the first TFLite interpreter found; return a function from int64 feeds
    [b, seq_len] to float32 logits [b, num_labels] (b invocations of the batch-1 model)."""
    interpreter_cls, runtime = interpreter_class()
    artifact = Path(artifact)
    if not artifact.is_file():
        raise EdgekdError(f"tflite: artifact not found: {artifact}")
    try:
        interpreter = interpreter_cls(model_path=str(artifact), num_threads=threads)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise EdgekdError(f"tflite: {runtime} cannot open {artifact}: {first_line(exc)}") from None
    inputs = _input_tensors(interpreter)
    output = interpreter.get_output_details()[0]
    seq_len = int(next(iter(inputs.values()))["shape"][-1])
    scale, zero_point = _dequantization(output)

    def run(feeds: dict[str, np.ndarray]) -> np.ndarray:
        rows = _check_feeds(feeds, inputs, seq_len)
        logits = []
        for i in range(rows):
            for name, detail in inputs.items():
                if name in feeds:
                    row = np.asarray(feeds[name][i:i + 1], dtype=detail["dtype"])
                else:  # token_type_ids: BERT's default is all zeros
                    row = np.zeros((1, seq_len), dtype=detail["dtype"])
                interpreter.set_tensor(detail["index"], row)
            interpreter.invoke()
            logits.append(interpreter.get_tensor(output["index"]))
        out = np.concatenate(logits, axis=0).reshape(rows, -1)
        if scale is not None:  # int8-static: the logits come out quantized
            out = (out.astype(np.float32) - zero_point) * scale
        return out.astype(np.float32)

    return run


def _input_tensors(interpreter) -> dict[str, dict]:
    """Model input name (input_ids / attention_mask / token_type_ids) -> tensor details.

    Prefer the signature's input names (exact); files without signatures are matched on the
    tensor name (e.g. `serving_default_input_ids:0`)."""
    details = {d["index"]: d for d in interpreter.get_input_details()}
    # very old tflite_runtime builds have no signature API
    has_signatures = hasattr(interpreter, "get_signature_list")
    signatures = interpreter.get_signature_list() if has_signatures else {}
    found = {}
    if signatures:
        runner = interpreter.get_signature_runner(next(iter(signatures)))
        for name, detail in runner.get_input_details().items():
            if name in INPUT_NAMES and detail["index"] in details:
                found[name] = details[detail["index"]]
    if not found:
        for detail in details.values():
            name = next((n for n in INPUT_NAMES if n in detail["name"]), None)
            if name:
                found[name] = detail
    if "input_ids" not in found or len(found) != len(details):
        names = ", ".join(d["name"] for d in details.values())
        raise EdgekdError(f"tflite: cannot map the model's inputs ({names}) to "
                          f"{', '.join(INPUT_NAMES)}")
    return {n: found[n] for n in INPUT_NAMES if n in found}


def _check_feeds(feeds: dict[str, np.ndarray], inputs: dict[str, dict], seq_len: int) -> int:
    """The number of rows in `feeds`, after checking they fit the fixed-shape model."""
    if "input_ids" not in feeds:
        raise EdgekdError("tflite: feeds lack input_ids")
    missing = [n for n in inputs if n not in feeds and n != "token_type_ids"]
    if missing:
        raise EdgekdError(f"tflite: feeds lack {missing[0]}")
    rows = int(np.shape(feeds["input_ids"])[0])
    for name in inputs:
        if name in feeds and tuple(np.shape(feeds[name])) != (rows, seq_len):
            raise EdgekdError(f"tflite: feed {name} has shape {tuple(np.shape(feeds[name]))}; "
                              f"this model was exported for [b, {seq_len}]")
    return rows


def _dequantization(output: dict) -> tuple[float | None, float]:
    """(scale, zero_point) when the output tensor is integer-quantized, else (None, 0)."""
    if not np.issubdtype(output["dtype"], np.integer):
        return None, 0.0
    scale, zero_point = output.get("quantization", (0.0, 0))
    if not scale:
        raise EdgekdError("tflite: the model's output is an integer tensor without quantization "
                          "parameters")
    return float(scale), float(zero_point)


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
    interpreter_cls, _ = interpreter_class()
    details = interpreter_cls(model_path=str(path)).get_input_details()
    return ",".join(sorted({np.dtype(d["dtype"]).name for d in details}))
