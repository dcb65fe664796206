"""What runs the model: one small class per runtime, each with the same surface.

Standalone (stdlib + numpy; the runtime is imported only by its own class): copied next to the
on-device runner. A backend loads an artifact with the runtime's own intra-op thread option,
names its inputs, and runs one batch given as {name: int64 array}.
"""

from __future__ import annotations

import importlib
import os

import numpy as np


class RuntimeMissing(RuntimeError):
    """The runtime an artifact needs is not installed here; the message names the pip package."""


def _import(module: str, package: str):
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise RuntimeMissing(f"runtime '{module}' is not installed in this Python "
                             f"({exc}); install it with: pip install {package}") from None


class OnnxRuntimeBackend:
    format = "onnx"
    runtime = "onnxruntime"

    def __init__(self, path: str, threads: int):
        ort = _import("onnxruntime", "onnxruntime")
        self.version = ort.__version__
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1  # one graph at a time: parallelism comes from intra-op
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.session = ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
        kinds = {"tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(float)": np.float32}
        self.inputs = {i.name: kinds.get(i.type, np.int64) for i in self.session.get_inputs()}

    def prepare(self, batch: dict) -> dict:
        return {k: np.ascontiguousarray(batch[k], dtype=t) for k, t in self.inputs.items()}

    def __call__(self, feed: dict):
        return self.session.run(None, feed)


class OpenVinoBackend:
    format = "openvino"
    runtime = "openvino"

    def __init__(self, path: str, threads: int):
        ov = _import("openvino", "openvino")
        self.version = ov.get_version()
        core = ov.Core()
        # LATENCY: one stream, one request at a time -- what a single synchronous call measures.
        config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
        self.compiled = core.compile_model(path, "CPU", config)
        self.request = self.compiled.create_infer_request()
        kinds = {"i64": np.int64, "i32": np.int32, "f32": np.float32}
        self.inputs = {p.get_any_name(): kinds.get(p.get_element_type().get_type_name(), np.int64)
                       for p in self.compiled.inputs}

    def prepare(self, batch: dict) -> dict:
        return {k: np.ascontiguousarray(batch[k], dtype=t) for k, t in self.inputs.items()}

    def __call__(self, feed: dict):
        return self.request.infer(feed)


def _tflite_interpreter():
    """The Interpreter class of the first TFLite runtime installed."""
    for module in ("ai_edge_litert.interpreter", "tflite_runtime.interpreter", "tensorflow.lite"):
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        version = getattr(importlib.import_module(module.split(".")[0]), "__version__", None)
        return mod.Interpreter, module.split(".")[0], version
    raise RuntimeMissing("no TFLite interpreter is installed in this Python; install one with: "
                         "pip install ai-edge-litert (or tflite-runtime on older boards)")


class TfliteBackend:
    format = "tflite"

    def __init__(self, path: str, threads: int):
        Interpreter, self.runtime, self.version = _tflite_interpreter()
        if self.version is None:
            self.version = _dist_version(self.runtime.replace("_", "-"))
        self.interp = Interpreter(model_path=path, num_threads=threads)
        self.details = self.interp.get_input_details()
        self.inputs = {d["name"]: d["dtype"] for d in self.details}
        self._shapes = None

    def prepare(self, batch: dict) -> dict:
        feed = {}
        for d in self.details:
            arr = np.ascontiguousarray(batch[d["name"]], dtype=d["dtype"])
            feed[d["index"]] = arr
        shapes = {i: a.shape for i, a in feed.items()}
        if shapes != self._shapes:  # static graphs: resize once to the asked batch x seq_len
            for d in self.details:
                if tuple(d["shape"]) != shapes[d["index"]]:
                    self.interp.resize_tensor_input(d["index"], list(shapes[d["index"]]), strict=False)
            self.interp.allocate_tensors()
            self._shapes = shapes
        return feed

    def __call__(self, feed: dict):
        for index, arr in feed.items():
            self.interp.set_tensor(index, arr)
        self.interp.invoke()


class PytorchBackend:
    """The PyTorch baseline: a Hugging Face model folder, run in inference mode."""

    format = "pytorch"
    runtime = "torch"

    def __init__(self, path: str, threads: int):
        torch = _import("torch", "torch")
        transformers = _import("transformers", "transformers")
        torch.set_num_threads(threads)
        self.version = torch.__version__
        self.torch = torch
        self.model = transformers.AutoModelForSequenceClassification.from_pretrained(path).eval()
        import inspect

        accepted = inspect.signature(self.model.forward).parameters
        self.inputs = {k: np.int64 for k in ("input_ids", "attention_mask", "token_type_ids")
                       if k in accepted}

    def prepare(self, batch: dict) -> dict:
        return {k: self.torch.from_numpy(np.ascontiguousarray(batch[k], dtype=np.int64))
                for k in self.inputs}

    def __call__(self, feed: dict):
        with self.torch.inference_mode():
            return self.model(**feed).logits


BACKENDS = {".onnx": OnnxRuntimeBackend, ".xml": OpenVinoBackend, ".tflite": TfliteBackend}


def backend_for(path: str):
    """The backend class for an artifact path: by suffix, or a model folder for PyTorch."""
    if os.path.isdir(path):
        return PytorchBackend
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in BACKENDS:
        raise ValueError(f"unknown artifact type '{suffix}' (expected .onnx, .xml, .tflite "
                         "or a model folder)")
    return BACKENDS[suffix]


def _dist_version(name: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:
        return None
