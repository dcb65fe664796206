"""TFLite (LiteRT) adapter: the first interpreter installed — `ai_edge_litert`, else
`tflite_runtime` (older boards), else `tensorflow.lite`.

Files from litert-torch have static shapes (batch 1 × seq_len baked into their reshapes), so
they cannot be resized: an artifact with a fixed batch is fed exactly that many rows, and any
other batch size is refused before anything is measured. Inputs are named by the file's
signature (the names the exporter gave), else by tensor name; feeds are cast to the dtype the
file declares (litert-torch stores int64 ids as int32). An integer-quantized output is
dequantized, so every precision returns float logits.

`Generator` runs a causal LM exported with a KV cache (exporters/tflite_lm.py): `prefill_<n>`
and `decode` signatures that take the whole cache as inputs and return the updated cache, which
is kept here between calls.
"""

from __future__ import annotations

import importlib
import re

import numpy as np

try:
    from .runtimes import ArtifactError, RuntimeMissing, fill_defaults, first_line
except ImportError:  # copied alone onto a device
    from runtimes import ArtifactError, RuntimeMissing, fill_defaults, first_line

FORMAT = "tflite"
SUFFIXES = (".tflite",)
# (runtime name, module to import, attribute path to the Interpreter class), in order of choice.
INTERPRETERS = (("ai_edge_litert", "ai_edge_litert.interpreter", "Interpreter"),
                ("tflite_runtime", "tflite_runtime.interpreter", "Interpreter"),
                ("tensorflow", "tensorflow", "lite.Interpreter"))


def interpreter_class():
    """(Interpreter class, runtime name, version) of the first TFLite runtime installed."""
    tried = []
    for runtime, module, attribute in INTERPRETERS:
        try:
            found = importlib.import_module(module)
            for part in attribute.split("."):
                found = getattr(found, part)
        except (ImportError, AttributeError) as exc:
            tried.append(f"{runtime}: {exc}")
            continue
        version = getattr(importlib.import_module(runtime), "__version__", None)
        if version is None:
            try:
                from importlib.metadata import version as dist_version
                version = dist_version(runtime.replace("_", "-"))
            except Exception:  # metadata is optional on a device; the name still says what ran
                version = "unknown"
        return found, runtime, version
    raise RuntimeMissing("no TFLite interpreter is installed in this Python; install one with: "
                         "pip install ai-edge-litert (or tflite-runtime on older boards); tried "
                         + "; ".join(tried))


def settings(precision: str, threads: int) -> dict:
    """The interpreter's thread count; the default XNNPACK delegate (what LiteRT applies to
    float and dynamic-range models on CPU), no other delegate."""
    return {"num_threads": threads, "delegates": []}


class Adapter:
    def __init__(self, path: str, options: dict):
        interpreter_cls, self.runtime, self.version = interpreter_class()
        self.errors = (RuntimeError, ValueError)
        try:
            self.interp = interpreter_cls(model_path=path, num_threads=options["num_threads"])
            self.interp.allocate_tensors()
        except self.errors as exc:
            raise ArtifactError(f"{self.runtime} cannot open {path}: {first_line(exc)}") from None
        self._details = _input_details(self.interp)
        self.inputs = {name: d["dtype"] for name, d in self._details.items()}
        first = next(iter(self._details.values()))
        signature = first.get("shape_signature")
        dynamic = signature is not None and len(signature) and int(signature[0]) == -1
        self.fixed_batch = None if dynamic else int(first["shape"][0])
        self._seq_len = int(first["shape"][-1])
        self._output = self.interp.get_output_details()[0]
        self._scale, self._zero_point = _dequantization(self._output)

    def prepare(self, batch: dict) -> dict:
        batch = fill_defaults(batch, self.inputs)
        feed = {}
        for name, detail in self._details.items():
            if name not in batch:
                raise ArtifactError(f"the model needs input '{name}' that the examples lack")
            array = np.ascontiguousarray(batch[name], dtype=detail["dtype"])
            if self.fixed_batch and array.shape[0] != self.fixed_batch:
                raise ArtifactError(
                    f"this .tflite file was exported for batch {self.fixed_batch} (static shapes) "
                    f"and cannot run batch {array.shape[0]}: benchmark it at batch size "
                    f"{self.fixed_batch}, or export it for the batch you need")
            if array.shape[1:] != tuple(detail["shape"][1:]):
                raise ArtifactError(f"input {name} has shape {array.shape}; the file was exported "
                                    f"for {tuple(int(x) for x in detail['shape'])}")
            feed[detail["index"]] = array
        return feed

    def __call__(self, feed: dict):
        for index, array in feed.items():
            self.interp.set_tensor(index, array)
        self.interp.invoke()

    def output(self, raw=None) -> np.ndarray:
        out = self.interp.get_tensor(self._output["index"])
        if self._scale is not None:  # int8-static: the logits come out quantized
            out = (out.astype(np.float32) - self._zero_point) * self._scale
        return np.asarray(out, dtype=np.float32)


def _input_details(interp) -> dict:
    """Model input name -> tensor details, named by the first signature (exact names), else by
    the tensor names of a file without signatures."""
    details = {d["index"]: d for d in interp.get_input_details()}
    signatures = interp.get_signature_list() if hasattr(interp, "get_signature_list") else {}
    if signatures:
        runner = interp.get_signature_runner(next(iter(signatures)))
        named = {name: details[d["index"]] for name, d in runner.get_input_details().items()
                 if d["index"] in details}
        if len(named) == len(details):
            return named
    return {d["name"]: d for d in details.values()}


def _dequantization(output: dict):
    """(scale, zero_point) when the output tensor is integer-quantized, else (None, 0)."""
    if not np.issubdtype(output["dtype"], np.integer):
        return None, 0.0
    scale, zero_point = output.get("quantization", (0.0, 0))
    if not scale:
        raise ArtifactError("the model's output is an integer tensor without quantization "
                            "parameters")
    return float(scale), float(zero_point)


class Generator:
    """Greedy generation from a `.tflite` causal LM with a KV cache (the `Generator` protocol of
    runtimes.py). The cache has a fixed length (`max_context`, the context it was exported
    for); a prompt is padded to the smallest prefill signature that holds it (the padding's
    cache entries lie after the prompt, are masked by the causal mask, and are overwritten by
    the tokens decoded next). A file whose prefill returns no logits (exported without
    `output_logits_on_prefill`) is served by prefilling all but the last prompt token and
    decoding that one: prefill then returns [1, V] logits, the last position's only."""

    errors = (RuntimeError, ValueError)

    def __init__(self, path: str, options: dict):
        interpreter_cls, self.runtime, self.version = interpreter_class()
        try:
            self.interp = interpreter_cls(model_path=path, num_threads=options["num_threads"])
            signatures = self.interp.get_signature_list()
        except self.errors as exc:
            raise ArtifactError(f"{self.runtime} cannot open {path}: {first_line(exc)}") from None
        prefill = {int(m.group(1)): name for name in signatures
                   if (m := re.fullmatch(r"prefill_(\d+)", name))}
        if "decode" not in signatures or not prefill:
            raise ArtifactError(f"{path} is not a causal LM with a KV cache (its signatures "
                                f"are {sorted(signatures) or 'none'}; expected prefill_<n> and "
                                "decode): export it with the causal-lm task")
        self._decode = self.interp.get_signature_runner("decode")
        self._prefill = {n: self.interp.get_signature_runner(name)
                         for n, name in sorted(prefill.items())}
        inputs = self._decode.get_input_details()
        self._cache_shapes = {name: (tuple(int(x) for x in d["shape"]), d["dtype"])
                              for name, d in inputs.items() if name.startswith("kv_cache_")}
        self._id_dtype = inputs["tokens"]["dtype"]
        self._pos_dtype = inputs["input_pos"]["dtype"]
        # layout [batch, context, kv_heads, head_dim]: the context is the second axis
        self.max_context = self._cache_shapes["kv_cache_k_0"][0][1]
        self.vocab_size = int(self._decode.get_output_details()["logits"]["shape"][-1])
        self._prefill_logits = "logits" in next(iter(self._prefill.values())).get_output_details()
        self.reset()

    def reset(self) -> None:
        """Forget the sequence: an empty (zero) KV cache at position 0."""
        self._cache = {name: np.zeros(shape, dtype) for name, (shape, dtype)
                       in self._cache_shapes.items()}
        self._past = 0

    def prefill(self, ids: np.ndarray) -> np.ndarray:
        """Start a sequence with prompt `ids` (int [n]); logits [n, V] (or [1, V], see above)."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if ids.size == 0:
            raise ArtifactError("prefill needs at least one prompt token")
        if ids.size > self.max_context:
            raise ArtifactError(f"a prompt of {ids.size} tokens does not fit this artifact's KV "
                                f"cache of {self.max_context} tokens: export it with a larger "
                                "context (seq_len)")
        self.reset()
        if self._prefill_logits:
            return self._run_prefill(ids)[0, :ids.size]
        if ids.size > 1:
            self._run_prefill(ids[:-1])
        return self.decode(int(ids[-1]))[None, :]

    def decode(self, token: int) -> np.ndarray:
        """Append `token` at the next position; logits [V] for the token after it."""
        if self._past >= self.max_context:
            raise ArtifactError(f"the KV cache is full: this artifact holds {self.max_context} "
                                "tokens (prompt + new tokens)")
        out = self._decode(tokens=np.array([[token]], dtype=self._id_dtype),
                           input_pos=np.array([self._past], dtype=self._pos_dtype), **self._cache)
        self._keep_cache(out)
        self._past += 1
        return np.asarray(out["logits"][0, -1], dtype=np.float32)

    def _run_prefill(self, ids: np.ndarray):
        """Run the smallest prefill signature that holds `ids` (zero-padded at the end)."""
        fitting = [n for n in self._prefill if n >= ids.size]
        if not fitting:
            raise ArtifactError(f"a prompt of {ids.size} tokens is longer than this artifact's "
                                f"longest prefill ({max(self._prefill)})")
        length = min(fitting)
        tokens = np.zeros((1, length), dtype=self._id_dtype)
        tokens[0, :ids.size] = ids
        positions = np.arange(length, dtype=self._pos_dtype)
        out = self._prefill[length](tokens=tokens, input_pos=positions, **self._cache)
        self._keep_cache(out)
        self._past = ids.size
        return np.asarray(out["logits"], dtype=np.float32) if "logits" in out else None

    def _keep_cache(self, out: dict) -> None:
        for name in self._cache:
            self._cache[name] = out[name]
