"""OpenVINO adapter (CPU plugin).

fp32 means fp32: without `INFERENCE_PRECISION_HINT: f32` the CPU plugin silently computes in
bf16 on CPUs with AVX512-BF16 or AMX, which would make an fp32 IR look lossy in verification and
fast in the benchmark. `bf16` is its own precision, asked for explicitly.

`Generator` runs a causal LM exported with a KV cache (optimum-intel's stateful IR: inputs
input_ids, attention_mask, position_ids, beam_idx; the cache is the request's internal state).
For fp32 the KV cache is pinned to f32 as well: the CPU plugin otherwise stores it in f16 (the
IR's own runtime option, written by optimum-intel) or u8, which would flip greedy tokens of an
fp32 artifact.
"""

from __future__ import annotations

import os

import numpy as np

try:
    from .runtimes import StepGenerator, ArtifactError, first_line, import_runtime, named_feed
except ImportError:  # copied alone onto a device
    from runtimes import StepGenerator, ArtifactError, first_line, import_runtime, named_feed

FORMAT = "openvino"
SUFFIXES = (".xml",)
_DTYPES = {"i64": np.int64, "i32": np.int32, "f32": np.float32, "f16": np.float16}
# The precision the CPU plugin computes in, per exported precision: the weights' storage type
# (fp16, int8) does not change it.
INFERENCE_PRECISION = {"bf16": "bf16"}
# The inputs of a stateful causal-LM IR (optimum-intel's text-generation-with-past export).
STATEFUL_LM_INPUTS = ("input_ids", "attention_mask", "position_ids", "beam_idx")


def stateful_lm_feed(ids: np.ndarray, past: int = 0) -> dict:
    """The stateful causal-LM IR's inputs (`STATEFUL_LM_INPUTS`) for the token ids `ids` (int64
    [n]) following `past` tokens already in the cache, batch 1 (beam row 0 keeps its cache)."""
    total = past + len(ids)
    return {"input_ids": ids[None, :], "attention_mask": np.ones((1, total), dtype=np.int64),
            "position_ids": np.arange(past, total, dtype=np.int64)[None, :],
            "beam_idx": np.zeros(1, dtype=np.int32)}


def settings(precision: str, threads: int) -> dict:
    """LATENCY hint (one stream, one request at a time: what a single synchronous call measures)
    and the inference precision pinned to f32 unless the artifact's precision is bf16; for fp32
    the KV cache precision too (it only applies to a model with a KV cache; other precisions
    keep the IR's runtime option or the plugin's default)."""
    options = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
               "INFERENCE_PRECISION_HINT": INFERENCE_PRECISION.get(precision, "f32")}
    if precision == "fp32":
        options["KV_CACHE_PRECISION"] = "f32"
    return options


def _compile(ov, path: str, options: dict, transform=None):
    """The compiled IR at `path` (after `transform(model)` when given), or ArtifactError (its
    .bin missing, or unreadable)."""
    weights = os.path.splitext(path)[0] + ".bin"
    if not os.path.isfile(weights):
        raise ArtifactError(f"{os.path.basename(weights)} is missing beside {path} "
                            "(an OpenVINO IR is the .xml and its .bin)")
    try:
        core = ov.Core()
        model = transform(core.read_model(path)) if transform else path
        return core.compile_model(model, "CPU", dict(options))
    except (RuntimeError, ValueError, TypeError) as exc:
        raise ArtifactError(f"openvino cannot load {path}: {first_line(exc)}") from None


def last_position_logits(model):
    """`model` computing the logits of the last position only: its hidden states are sliced to
    that position before the LM head (the MatMul feeding the `logits` output), as openvino-genai
    does for generation. Every prompt position still enters the KV cache; what is saved is the
    LM head on the others (vocabulary x hidden multiply-adds each), which a prefill for
    generation never reads. A graph of another shape is returned unchanged."""
    from openvino import opset8

    results = model.get_results()
    logits = next((r for r in results if "logits" in r.output(0).get_names()), results[0])
    head = logits.input_value(0).get_node()
    if head.get_type_name() != "MatMul":
        return model
    hidden = head.input_value(0)
    last = opset8.slice(hidden, np.array([-1]), np.array([np.iinfo(np.int64).max]),
                        np.array([1]), np.array([1]))
    head.input(0).replace_source_output(last.output(0))
    model.validate_nodes_and_infer_types()
    return model


class Adapter:
    runtime = "openvino"
    fixed_batch = None

    def __init__(self, path: str, options: dict):
        ov = import_runtime("openvino", "openvino")
        self.version = ov.get_version()
        self.errors = (RuntimeError, ValueError, TypeError)
        self.compiled = _compile(ov, path, options)
        self.request = self.compiled.create_infer_request()
        self.inputs = {p.get_any_name(): _DTYPES.get(p.get_element_type().get_type_name(), np.int64)
                       for p in self.compiled.inputs}
        self._output = self.compiled.outputs[0]

    def prepare(self, batch: dict) -> dict:
        return named_feed(batch, self.inputs)

    def __call__(self, feed: dict):
        # share_inputs/outputs: no copy of the feed into the request or of the logits out of it
        # (what benchmark_app's pre-filled tensors cost); output() copies, outside the timing
        return self.request.infer(feed, share_inputs=True, share_outputs=True)

    def output(self, raw) -> np.ndarray:
        return np.array(raw[self._output], dtype=np.float32)    # a copy: the next call reuses it


class Generator(StepGenerator):
    """Greedy generation from a stateful causal-LM IR, batch 1: the KV cache lives in the
    infer request's state between calls (see runtimes.py for the protocol). With
    `last_logits_only` the prefill returns the last position's logits [1, V] and skips the LM
    head on the others (`last_position_logits`): for timing generation, not for scoring text."""
    runtime = "openvino"
    max_context = None      # the IR's cache grows with the sequence: only memory limits it
    can_skip_prompt_logits = True

    def __init__(self, path: str, options: dict, *, last_logits_only: bool = False):
        ov = import_runtime("openvino", "openvino")
        self.version = ov.get_version()
        self.errors = (RuntimeError, ValueError, TypeError)
        self.compiled = _compile(ov, path, options,
                                 last_position_logits if last_logits_only else None)
        names = {name for port in self.compiled.inputs for name in port.get_names()}
        missing = [n for n in STATEFUL_LM_INPUTS if n not in names]
        if missing:
            raise ArtifactError(f"{path} is not a causal LM exported with a KV cache (it lacks the "
                                f"inputs {', '.join(missing)}); export it for causal-lm")
        vocab = self.compiled.outputs[0].get_partial_shape()[-1]
        if not vocab.is_static:
            raise ArtifactError(f"{path}: the logits output has no fixed vocabulary size")
        self.vocab_size = vocab.get_length()
        self.request = self.compiled.create_infer_request()
        self._past = 0

    def reset(self) -> None:
        """Forget the sequence: empty the KV cache."""
        self.request.reset_state()
        self._past = 0

    def _step(self, ids: np.ndarray) -> np.ndarray:
        feed = stateful_lm_feed(ids, self._past)
        # shared inputs and outputs: no copy of the feed into the request, nor of the logits
        # into a new array before the one copy below (the request reuses its output buffer)
        result = self.request.infer(feed, share_inputs=True, share_outputs=True)
        self._past += len(ids)
        return np.array(result[self.compiled.outputs[0]][0], dtype=np.float32)
