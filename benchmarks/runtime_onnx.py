"""ONNX Runtime adapter (CPU execution provider)."""

from __future__ import annotations

import numpy as np

try:
    from .runtimes import ArtifactError, first_line, import_runtime, named_feed
except ImportError:  # copied alone onto a device
    from runtimes import ArtifactError, first_line, import_runtime, named_feed

FORMAT = "onnx"
SUFFIXES = (".onnx",)
_DTYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(float)": np.float32,
           "tensor(float16)": np.float16}


def settings(precision: str, threads: int) -> dict:
    """One graph at a time, parallel inside operators only: what a single synchronous call
    measures. Graph optimisation is ORT's default (all levels): the same for verify and bench."""
    return {"intra_op_num_threads": threads, "inter_op_num_threads": 1,
            "execution_mode": "sequential", "graph_optimization_level": "all",
            "providers": ["CPUExecutionProvider"]}


class Adapter:
    runtime = "onnxruntime"
    fixed_batch = None

    def __init__(self, path: str, options: dict):
        ort = import_runtime("onnxruntime", "onnxruntime")
        self.version = ort.__version__
        self.errors = (RuntimeError, ValueError, *_ort_errors())
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = options["intra_op_num_threads"]
        opts.inter_op_num_threads = options["inter_op_num_threads"]
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(path, sess_options=opts,
                                                providers=options["providers"])
        except self.errors as exc:
            raise ArtifactError(f"onnxruntime cannot load {path}: {first_line(exc)}") from None
        self.inputs = {i.name: _DTYPES.get(i.type, np.int64) for i in self.session.get_inputs()}
        self._output = self.session.get_outputs()[0].name

    def prepare(self, batch: dict) -> dict:
        return named_feed(batch, self.inputs)

    def __call__(self, feed: dict):
        return self.session.run([self._output], feed)

    def output(self, raw) -> np.ndarray:
        return np.asarray(raw[0], dtype=np.float32)


def _ort_errors() -> tuple:
    try:
        from onnxruntime.capi import onnxruntime_pybind11_state as state
    except ImportError:
        return ()
    return tuple(getattr(state, n) for n in ("Fail", "InvalidArgument", "InvalidGraph",
                                              "InvalidProtobuf", "NoSuchFile", "NotImplemented",
                                              "RuntimeException") if hasattr(state, n))
