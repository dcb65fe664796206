"""Shared verification: run an exported artifact and its PyTorch source on the same inputs.

The artifact runs through the benchmark's own runtime adapter (`edgekd.benchmarks.runtimes`),
opened with the same settings the runner times it with, so what is verified is what is measured.
The task supplies the reference outputs, the parity measure and the quality metrics; they go
into export.json. An artifact whose parity misses its precision's threshold is marked failed.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np

from edgekd.benchmarks import runtimes
from edgekd.errors import EdgekdError


_OPERATOR_PATTERNS = (
    r"(aten::[A-Za-z0-9_.]+)",                       # torch ops named by both converters
    r"operator '?([A-Za-z0-9_:.]+)'?",                 # "Exporting the operator 'x' ..."
    r"[Oo]p(?:erator)? type[: ]+'?([A-Za-z0-9_:.]+)",  # ONNX Runtime / OpenVINO node types
    r"(?:No|Unsupported) [Oo]p(?:eration)?[: ]+'?([A-Za-z0-9_:.]+)",
)


def conversion_error(fmt: str, what: str, exc: BaseException) -> EdgekdError:
    """A one-line EdgekdError for a converter failure: the format, what failed, the converter's
    first line, and the operator when the converter's (possibly multi-line) message names one."""
    import re

    text = str(exc).strip() or type(exc).__name__
    # OpenVINO's first lines are C++ source locations; keep the first line a person can use.
    lines = [line.strip() for line in text.splitlines()
             if line.strip() and " failed at src/" not in line and not line.startswith("Check '")]
    first = (lines[0] if lines else text.splitlines()[0])[:300]
    operator = None
    for pattern in _OPERATOR_PATTERNS:
        match = re.search(pattern, text)
        if match:
            operator = match.group(1).rstrip(".:,")
            break
    where = f" (operator {operator})" if operator and operator not in first else ""
    return EdgekdError(f"{fmt}: {what} failed{where}: {first}")


def check_model_dir(model_dir: str | Path) -> Path:
    """The folder if it holds a Hugging Face model (config.json + weights), else EdgekdError."""
    folder = Path(model_dir)
    if not folder.is_dir():
        raise EdgekdError(f"model folder not found: {folder}")
    if not (folder / "config.json").is_file():
        raise EdgekdError(f"{folder} is not a model folder (no config.json; expected a Hugging "
                          "Face save_pretrained folder)")
    weights = [p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin")
               and not p.name.startswith("training_args")]
    if not weights:
        raise EdgekdError(f"{folder} is not a model folder (no .safetensors or .bin weights)")
    return folder




def verify_artifact(path: Path, fmt: str, precision: str, *, task: ModuleType,
                    reference: np.ndarray, inputs: dict[str, np.ndarray], labels=None,
                    threads: int = 1, limits: dict | None = None) -> dict:
    """Run the artifact on `inputs` through its runtime adapter and compare with `reference`.

    Returns the export.json fields verification owns: parity, metrics, accuracy, error (None
    when it passes), and the runtime, version and settings that produced the outputs. An
    artifact that does not load or run is an error in the result, not an exception; a missing
    runtime is an EdgekdError (nothing here can be verified).
    """
    result = {"parity": None, "metrics": None, "accuracy": None, "error": None, "runtime": None,
              "runtime_version": None, "runtime_settings": None}
    if getattr(task, "GENERATIVE", False):
        return _verify_generation(result, path, fmt, precision, task=task, reference=reference,
                                  inputs=inputs, texts=labels, threads=threads, limits=limits)
    try:
        adapter, settings = runtimes.open_adapter(str(path), precision=precision,
                                                  threads=threads, fmt=fmt)
        result.update(runtime=adapter.runtime, runtime_version=str(adapter.version),
                      runtime_settings=settings)
        got = runtimes.run_outputs(adapter, inputs)
        result["parity"] = task.parity(reference, got, precision)
    except runtimes.RuntimeMissing as exc:
        raise EdgekdError(f"{fmt}: cannot verify here: {exc}") from None
    except (runtimes.ArtifactError, EdgekdError) as exc:
        result["error"] = f"{fmt} artifact does not run in its runtime: {exc}"
        return result
    result["metrics"] = task.quality(got, labels)
    result["accuracy"] = result["metrics"].get("accuracy")
    result["error"] = task.parity_error(result["parity"])
    return result


def _verify_generation(result: dict, path: Path, fmt: str, precision: str, *, task: ModuleType,
                       reference: np.ndarray, inputs: dict, texts, threads: int,
                       limits: dict | None = None) -> dict:
    """A causal LM: greedy tokens from the artifact's Generator (batch 1, its KV cache) against
    the PyTorch source's (`reference`), and perplexity on the held-out `texts` (token-id arrays)
    when given."""
    new_tokens = int(np.asarray(reference).shape[-1])
    try:
        generator, settings = runtimes.open_generator(str(path), precision=precision,
                                                      threads=threads, fmt=fmt)
        result.update(runtime=generator.runtime, runtime_version=str(generator.version),
                      runtime_settings=settings)
        got = runtimes.greedy_rows(generator, inputs, new_tokens)
        result["parity"] = task.parity(reference, got, precision, limits)
        logits = [runtimes.sequence_logits(generator, ids) for ids in (texts or [])]
    except runtimes.RuntimeMissing as exc:
        raise EdgekdError(f"{fmt}: cannot verify here: {exc}") from None
    except (runtimes.ArtifactError, EdgekdError) as exc:
        result["error"] = f"{fmt} artifact does not generate in its runtime: {exc}"
        return result
    result["metrics"] = dict(task.quality(logits, texts) if texts else {},
                             greedy_agreement=result["parity"]["token_agreement"])
    result["error"] = task.parity_error(result["parity"])
    return result


class ReferenceOutputs:
    """The PyTorch source's outputs on the eval inputs, computed once per source and cached by
    the source's fingerprint and the inputs' digest: in memory, and on disk under `cache_dir`
    (a run's `cache/`) so a rerun does not load the model again."""

    def __init__(self, cache_dir: Path | None = None):
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self._memory: dict[str, np.ndarray] = {}
        self.computed = 0  # how many times a model was run (tests check the cache works)

    def get(self, model_dir: Path, task: ModuleType, inputs: dict[str, np.ndarray]) -> np.ndarray:
        from edgekd.exporters import source_fingerprint

        key = f"{source_fingerprint(model_dir)}-{inputs_digest(inputs)}"
        if key in self._memory:
            return self._memory[key]
        path = self.cache_dir / f"reference-{key}.npy" if self.cache_dir else None
        if path is not None and path.is_file():
            outputs = np.load(path)
        else:
            outputs = task.reference_outputs(task.load_reference(model_dir), inputs)
            self.computed += 1
            if path is not None:
                _save_npy_atomic(path, outputs)
        self._memory[key] = outputs
        return outputs

    def source_perplexity(self, model_dir: Path, task: ModuleType, texts: list) -> float | None:
        """A causal LM source's perplexity on the held-out `texts` (token-id arrays), scored
        through the PyTorch generator, so an artifact's perplexity on the same texts can be
        judged against its own source's. Cached like the reference outputs."""
        from edgekd.benchmarks.runtime_pytorch import Generator
        from edgekd.exporters import source_fingerprint

        if not texts:
            return None
        digest = inputs_digest({f"t{i}": np.asarray(t) for i, t in enumerate(texts)})
        key = f"perplexity-{source_fingerprint(model_dir)}-{digest}"
        if key not in self._memory:
            path = self.cache_dir / f"reference-{key}.npy" if self.cache_dir else None
            if path is not None and path.is_file():
                self._memory[key] = np.load(path)
            else:
                generator = Generator.from_model(task.load_reference(model_dir))
                logits = [runtimes.sequence_logits(generator, ids) for ids in texts]
                self._memory[key] = np.array([task.quality(logits, texts)["perplexity"]])
                self.computed += 1
                if path is not None:
                    _save_npy_atomic(path, self._memory[key])
        return float(self._memory[key][0])


def inputs_digest(inputs: dict[str, np.ndarray]) -> str:
    """A short digest of named arrays (names, shapes, values)."""
    import hashlib

    digest = hashlib.sha1()
    for name in sorted(inputs):
        array = np.ascontiguousarray(inputs[name])
        digest.update(f"{name}:{array.shape}:{array.dtype};".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:16]


def _save_npy_atomic(path: Path, array: np.ndarray) -> None:
    import os
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npy")
    with os.fdopen(fd, "wb") as f:
        np.save(f, array)
    os.replace(tmp, path)
