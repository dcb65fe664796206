"""ONNX Runtime adapter (CPU execution provider): `Adapter` for one-shot models (logits of a
batch), `Generator` for a causal LM exported with a KV cache (greedy decoding, batch 1)."""

from __future__ import annotations

import numpy as np

try:
    from .runtimes import StepGenerator, ArtifactError, first_line, import_runtime, named_feed
except ImportError:  # copied alone onto a device
    from runtimes import StepGenerator, ArtifactError, first_line, import_runtime, named_feed

FORMAT = "onnx"
SUFFIXES = (".onnx",)
_DTYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(float)": np.float32,
           "tensor(float16)": np.float16}
PAST_PREFIX = "past_key_values."    # optimum's KV cache names: past_key_values.<layer>.key|value
PRESENT_PREFIX = "present."         # ... and the updated cache it returns: present.<layer>.key


def settings(precision: str, threads: int) -> dict:
    """One graph at a time, parallel inside operators only: what a single synchronous call
    measures. Graph optimisation is ORT's default (all levels): the same for verify and bench."""
    return {"intra_op_num_threads": threads, "inter_op_num_threads": 1,
            "execution_mode": "sequential", "graph_optimization_level": "all",
            "providers": ["CPUExecutionProvider"]}


def open_session(path: str, options: dict):
    """(onnxruntime module, InferenceSession) for `path` with `options` from `settings`;
    ArtifactError when the file does not load."""
    ort = import_runtime("onnxruntime", "onnxruntime")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = options["intra_op_num_threads"]
    opts.inter_op_num_threads = options["inter_op_num_threads"]
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        session = ort.InferenceSession(path, sess_options=opts, providers=options["providers"])
    except (RuntimeError, ValueError, *_ort_errors()) as exc:
        raise ArtifactError(f"onnxruntime cannot load {path}: {first_line(exc)}") from None
    return ort, session


class Adapter:
    runtime = "onnxruntime"
    fixed_batch = None

    def __init__(self, path: str, options: dict):
        ort, self.session = open_session(path, options)
        self.version = ort.__version__
        self.errors = (RuntimeError, ValueError, *_ort_errors())
        self.inputs = {i.name: _DTYPES.get(i.type, np.int64) for i in self.session.get_inputs()}
        self._output = self.session.get_outputs()[0].name

    def prepare(self, batch: dict) -> dict:
        return named_feed(batch, self.inputs)

    def __call__(self, feed: dict):
        return self.session.run([self._output], feed)

    def output(self, raw) -> np.ndarray:
        return np.asarray(raw[0], dtype=np.float32)


class Generator(StepGenerator):
    """Greedy decoding of a decoder exported by optimum with `text-generation-with-past`: one
    graph that takes `past_key_values.*` ([1, kv_heads, past, head_dim]) and returns
    `present.*` (the cache with the new positions appended). The prompt runs against an empty
    cache (past length 0); each decode step feeds one token and the cache the last call gave."""

    runtime = "onnxruntime"
    max_context = None      # dynamic axes: only memory (and the model's positions) limit it

    def __init__(self, path: str, options: dict):
        ort, self.session = open_session(path, options)
        self.version = ort.__version__
        self.errors = (RuntimeError, ValueError, *_ort_errors())
        inputs = {i.name: i for i in self.session.get_inputs()}
        outputs = [o.name for o in self.session.get_outputs()]
        self._cache = [(name, PRESENT_PREFIX + name[len(PAST_PREFIX):])
                       for name in inputs if name.startswith(PAST_PREFIX)]
        if "input_ids" not in inputs or not self._cache:
            raise ArtifactError(f"{path} is not a causal LM exported with a KV cache "
                                f"(inputs: {', '.join(inputs)})")
        missing = [present for _, present in self._cache if present not in outputs]
        if missing:
            raise ArtifactError(f"{path} takes a KV cache but does not return {missing[0]}")
        first = inputs[self._cache[0][0]]
        self.kv_heads, self.head_dim = first.shape[1], first.shape[3]
        if not (isinstance(self.kv_heads, int) and isinstance(self.head_dim, int)):
            raise ArtifactError(f"{path}: {first.name} has no fixed head count / head size "
                                f"({first.shape})")
        self.num_layers = len(self._cache) // 2
        self.kv_dtype = _DTYPES.get(first.type, np.float32)
        self._empty = np.zeros((1, self.kv_heads, 0, self.head_dim), dtype=self.kv_dtype)
        self._takes_mask = "attention_mask" in inputs
        self._takes_positions = "position_ids" in inputs
        self._logits = "logits" if "logits" in outputs else outputs[0]
        self._fetch = [self._logits] + [present for _, present in self._cache]
        self._past: list[np.ndarray] = []
        self._length = 0
        vocab = self.session.get_outputs()[outputs.index(self._logits)].shape[-1]
        # A symbolic vocabulary axis: one probe call tells it.
        self.vocab_size = vocab if isinstance(vocab, int) else self.prefill(np.zeros(1)).shape[-1]
        self.reset()

    def reset(self) -> None:
        """Forget the sequence: the next call starts from an empty KV cache."""
        self._past = [self._empty] * len(self._cache)
        self._length = 0

    def _step(self, ids: np.ndarray) -> np.ndarray:
        n = len(ids)
        feed = {"input_ids": ids[None, :]}
        if self._takes_mask:
            feed["attention_mask"] = np.ones((1, self._length + n), dtype=np.int64)
        if self._takes_positions:
            feed["position_ids"] = np.arange(self._length, self._length + n, dtype=np.int64)[None]
        feed.update({past: value for (past, _), value in zip(self._cache, self._past)})
        try:
            logits, *present = self.session.run(self._fetch, feed)
        except self.errors as exc:
            raise ArtifactError(f"onnxruntime failed running the artifact: {first_line(exc)}") \
                from None
        self._past = present
        self._length += n
        return np.asarray(logits[0], dtype=np.float32)


def _ort_errors() -> tuple:
    try:
        from onnxruntime.capi import onnxruntime_pybind11_state as state
    except ImportError:
        return ()
    return tuple(getattr(state, n) for n in ("Fail", "InvalidArgument", "InvalidGraph",
                                              "InvalidProtobuf", "NoSuchFile", "NotImplemented",
                                              "RuntimeException") if hasattr(state, n))
