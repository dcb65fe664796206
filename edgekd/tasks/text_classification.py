"""Text classification: a Hugging Face sequence classifier (BERT, DistilBERT, RoBERTa, ...).

Inputs are token ids, attention mask and (BERT) token types at a fixed sequence length; the
output is one row of logits per example. Quality is accuracy on the labelled eval split; parity
between an artifact and its PyTorch source is the max absolute logit difference and the share of
examples whose top-1 class agrees.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekd.errors import EdgekdError, first_line

TASK = "text-classification"
ONNX_TASK = "text-classification"          # optimum's name for the export
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
GENERATED_EXAMPLES = 32
# Share of examples whose top-1 class must match PyTorch. fp32/fp16 are the same function up to
# rounding; bf16 keeps 8 bits of mantissa; int8 changes the function a little, so its bar is lower.
MIN_AGREEMENT = {"fp32": 0.99, "fp16": 0.99, "bf16": 0.95, "int8-dynamic": 0.90,
                 "int8-static": 0.90}


def check_config(config, where: str) -> None:
    """Refuse a model this task cannot use (e.g. a causal LM) before any work starts."""
    architectures = getattr(config, "architectures", None) or []
    if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures):
        raise EdgekdError(f"{where} is a causal language model ({architectures[0]}); a "
                          f"{TASK} recipe needs an encoder such as BERT")


def load_model(source: str, labels: list[str], what: str = "model",
               attn_implementation: str | None = None):
    """The classifier for training, from a folder or id, with the task's label names.

    A model whose head has another number of labels (or none, like a sentence encoder) gets a
    fresh head of the right size; the encoder weights are kept.
    """
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    id2label = dict(enumerate(labels))
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the "newly initialized head" warning is expected here
    try:
        return AutoModelForSequenceClassification.from_pretrained(
            source, num_labels=len(labels), id2label=id2label,
            label2id={name: i for i, name in id2label.items()}, ignore_mismatched_sizes=True,
            **({"attn_implementation": attn_implementation} if attn_implementation else {}))
    except (OSError, ValueError, KeyError) as exc:
        raise EdgekdError(f"cannot load {what} from '{source}': {first_line(exc)}") from None
    finally:
        hf_logging.set_verbosity(level)


def load_reference(model_dir: Path, attn_implementation: str | None = None):
    """The saved classifier as it is (its own head), in eval mode: the verification reference
    and the model every exporter converts."""
    import torch
    from transformers import AutoModelForSequenceClassification

    extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
    try:
        return AutoModelForSequenceClassification.from_pretrained(
            model_dir, dtype=torch.float32, **extra).eval()
    except (OSError, ValueError, KeyError) as exc:
        raise EdgekdError(f"cannot load the model in {model_dir}: {first_line(exc)}") from None


def input_names(model, model_dir: Path) -> tuple[str, ...]:
    """The inputs an exported graph takes: what the model's forward accepts, what its tokenizer
    produces (so the artifact takes what inputs.npz holds), and token types only for a model
    with a token-type embedding."""
    import inspect

    accepted = inspect.signature(model.forward).parameters
    produced = _tokenizer_input_names(model_dir)
    names = tuple(n for n in INPUT_NAMES if n in accepted and (produced is None or n in produced)
                  and (n != "token_type_ids" or getattr(model.config, "type_vocab_size", 0)))
    if "input_ids" not in names:
        raise EdgekdError(f"{type(model).__name__} does not take input_ids")
    return names


def _tokenizer_input_names(model_dir: Path) -> set[str] | None:
    if not any((Path(model_dir) / f).is_file() for f in ("tokenizer_config.json", "tokenizer.json")):
        return None
    try:
        from transformers import AutoTokenizer

        return set(AutoTokenizer.from_pretrained(model_dir).model_input_names)
    except (OSError, ValueError, KeyError, TypeError):  # a broken tokenizer: fall back to forward()
        return None


def conversion_module(model, names: tuple[str, ...]):
    """The model as a module from named int64 inputs to the logits tensor alone (a tuple or
    ModelOutput is not a clean single-output graph for the converters)."""
    import torch

    class LogitsOnly(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask=None, token_type_ids=None):
            given = {"input_ids": input_ids, "attention_mask": attention_mask,
                     "token_type_ids": token_type_ids}
            return self.model(**{k: given[k] for k in names}, return_dict=False)[0]

    return LogitsOnly().eval()


def reference_outputs(model, inputs: dict[str, np.ndarray], batch_size: int = 32) -> np.ndarray:
    """PyTorch logits for `inputs`, batched, without gradients."""
    import inspect

    import torch

    accepted = inspect.signature(model.forward).parameters
    names = [n for n in INPUT_NAMES if n in inputs and n in accepted]
    chunks = []
    with torch.no_grad():
        for i in range(0, len(inputs["input_ids"]), batch_size):
            feeds = {k: torch.from_numpy(np.asarray(inputs[k][i:i + batch_size], dtype=np.int64))
                     for k in names}
            chunks.append(model(**feeds).logits.float().numpy())
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
    """One line saying why a `parity` result fails its threshold, or None when it passes."""
    if result["top1_agreement"] < result["min_agreement"]:
        return (f"top-1 agreement with PyTorch {result['top1_agreement']:.1%} is below "
                f"{result['min_agreement']:.0%} (max abs logit diff {result['max_abs_diff']:.3g})")
    if not np.isfinite(result["max_abs_diff"]):
        return "artifact produced non-finite logits"
    return None


def quality(outputs: np.ndarray, labels) -> dict:
    """The task's quality metrics of `outputs` against `labels` (accuracy; None without labels)."""
    if labels is None or len(labels) == 0:
        return {"accuracy": None}
    return {"accuracy": float((outputs.argmax(-1) == np.asarray(labels)).mean())}


def label_ids(config, names: list[str]) -> list[int]:
    """Map the data's label index to the model's: by name when the model's label2id names them
    all (a fine-tuned model may order labels differently), else by position."""
    label2id = {str(k): int(v) for k, v in (getattr(config, "label2id", None) or {}).items()}
    if all(name in label2id for name in names):
        return [label2id[name] for name in names]
    if config.num_labels != len(names):
        raise EdgekdError(f"the model has {config.num_labels} labels but the data has "
                          f"{len(names)} ({', '.join(names[:6])})")
    return list(range(len(names)))


def operations(config: dict, seq_len: int, batch_size: int = 1) -> float | None:
    """Floating-point operations of one inference, in GFLOP (2 per multiply-add), from the
    model's config.json: per encoder layer the Q/K/V and output projections (4·L·h·a with a the
    attention width heads × head size), the attention scores and their weighted sum (2·L²·a)
    and the feed-forward block (2·L·h·f), plus pooler and classifier. Embedding lookups, norms
    and softmax are left out (memory-bound, no multiply-adds to speak of). None for a config
    this formula does not describe."""
    hidden = config.get("hidden_size") or config.get("dim")
    layers = config.get("num_hidden_layers") or config.get("n_layers")
    heads = config.get("num_attention_heads") or config.get("n_heads")
    ffn = config.get("intermediate_size") or config.get("hidden_dim")
    if not (hidden and layers and heads and ffn):
        return None
    head_size = hidden // heads
    pruned = config.get("pruned_heads") or {}
    length = seq_len
    macs = 0
    for layer in range(layers):
        attention = (heads - len(pruned.get(str(layer), pruned.get(layer, [])))) * head_size
        macs += length * (3 * hidden * attention + attention * hidden + 2 * hidden * ffn)
        macs += 2 * length * length * attention
    labels = len(config.get("id2label") or {}) or 2
    macs += hidden * hidden + hidden * labels
    return 2 * macs * batch_size / 1e9


def generated_inputs(model_dir: Path, seq_len: int, n: int = GENERATED_EXAMPLES,
                     seed: int = 0) -> dict[str, np.ndarray]:
    """Token inputs without task data: random ids from the tokenizer's vocabulary (special tokens
    kept out of the body), [CLS] ... [SEP] and padding of varied lengths, so masking is exercised."""
    from transformers import AutoConfig, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(model_dir)
    except (OSError, ValueError) as exc:
        raise EdgekdError(f"cannot load the model in {model_dir}: {first_line(exc)}") from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        vocab = min(len(tokenizer), config.vocab_size)
        special = set(tokenizer.all_special_ids)
        cls = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
        sep = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
        pad = tokenizer.pad_token_id or 0
        names = tokenizer.model_input_names
    except (OSError, ValueError, TypeError, KeyError):  # a model folder saved without its tokenizer
        vocab, special, cls, sep, pad = config.vocab_size, set(), None, None, 0
        names = list(INPUT_NAMES)
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
