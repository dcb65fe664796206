"""What runs an artifact: one runtime adapter per format, found by file name (`runtime_<format>.py`).

Standalone (stdlib + numpy; an adapter imports only its own runtime): copied next to the
on-device runner. The same adapter, opened with the same settings, serves both sides:
verification on the host (`run_outputs` over the eval inputs, in exporters/verify.py) and the
runner's timed loop on the target. So what is verified is what is measured.

An adapter module defines
    FORMAT                      its format name (== the exporter module's name)
    SUFFIXES                    artifact file suffixes it opens (a folder for `pytorch`)
    settings(precision, threads) -> dict   the runtime options, in this one place
    Adapter(path, settings)     .runtime, .version, .inputs {name: dtype}, .fixed_batch,
                                .prepare(batch) -> feed, __call__(feed) -> raw, .output(raw) -> logits
    Generator(path, settings)   (causal LMs only) greedy generation with a KV cache: see below
"""

from __future__ import annotations

import glob
import importlib
import os

import numpy as np

# "edgekd.benchmarks" inside the package; empty when copied alone onto a device, where the
# adapter modules are plain siblings.
_PACKAGE = __package__ or None

PREFIX = "runtime_"
# The token inputs of a transformer, in the order converters number them when they drop the
# names (TFLite `args_0`, `args_1`, ...). The device side cannot import edgekd.tasks.
TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class RuntimeMissing(RuntimeError):
    """The runtime an artifact needs is not installed here; the message names the pip package."""


class ArtifactError(RuntimeError):
    """The artifact cannot be loaded or run as asked (corrupt, incomplete, wrong batch size)."""


def import_runtime(module: str, package: str):
    """Import a runtime module, or RuntimeMissing naming what to pip install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise RuntimeMissing(f"runtime '{module}' is not installed in this Python "
                             f"({exc}); install it with: pip install {package}") from None


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first non-empty line of an exception's message (runtimes raise multi-line traces)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    useful = [line for line in lines if " failed at src/" not in line
              and not line.startswith(("Check '", "Exception from src/"))]
    return ((useful or lines or [type(exc).__name__])[0])[:limit]


def available() -> list[str]:
    """Formats with an adapter module beside this file (no import needed)."""
    here = os.path.dirname(os.path.abspath(__file__))
    return sorted(os.path.basename(p)[len(PREFIX):-3]
                  for p in glob.glob(os.path.join(here, PREFIX + "*.py")))


def module_for(fmt: str):
    """The adapter module of format `fmt`."""
    if fmt not in available():
        raise ArtifactError(f"no runtime adapter for format '{fmt}' "
                            f"(known: {', '.join(available())})")
    name = PREFIX + fmt
    return importlib.import_module(f"{_PACKAGE}.{name}" if _PACKAGE else name)


def format_of(path: str) -> str:
    """The format of an artifact path: by suffix, or `pytorch` for a model folder."""
    if os.path.isdir(path):
        return "pytorch"
    suffix = os.path.splitext(path)[1].lower()
    for fmt in available():
        if suffix in module_for(fmt).SUFFIXES:
            return fmt
    known = sorted(s for f in available() for s in module_for(f).SUFFIXES)
    raise ArtifactError(f"unknown artifact type '{suffix}' (expected {', '.join(known)} "
                        "or a model folder)")


def open_adapter(path: str, *, precision: str | None = None, threads: int = 1,
                 fmt: str | None = None):
    """Open `path` with its format's adapter and the canonical settings for `precision` and
    `threads`; returns (adapter, settings). Verification and the runner both call this."""
    module = module_for(fmt or format_of(str(path)))
    settings = module.settings(precision or "fp32", int(threads))
    return module.Adapter(str(path), settings), settings


def run_outputs(adapter, inputs: dict, batch_size: int | None = None) -> np.ndarray:
    """The adapter's float32 outputs (logits) for every row of `inputs`, in batches of
    `batch_size` (the artifact's fixed batch when it has one; the last chunk is padded by
    repeating rows and trimmed). A runtime failure on a call is an ArtifactError."""
    step = adapter.fixed_batch or batch_size or 32
    names = [n for n in adapter.inputs if n in inputs] or list(inputs)
    rows_total = len(inputs[names[0]])
    chunks = []
    for start in range(0, rows_total, step):
        batch = {k: np.asarray(v[start:start + step]) for k, v in inputs.items()}
        rows = len(batch[names[0]])
        if adapter.fixed_batch and rows < adapter.fixed_batch:
            pad = np.arange(adapter.fixed_batch) % rows
            batch = {k: v[pad] for k, v in batch.items()}
        try:
            out = adapter.output(adapter(adapter.prepare(batch)))
        except (ArtifactError, RuntimeMissing):
            raise
        except adapter.errors as exc:
            raise ArtifactError(f"{adapter.runtime} failed running the artifact: "
                                f"{first_line(exc)}") from None
        chunks.append(np.asarray(out, dtype=np.float32)[:rows])
    return np.concatenate(chunks)


def named_feed(batch: dict, inputs: dict) -> dict:
    """The feed for a runtime that takes inputs by name: every input the model declares
    ({name: dtype}), cast and contiguous; an input the examples lack is an ArtifactError."""
    batch = fill_defaults(batch, inputs)
    missing = [k for k in inputs if k not in batch]
    if missing:
        raise ArtifactError(f"the model needs inputs {missing} that the examples lack")
    return {k: np.ascontiguousarray(batch[k], dtype=t) for k, t in inputs.items()}


def fill_defaults(batch: dict, names, rows_like: str = "input_ids") -> dict:
    """Add inputs a model takes but the examples lack: BERT's token_type_ids default to zeros
    (what a tokenizer gives for one segment)."""
    out = dict(batch)
    for name in names:
        if name not in out and name == "token_type_ids" and rows_like in out:
            out[name] = np.zeros_like(np.asarray(out[rows_like]))
    return out


# --- Generation (causal LMs): batch 1, greedy, the KV cache inside the runtime's Generator ---
#
# A runtime adapter module that can generate defines `Generator(path, settings)` with
#     .runtime, .version, .errors, .max_context (None = unlimited), .vocab_size
#     .reset()               forget the sequence
#     .prefill(ids[n])       start a sequence: float32 logits [n, V] (or [1, V]: last position)
#     .decode(token)         one more token: float32 logits [V] of the next position
# The PyTorch reference runs through the same loop (`greedy`), so an fp32 artifact must
# reproduce its tokens exactly.


class StepGenerator:
    """The prefill/decode half of a Generator that runs both through one `_step(ids) -> logits
    [n, V]` over its own KV cache (ONNX, OpenVINO); a subclass defines `reset` and `_step`."""

    def prefill(self, ids: np.ndarray) -> np.ndarray:
        """Start a new sequence with the prompt `ids` (int64 [n]); float32 logits [n, V]."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if ids.size == 0:
            raise ArtifactError("prefill needs at least one prompt token")
        self.reset()
        return self._step(ids)

    def decode(self, token: int) -> np.ndarray:
        """Append `token` at the next position; float32 logits [V] for the token after it."""
        return self._step(np.array([int(token)], dtype=np.int64))[-1]


class Greedy:
    """One greedy generation: the new tokens, time to first token, and each later step's time."""

    __slots__ = ("tokens", "ttft_ms", "step_ms")

    def __init__(self, tokens, ttft_ms: float, step_ms: list):
        self.tokens, self.ttft_ms, self.step_ms = tokens, ttft_ms, step_ms


def open_generator(path: str, *, precision: str | None = None, threads: int = 1,
                   fmt: str | None = None, last_logits_only: bool = False):
    """Open `path` for generation with its format's Generator and canonical settings; returns
    (generator, settings). Verification and the runner's generate scenario both call this.
    `last_logits_only`: the prefill need only return the last position's logits (generation
    reads nothing else; scoring text needs them all), which a Generator that declares
    `can_skip_prompt_logits` uses to skip the LM head on the other prompt positions."""
    fmt = fmt or format_of(str(path))
    module = module_for(fmt)
    if not hasattr(module, "Generator"):
        raise ArtifactError(f"the {fmt} runtime adapter cannot generate text")
    settings = module.settings(precision or "fp32", int(threads))
    if last_logits_only and getattr(module.Generator, "can_skip_prompt_logits", False):
        return module.Generator(str(path), settings, last_logits_only=True), settings
    return module.Generator(str(path), settings), settings


def check_context(generator, prompt_len: int, new_tokens: int) -> None:
    """ArtifactError when a prompt plus its new tokens do not fit the artifact's context."""
    limit = getattr(generator, "max_context", None)
    if limit is not None and prompt_len + new_tokens > limit:
        raise ArtifactError(f"a prompt of {prompt_len} tokens + {new_tokens} new tokens does not "
                            f"fit the artifact's context of {limit} tokens (export it with a "
                            "longer export.seq_len, or use shorter prompts)")


def _call(generator, method, *args):
    try:
        return method(*args)
    except (ArtifactError, RuntimeMissing):
        raise
    except generator.errors as exc:
        raise ArtifactError(f"{generator.runtime} failed generating: {first_line(exc)}") from None


def greedy(generator, ids, new_tokens: int) -> Greedy:
    """Greedy generation of exactly `new_tokens` tokens after the prompt `ids` (an end-of-text
    token does not stop it, so runs compare position by position). Time to first token is the
    prefill plus its argmax; each later step is one decode call plus its argmax."""
    import time

    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    if len(ids) == 0:
        raise ArtifactError("an empty prompt cannot be generated from")
    check_context(generator, len(ids), new_tokens)
    clock = time.perf_counter_ns
    tokens = np.empty(new_tokens, dtype=np.int64)
    t0 = clock()
    logits = _call(generator, generator.prefill, ids)
    tokens[0] = int(np.argmax(logits[-1]))
    ttft = (clock() - t0) / 1e6
    steps = []
    for i in range(1, new_tokens):
        t0 = clock()
        logits = _call(generator, generator.decode, int(tokens[i - 1]))
        tokens[i] = int(np.argmax(logits))
        steps.append((clock() - t0) / 1e6)
    return Greedy(tokens, ttft, steps)


def prompt_rows(inputs: dict) -> list:
    """The real tokens of each row of left- (or right-) padded `input_ids` + `attention_mask`."""
    ids = np.asarray(inputs["input_ids"])
    mask = np.asarray(inputs.get("attention_mask", np.ones_like(ids)))
    return [row[m.astype(bool)] for row, m in zip(ids, mask)]


def greedy_rows(generator, inputs: dict, new_tokens: int) -> np.ndarray:
    """Greedy tokens int64 [n, new_tokens] for every prompt row of `inputs`, one at a time."""
    rows = [greedy(generator, ids, new_tokens).tokens for ids in prompt_rows(inputs)]
    return np.stack(rows) if rows else np.zeros((0, new_tokens), dtype=np.int64)


def sequence_logits(generator, ids) -> np.ndarray:
    """float32 logits [n, V] at every position of `ids` (the prediction of each next token):
    the prefill's own rows when the runtime gives them all, else teacher-forced decode steps."""
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    check_context(generator, len(ids), 0)
    logits = np.asarray(_call(generator, generator.prefill, ids), dtype=np.float32)
    if len(logits) == len(ids):
        return logits
    rows = [np.asarray(_call(generator, generator.prefill, ids[:1]), dtype=np.float32)[-1]]
    rows += [np.asarray(_call(generator, generator.decode, int(t)), dtype=np.float32)
             for t in ids[1:]]
    return np.stack(rows)
