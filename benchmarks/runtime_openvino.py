"""OpenVINO adapter (CPU plugin).

fp32 means fp32: without `INFERENCE_PRECISION_HINT: f32` the CPU plugin silently computes in
bf16 on CPUs with AVX512-BF16 or AMX, which would make an fp32 IR look lossy in verification and
fast in the benchmark. `bf16` is its own precision, asked for explicitly.
"""

from __future__ import annotations

import os

import numpy as np

try:
    from .runtimes import ArtifactError, first_line, import_runtime, named_feed
except ImportError:  # copied alone onto a device
    from runtimes import ArtifactError, first_line, import_runtime, named_feed

FORMAT = "openvino"
SUFFIXES = (".xml",)
_DTYPES = {"i64": np.int64, "i32": np.int32, "f32": np.float32, "f16": np.float16}
# The precision the CPU plugin computes in, per exported precision: the weights' storage type
# (fp16, int8) does not change it.
INFERENCE_PRECISION = {"bf16": "bf16"}


def settings(precision: str, threads: int) -> dict:
    """LATENCY hint (one stream, one request at a time: what a single synchronous call measures)
    and the inference precision pinned to f32 unless the artifact's precision is bf16."""
    return {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": INFERENCE_PRECISION.get(precision, "f32")}


class Adapter:
    runtime = "openvino"
    fixed_batch = None

    def __init__(self, path: str, options: dict):
        ov = import_runtime("openvino", "openvino")
        self.version = ov.get_version()
        self.errors = (RuntimeError, ValueError, TypeError)
        weights = os.path.splitext(path)[0] + ".bin"
        if not os.path.isfile(weights):
            raise ArtifactError(f"{os.path.basename(weights)} is missing beside {path} "
                                "(an OpenVINO IR is the .xml and its .bin)")
        try:
            self.compiled = ov.Core().compile_model(path, "CPU", dict(options))
        except self.errors as exc:
            raise ArtifactError(f"openvino cannot load {path}: {first_line(exc)}") from None
        self.request = self.compiled.create_infer_request()
        self.inputs = {p.get_any_name(): _DTYPES.get(p.get_element_type().get_type_name(), np.int64)
                       for p in self.compiled.inputs}
        self._output = self.compiled.outputs[0]

    def prepare(self, batch: dict) -> dict:
        return named_feed(batch, self.inputs)

    def __call__(self, feed: dict):
        return self.request.infer(feed)

    def output(self, raw) -> np.ndarray:
        return np.asarray(raw[self._output], dtype=np.float32)
