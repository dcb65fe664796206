"""A causal-LM teacher's predictions, computed once and cached on disk for the student's training.

(a) Token level: the teacher's top-k next-token log-probabilities at every position of every
    training sequence (one sequence = one text, tokenized and truncated to `seq_len`), in shards
    of `shard_size` texts. `shard-00000.npz` holds the shard's T tokens back to back, unpadded:
    int32 `input_ids` [T], `offsets` [n + 1] (sequence i is tokens offsets[i]:offsets[i+1]),
    `text_index` [n], int32 `topk_indices` [T, k], float16 `topk_log_probs` [T, k], and the
    cache `fingerprint`; `index.json` lists the shards once all are written. Each shard is
    written atomically, so an interrupted build keeps its finished shards and a rerun computes
    only the missing ones. `TopKShardDataset` streams the shards one at a time, so a corpus
    larger than memory trains fine. Values are log softmax(z / T) over the full vocabulary at
    the cache's temperature, ready for `lm_losses.SparseTeacher`. Ids are the teacher's: the
    index records its `teacher_vocab_size` and `tokenizer_hash`, and a vocabulary-trimmed
    student reads them through `vocab_map` (teacher_to_student, -1 = dropped).
(b) Sequence level (Kim & Rush 2016) lives in `lm_sequence_kd`: the teacher's greedy
    continuations, whose texts are then cached here like any other training text.

The cache is keyed by a fingerprint of the teacher folder (config, tokenizer, weight files), the
texts and the settings: a change recomputes, an unchanged rerun never runs the teacher.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from edgekd.errors import EdgekdError

INDEX = "index.json"
SHARD = "shard-{:05d}.npz"


def teacher_fingerprint(teacher_dir: Path) -> str:
    """A digest of the teacher folder: config and tokenizer file contents, weight files by
    name, size and modification time (hashing gigabytes of weights on every run is too slow)."""
    teacher_dir = Path(teacher_dir)
    digest = hashlib.sha256()
    for name in ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"):
        if (teacher_dir / name).is_file():
            digest.update(name.encode() + b"\0" + (teacher_dir / name).read_bytes())
    weights = sorted(teacher_dir.glob("*.safetensors")) + sorted(teacher_dir.glob("*.bin"))
    if not weights:
        raise EdgekdError(f"{teacher_dir} holds no model weights (*.safetensors or *.bin)")
    for file in weights:
        stat = file.stat()
        digest.update(f"{file.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def cache_fingerprint(teacher_dir: Path, texts, **settings) -> str:
    """The teacher's fingerprint, the texts and the settings (k, seq_len, ...) in one digest."""
    digest = hashlib.sha256(teacher_fingerprint(teacher_dir).encode())
    digest.update(json.dumps(settings, sort_keys=True).encode())
    for text in texts:
        digest.update(text.encode("utf-8", "replace") + b"\0")
    return digest.hexdigest()


def tokenizer_hash(tokenizer) -> str:
    """A digest of the tokenizer's id -> token table: equal hashes mean equal token ids."""
    table = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    return hashlib.sha256(json.dumps(table, ensure_ascii=False).encode()).hexdigest()


def _teacher_vocabulary(teacher_dir: Path) -> dict:
    """What the cached ids mean: the teacher's vocabulary size (its logits' width, maybe more
    than len(tokenizer)) and tokenizer hash; reads config and tokenizer, not the weights."""
    from transformers import AutoConfig, AutoTokenizer

    return {"teacher_vocab_size": int(AutoConfig.from_pretrained(teacher_dir).vocab_size),
            "tokenizer_hash": tokenizer_hash(AutoTokenizer.from_pretrained(teacher_dir))}


def teacher_device() -> str:
    """Where the teacher runs to fill a cache: the GPU when there is one (its predictions on a
    large corpus are most of the work before training), else the CPU."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_teacher(teacher_dir: Path, device: str | None = None):
    """(model in eval mode on `device` (default: `teacher_device()`), tokenizer) of a causal-LM
    folder."""
    from transformers import AutoTokenizer

    from edgekd.tasks import get_task

    model = get_task("causal-lm").load_reference(Path(teacher_dir))
    model = model.to(device or teacher_device()).eval()
    return model, AutoTokenizer.from_pretrained(teacher_dir)


def _atomic_write(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _save_npz(path: str, arrays: dict) -> None:
    with open(path, "wb") as out:              # a file object: np.savez(path) would add ".npz"
        np.savez(out, **arrays)


def _shard_fingerprint(file: Path) -> str | None:
    try:
        with np.load(file) as shard:           # an npz reads only the member asked for
            return str(shard["fingerprint"])
    except (OSError, ValueError, KeyError):
        return None


def _concatenated(rows: list, tail: tuple, dtype) -> np.ndarray:
    """Rows of different lengths back to back as one [sum of lengths, *tail] array."""
    if not rows:
        return np.zeros((0,) + tail, dtype)
    return np.concatenate([np.asarray(row, dtype).reshape((-1,) + tail) for row in rows])


def teacher_top_k(model, sequences: list[list[int]], k: int, temperature: float,
                  batch_size: int, pad_token_id: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(int32 indices [len, k], float16 log-probs [len, k]) of the teacher's top-k next tokens
    at every position of each sequence; one forward pass per batch, longest first to pad less."""
    device = next(model.parameters()).device
    out: list = [None] * len(sequences)
    order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i]))
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            longest = len(sequences[rows[0]])
            ids = torch.full((len(rows), longest), pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(rows), longest), dtype=torch.long)
            for j, i in enumerate(rows):   # right padding: real tokens keep positions 0..len-1
                ids[j, :len(sequences[i])] = torch.tensor(sequences[i])
                mask[j, :len(sequences[i])] = 1
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
            log_probs = torch.log_softmax(logits.float() / temperature, dim=-1)
            values, indices = log_probs.topk(k, dim=-1)
            for j, i in enumerate(rows):
                n = len(sequences[i])
                out[i] = (indices[j, :n].cpu().numpy().astype(np.int32),
                          values[j, :n].cpu().numpy().astype(np.float16))
    return out


def _topk_shard(model, tokenizer, texts: list[str], first_text: int, *, k: int, seq_len: int,
                temperature: float, batch_size: int) -> dict:
    """The arrays of one shard: its texts tokenized (truncated to seq_len) and the teacher's
    top-k at every position; texts of fewer than 2 tokens have nothing to predict and are left out."""
    encoded = tokenizer(list(texts), truncation=True, max_length=seq_len)["input_ids"]
    keep = [j for j, ids in enumerate(encoded) if len(ids) >= 2]
    sequences = [encoded[j] for j in keep]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0  # masked anyway
    predictions = teacher_top_k(model, sequences, k, temperature, batch_size, pad_id)
    return {"input_ids": _concatenated(sequences, (), np.int32),
            "offsets": np.cumsum([0] + [len(s) for s in sequences]).astype(np.int64),
            "text_index": np.asarray([first_text + j for j in keep], np.int32),
            "topk_indices": _concatenated([p[0] for p in predictions], (k,), np.int32),
            "topk_log_probs": _concatenated([p[1] for p in predictions], (k,), np.float16)}


def build_topk_cache(teacher_dir: Path, texts: list[str], cache_dir: Path, *, k: int = 32,
                     seq_len: int = 256, temperature: float = 1.0, shard_size: int = 256,
                     batch_size: int = 8, device: str | None = None,
                     progress: str | None = None) -> dict:
    """Fill `cache_dir` with the teacher's top-k log-probs for every text (see module doc) and
    return the index. Loads and runs the teacher only for shards not already cached under the
    same fingerprint; stale shards (another teacher, texts or settings) are deleted first.
    `progress`: a label for a progress bar over the shards to compute (None: no bar)."""
    if k < 1 or seq_len < 2 or shard_size < 1 or batch_size < 1 or temperature <= 0:
        raise EdgekdError(f"top-k cache needs k >= 1, seq_len >= 2, shard_size >= 1, batch_size >= 1 "
                          f"and temperature > 0 (got {k}, {seq_len}, {shard_size}, {batch_size}, {temperature})")
    cache_dir = Path(cache_dir)
    settings = {"k": k, "seq_len": seq_len, "temperature": temperature, "shard_size": shard_size}
    key = cache_fingerprint(teacher_dir, texts, kind="topk", **settings)
    index_file = cache_dir / INDEX
    if index_file.is_file():
        index = json.loads(index_file.read_text())
        if index.get("fingerprint") == key and "teacher_vocab_size" in index:
            return index
        index_file.unlink()           # stale, or from before the vocabulary fields: re-indexed
    cache_dir.mkdir(parents=True, exist_ok=True)
    shard_count = -(-len(texts) // shard_size)
    for file in cache_dir.glob("shard-*.npz"):
        if file.name not in {SHARD.format(i) for i in range(shard_count)} or _shard_fingerprint(file) != key:
            file.unlink()
    missing = [i for i in range(shard_count) if not (cache_dir / SHARD.format(i)).is_file()]
    if missing:
        from tqdm.auto import tqdm

        model, tokenizer = load_teacher(teacher_dir, device)
        if k > model.config.vocab_size:
            raise EdgekdError(f"top-k of {k} exceeds the teacher's vocabulary of {model.config.vocab_size}")
        for i in tqdm(missing, desc=progress, disable=progress is None, unit="shard"):
            arrays = _topk_shard(model, tokenizer, texts[i * shard_size:(i + 1) * shard_size],
                                 i * shard_size, k=k, seq_len=seq_len, temperature=temperature,
                                 batch_size=batch_size)
            arrays["fingerprint"] = np.array(key)
            _atomic_write(cache_dir / SHARD.format(i), lambda tmp: _save_npz(tmp, arrays))
    shards = []
    for i in range(shard_count):
        with np.load(cache_dir / SHARD.format(i)) as shard:
            offsets = shard["offsets"]
            shards.append({"file": SHARD.format(i), "sequences": len(offsets) - 1,
                           "tokens": int(offsets[-1])})
    index = {"fingerprint": key, **settings, **_teacher_vocabulary(teacher_dir), "texts": len(texts),
             "sequences": sum(s["sequences"] for s in shards), "shards": shards}
    _atomic_write(index_file, lambda tmp: Path(tmp).write_text(json.dumps(index, indent=1) + "\n"))
    return index


class TopKShardDataset(torch.utils.data.IterableDataset):
    """The cached sequences as an iterable (a torch IterableDataset): one dict per sequence with
    `input_ids` [len], `teacher_indices` [len, k], `teacher_log_probs` [len, k] (float32) and
    the cache's `teacher_temperature`. Only one shard is in memory at a time. `shuffle` permutes
    the shard order and the sequences within a shard, seeded by `seed` + the epoch (`set_epoch`).
    Under a DataLoader with workers, each worker reads its own share of the shards.

    `vocab_map`: for a vocabulary-trimmed student, `teacher_to_student` (one student id per
    teacher id, -1 where dropped; `edgekd.pruning.trim_vocabulary`). Input ids and teacher ids
    then come out as student ids; a dropped teacher top-k id becomes -1 (its mass counts in the
    loss's tail bucket); a dropped *input* token is an error (trim on the cache's texts)."""

    def __init__(self, cache_dir: Path, shuffle: bool = False, seed: int = 0, vocab_map=None):
        self.cache_dir = Path(cache_dir)
        if not (self.cache_dir / INDEX).is_file():
            raise EdgekdError(f"{self.cache_dir} holds no finished top-k cache ({INDEX} missing)")
        self.index = json.loads((self.cache_dir / INDEX).read_text())
        self.shuffle, self.seed, self.epoch = shuffle, seed, 0
        self.vocab_map = None if vocab_map is None else np.asarray(vocab_map, dtype=np.int64)
        size = self.index.get("teacher_vocab_size")     # absent in an index from before it
        if self.vocab_map is not None and (self.vocab_map.shape != (size,) or self.vocab_map.min() < -1):
            raise EdgekdError(f"vocab_map must give a student id or -1 for each of the teacher's {size} "
                              f"token ids, got shape {self.vocab_map.shape} (None: rerun build_topk_cache)")

    @property
    def temperature(self) -> float:
        return float(self.index["temperature"])

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return int(self.index["sequences"])

    def _student_ids(self, name: str, arrays: dict) -> dict:
        input_ids = self.vocab_map[arrays["input_ids"]]
        if (input_ids < 0).any():
            token = int(arrays["input_ids"][np.argmax(input_ids < 0)])
            raise EdgekdError(f"{name} holds teacher token {token}, which the student's vocabulary "
                              "dropped: trim the vocabulary on the texts the cache was built from")
        return {**arrays, "input_ids": input_ids, "topk_indices": self.vocab_map[arrays["topk_indices"]]}

    def __iter__(self):
        rng = np.random.default_rng(self.seed + self.epoch)
        shards = [s["file"] for s in self.index["shards"]]
        if self.shuffle:
            shards = [shards[i] for i in rng.permutation(len(shards))]
        worker = torch.utils.data.get_worker_info()
        if worker is not None:
            shards = shards[worker.id::worker.num_workers]
        for name in shards:
            with np.load(self.cache_dir / name) as shard:
                arrays = {key: shard[key] for key in
                          ("input_ids", "offsets", "topk_indices", "topk_log_probs")}
            if self.vocab_map is not None:
                arrays = self._student_ids(name, arrays)
            count = len(arrays["offsets"]) - 1
            for i in rng.permutation(count) if self.shuffle else range(count):
                span = slice(int(arrays["offsets"][i]), int(arrays["offsets"][i + 1]))
                yield {"input_ids": torch.from_numpy(arrays["input_ids"][span].astype(np.int64)),
                       "teacher_indices": torch.from_numpy(arrays["topk_indices"][span].astype(np.int64)),
                       "teacher_log_probs": torch.from_numpy(arrays["topk_log_probs"][span].astype(np.float32)),
                       "teacher_temperature": self.temperature}


def collate_topk(rows: list[dict], pad_token_id: int = 0) -> dict:
    """Right-pad a list of `TopKShardDataset` items into `input_ids`, `attention_mask`, `labels`
    (the input ids, -100 on padding) and `teacher` (a `SparseTeacher` [B, L, k] at the
    temperature the rows' cache was built with, so the two cannot disagree)."""
    from edgekd.distillation.lm_losses import IGNORE_INDEX, SparseTeacher

    temperatures = {float(r["teacher_temperature"]) for r in rows}
    if len(temperatures) != 1:
        raise EdgekdError(f"one batch mixes top-k caches of temperatures {sorted(temperatures)}")
    longest = max(len(r["input_ids"]) for r in rows)
    k = rows[0]["teacher_indices"].shape[-1]
    ids = torch.full((len(rows), longest), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rows), longest), dtype=torch.long)
    indices = torch.zeros((len(rows), longest, k), dtype=torch.long)
    log_probs = torch.zeros((len(rows), longest, k), dtype=torch.float32)
    for j, row in enumerate(rows):
        n = len(row["input_ids"])
        ids[j, :n], mask[j, :n] = row["input_ids"], 1
        indices[j, :n], log_probs[j, :n] = row["teacher_indices"], row["teacher_log_probs"]
    labels = ids.masked_fill(mask == 0, IGNORE_INDEX)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels,
            "teacher": SparseTeacher(indices, log_probs, temperatures.pop())}
