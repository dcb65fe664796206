"""PyTorch adapter: the baseline, a Hugging Face model folder run in inference mode.

The model class is the one the folder's config.json names (`architectures`), so this file
names no model class and stays task-agnostic; only edgekd/tasks/ chooses classes.
"""

from __future__ import annotations

import inspect
import json
import os

import numpy as np

try:
    from .runtimes import TOKEN_INPUTS, ArtifactError, fill_defaults, first_line, import_runtime
except ImportError:  # copied alone onto a device
    from runtimes import TOKEN_INPUTS, ArtifactError, fill_defaults, first_line, import_runtime

FORMAT = "pytorch"
SUFFIXES = ()   # a folder, not a file


def settings(precision: str, threads: int) -> dict:
    """torch's intra-op threads; inference mode; fp32 weights as saved."""
    return {"num_threads": threads, "inference_mode": True, "dtype": "float32"}


class Adapter:
    runtime = "torch"
    fixed_batch = None

    def __init__(self, path: str, options: dict):
        torch = import_runtime("torch", "torch")
        transformers = import_runtime("transformers", "transformers")
        torch.set_num_threads(options["num_threads"])
        self.version = torch.__version__
        self.torch = torch
        self.errors = (RuntimeError, ValueError, OSError)
        try:
            with open(os.path.join(path, "config.json"), encoding="utf-8") as f:
                architecture = (json.load(f).get("architectures") or [None])[0]
            model_cls = getattr(transformers, architecture)
            self.model = model_cls.from_pretrained(path, dtype=torch.float32).eval()
        except (TypeError, AttributeError, KeyError, json.JSONDecodeError, *self.errors) as exc:
            raise ArtifactError(f"cannot load the PyTorch model in {path}: {first_line(exc)}") \
                from None
        accepted = inspect.signature(self.model.forward).parameters
        self.inputs = {k: np.int64 for k in TOKEN_INPUTS if k in accepted}

    def prepare(self, batch: dict) -> dict:
        batch = fill_defaults(batch, self.inputs)
        return {k: self.torch.from_numpy(np.ascontiguousarray(batch[k], dtype=np.int64))
                for k in self.inputs if k in batch}

    def __call__(self, feed: dict):
        with self.torch.inference_mode():
            return self.model(**feed).logits

    def output(self, raw) -> np.ndarray:
        return raw.float().numpy()
