"""Shared verification: run an exported artifact and its PyTorch source on the same inputs.

The numbers (max absolute logit difference, top-1 agreement, task accuracy) go into
export.json. An artifact whose agreement is below its precision's threshold is marked failed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from edgekd.errors import EdgekdError

# Share of examples whose top-1 class must match PyTorch. fp32/fp16 are the same function up to
# rounding; int8 changes the function a little, so its bar is lower (and recorded).
MIN_AGREEMENT = {"fp32": 0.99, "fp16": 0.99, "int8-dynamic": 0.90, "int8-static": 0.90}
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
GENERATED_EXAMPLES = 32


_OPERATOR_PATTERNS = (
    r"(aten::[A-Za-z0-9_.]+)",                       # torch ops named by both converters
    r"operator '?([A-Za-z0-9_:.]+)'?",                 # "Exporting the operator 'x' ..."
    r"[Oo]p(?:erator)? type[: ]+'?([A-Za-z0-9_:.]+)",  # ONNX Runtime / OpenVINO node types
    r"(?:No|Unsupported) [Oo]p(?:eration)?[: ]+'?([A-Za-z0-9_:.]+)",
)


def conversion_error(fmt: str, what: str, exc: BaseException) -> EdgekdError:
    """A one-line EdgekdError for a converter failure: the format, what failed, the converter's
    first line, and the operator when the converter's (possibly multi-line) message names one."""
    import re

    text = str(exc).strip() or type(exc).__name__
    # OpenVINO's first lines are C++ source locations; keep the first line a person can use.
    lines = [line.strip() for line in text.splitlines()
             if line.strip() and " failed at src/" not in line and not line.startswith("Check '")]
    first = (lines[0] if lines else text.splitlines()[0])[:300]
    operator = None
    for pattern in _OPERATOR_PATTERNS:
        match = re.search(pattern, text)
        if match:
            operator = match.group(1).rstrip(".:,")
            break
    where = f" (operator {operator})" if operator and operator not in first else ""
    return EdgekdError(f"{fmt}: {what} failed{where}: {first}")


def check_model_dir(model_dir: str | Path) -> Path:
    """The folder if it holds a Hugging Face model (config.json + weights), else EdgekdError."""
    folder = Path(model_dir)
    if not folder.is_dir():
        raise EdgekdError(f"model folder not found: {folder}")
    if not (folder / "config.json").is_file():
        raise EdgekdError(f"{folder} is not a model folder (no config.json; expected a Hugging "
                          "Face save_pretrained folder)")
    weights = [p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin")
               and not p.name.startswith("training_args")]
    if not weights:
        raise EdgekdError(f"{folder} is not a model folder (no .safetensors or .bin weights)")
    return folder


def load_reference(model_dir: Path):
    """The PyTorch model, in eval mode, as the verification reference."""
    from transformers import AutoModelForSequenceClassification

    try:
        return AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    except Exception as exc:  # transformers raises OSError/ValueError/... for broken folders
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EdgekdError(f"cannot load the model in {model_dir}: {text}") from None


def reference_logits(model, inputs: dict[str, np.ndarray], batch_size: int = 32) -> np.ndarray:
    """PyTorch logits for `inputs`, batched, without gradients."""
    import torch

    accepted = set(model.forward.__code__.co_varnames)
    names = [n for n in INPUT_NAMES if n in inputs and n in accepted]
    n = len(inputs[names[0]])
    chunks = []
    with torch.no_grad():
        for i in range(0, n, batch_size):
            feeds = {k: torch.from_numpy(np.asarray(inputs[k][i:i + batch_size], dtype=np.int64))
                     for k in names}
            chunks.append(model(**feeds).logits.float().numpy())
    return np.concatenate(chunks)


def artifact_logits(run: Callable[[dict], np.ndarray], inputs: dict[str, np.ndarray],
                    batch_size: int | None) -> np.ndarray:
    """Logits from an artifact's callable. A fixed `batch_size` (static-shape artifacts) is fed
    exactly that many rows, the last chunk padded by repeating rows and trimmed afterwards."""
    names = [n for n in INPUT_NAMES if n in inputs]
    n = len(inputs[names[0]])
    step = batch_size or 32
    chunks = []
    for i in range(0, n, step):
        feeds = {k: np.asarray(inputs[k][i:i + step], dtype=np.int64) for k in names}
        rows = len(feeds[names[0]])
        if batch_size and rows < batch_size:
            pad = np.arange(batch_size) % rows
            feeds = {k: v[pad] for k, v in feeds.items()}
        chunks.append(np.asarray(run(feeds), dtype=np.float32)[:rows])
    return np.concatenate(chunks)


def parity(reference: np.ndarray, got: np.ndarray, precision: str) -> dict:
    """Compare logits: max abs difference, top-1 agreement, and the threshold applied."""
    if got.shape != reference.shape:
        raise EdgekdError(f"artifact returned logits of shape {tuple(got.shape)}, "
                          f"PyTorch {tuple(reference.shape)}")
    finite = bool(np.isfinite(got).all())
    diff = float(np.abs(got - reference).max()) if finite else float("inf")
    agreement = float((got.argmax(-1) == reference.argmax(-1)).mean()) if finite else 0.0
    return {"max_abs_diff": diff, "top1_agreement": agreement, "n": int(len(reference)),
            "min_agreement": MIN_AGREEMENT[precision]}


def parity_error(result: dict) -> str | None:
    """One line saying why `parity` result fails its threshold, or None when it passes."""
    if result["top1_agreement"] < result["min_agreement"]:
        return (f"top-1 agreement with PyTorch {result['top1_agreement']:.1%} is below "
                f"{result['min_agreement']:.0%} (max abs logit diff {result['max_abs_diff']:.3g})")
    if not np.isfinite(result["max_abs_diff"]):
        return "artifact produced non-finite logits"
    return None


def accuracy(logits: np.ndarray, labels: np.ndarray | None) -> float | None:
    """Task accuracy of `logits` against `labels` (None without labels)."""
    if labels is None or len(labels) == 0:
        return None
    return float((logits.argmax(-1) == np.asarray(labels)).mean())


def generated_inputs(model_dir: Path, seq_len: int, n: int = GENERATED_EXAMPLES,
                     seed: int = 0) -> dict[str, np.ndarray]:
    """Token inputs without task data: random ids from the tokenizer's vocabulary (special tokens
    kept out of the body), [CLS] ... [SEP] and padding of varied lengths, so masking is exercised."""
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(model_dir)
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        vocab = min(len(tokenizer), config.vocab_size)
        special = set(tokenizer.all_special_ids)
        cls = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
        sep = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
        pad = tokenizer.pad_token_id or 0
        names = tokenizer.model_input_names
    except (OSError, ValueError):  # a model folder saved without its tokenizer
        vocab, special, cls, sep, pad = config.vocab_size, set(), None, None, 0
        names = ["input_ids", "attention_mask", "token_type_ids"]
    rng = np.random.default_rng(seed)
    body = np.array([i for i in range(vocab) if i not in special] or [0], dtype=np.int64)
    ids = rng.choice(body, size=(n, seq_len))
    mask = np.ones((n, seq_len), dtype=np.int64)
    lengths = rng.integers(max(2, seq_len // 4), seq_len + 1, size=n)
    for row, length in enumerate(lengths):
        if cls is not None:
            ids[row, 0] = cls
        if sep is not None:
            ids[row, length - 1] = sep
        ids[row, length:] = pad
        mask[row, length:] = 0
    out = {"input_ids": ids, "attention_mask": mask}
    if "token_type_ids" in names and getattr(config, "type_vocab_size", 0):
        out["token_type_ids"] = np.zeros((n, seq_len), dtype=np.int64)
    return out
