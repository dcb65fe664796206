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


class Generator:
    """Greedy generation with the model's own KV cache (transformers' `past_key_values`), batch 1:
    the reference every exported causal LM is checked against, and the teacher's baseline."""

    runtime = "torch"

    def __init__(self, path: str | None, options: dict, model=None):
        torch = import_runtime("torch", "torch")
        torch.set_num_threads(options["num_threads"])
        self.torch, self.version = torch, torch.__version__
        self.errors = (RuntimeError, ValueError, IndexError)
        if model is None:
            model = Adapter(path, options).model
        self.model = model.eval()
        self.vocab_size = int(model.config.vocab_size)
        # Learned position embeddings (GPT-2's n_positions) end somewhere; rotary ones do not.
        self.max_context = getattr(model.config, "n_positions", None)
        self._past = None

    @classmethod
    def from_model(cls, model, threads: int = 1) -> "Generator":
        """A generator over a model already in memory (verification's reference)."""
        return cls(None, settings("fp32", threads), model=model)

    def reset(self) -> None:
        self._past = None

    def _step(self, ids: np.ndarray):
        torch = self.torch
        with torch.inference_mode():
            out = self.model(input_ids=torch.from_numpy(ids.reshape(1, -1)),
                             past_key_values=self._past, use_cache=True)
        self._past = out.past_key_values
        return out.logits[0].float().numpy()

    def prefill(self, ids: np.ndarray) -> np.ndarray:
        self.reset()
        return self._step(np.ascontiguousarray(ids, dtype=np.int64))

    def decode(self, token: int) -> np.ndarray:
        return self._step(np.array([token], dtype=np.int64))[-1]
