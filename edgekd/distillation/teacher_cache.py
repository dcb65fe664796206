"""The teacher's predictions, computed once per training example and reused every epoch.

The cache is a `.npz` in the run folder holding the logits and a fingerprint of what produced
them (teacher weights, texts, max length); a mismatch recomputes it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from edgekd.distillation.dataset import collate


def fingerprint(teacher_dir: Path, texts: list[str], max_length: int) -> str:
    """A digest of the teacher's weight files (name, size, mtime) and the inputs."""
    digest = hashlib.sha256(str(max_length).encode())
    for file in sorted(Path(teacher_dir).glob("*.safetensors")) + sorted(Path(teacher_dir).glob("*.bin")):
        stat = file.stat()
        digest.update(f"{file.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    for text in texts:
        digest.update(text.encode("utf-8", "replace"))
        digest.update(b"\0")
    return digest.hexdigest()


@torch.no_grad()
def predict_logits(model, dataset, batch_size: int = 32, pad_token_id: int = 0,
                   progress: str | None = None) -> np.ndarray:
    """Logits of `model` for every example of `dataset`, in order, as float32 numpy."""
    from tqdm.auto import tqdm

    model.eval()
    device = next(model.parameters()).device
    out = []
    starts = range(0, len(dataset), batch_size)
    for start in tqdm(starts, desc=progress, disable=progress is None, unit="batch"):
        rows = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        batch = collate(rows, pad_token_id)
        batch.pop("labels")
        batch.pop("teacher_logits", None)
        logits = model(**{k: v.to(device) for k, v in batch.items()}).logits
        out.append(logits.float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.config.num_labels), np.float32)


def cached_teacher_logits(cache_file: Path, key: str, compute) -> tuple[np.ndarray, bool]:
    """Logits from `cache_file` when its fingerprint is `key`, else `compute()` and store them.
    Returns the logits and whether they came from the cache."""
    cache_file = Path(cache_file)
    if cache_file.is_file():
        with np.load(cache_file) as stored:
            if str(stored["fingerprint"]) == key:
                return stored["logits"], True
    logits = compute()
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache_file.parent, suffix=".npz")
    os.close(fd)
    np.savez(tmp, logits=logits, fingerprint=np.array(key))
    os.replace(tmp, cache_file)
    return logits, False
