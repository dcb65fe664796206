"""Task data: load texts and labels from a folder, CSV, JSONL or a Hugging Face dataset, split.

Everything returns plain Python (`TaskData`), so later stages (export calibration, benchmark
inputs) can use the same splits without torch. `encode` turns texts into fixed-length numpy
arrays, the form every runtime takes.
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekd.errors import EdgekdError
from edgekd.recipe import DataConfig, resolve_path

TEXT_SUFFIXES = (".txt",)


@dataclass
class Example:
    text: str
    label: int


@dataclass
class TaskData:
    """Labelled splits plus optional unlabeled texts; `labels[i]` is the name of class i."""

    labels: list[str]
    train: list[Example]
    validation: list[Example]
    test: list[Example]
    unlabeled: list[str] = field(default_factory=list)

    def summary(self) -> str:
        labels = f"{len(self.labels)} labels, " if self.labels else ""   # plain text has none
        return (f"{labels}{len(self.train)} train / {len(self.validation)} "
                f"validation / {len(self.test)} test, {len(self.unlabeled)} unlabeled")


def load_task_data(cfg: DataConfig) -> TaskData:
    """Load, split (unless the source has its own splits) and check the task data."""
    path = resolve_path(cfg.path)
    rows_by_split = read_source(path, cfg.text_column, cfg.label_column)
    if set(rows_by_split) == {"all"}:
        rows_by_split = split_rows(rows_by_split["all"], cfg.split.validation, cfg.split.test,
                                   cfg.split.seed)
    elif "test" not in rows_by_split or "train" not in rows_by_split:
        raise EdgekdError(f"data {path}: a source with its own splits needs 'train' and 'test' "
                          f"(found: {', '.join(rows_by_split)})")
    rows_by_split.setdefault("validation", [])
    train_labels = sorted({label for _, label in rows_by_split["train"]})
    if len(train_labels) < 2:
        raise EdgekdError(f"data {path}: the training split has {len(train_labels)} label(s); "
                          "classification needs at least 2")
    for split in ("validation", "test"):
        unseen = sorted({label for _, label in rows_by_split[split]} - set(train_labels))
        if unseen:
            raise EdgekdError(f"data {path}: labels in the {split} split not seen in train: "
                              f"{', '.join(map(str, unseen[:5]))}")
    index = {label: i for i, label in enumerate(train_labels)}

    def examples(split: str) -> list[Example]:
        return [Example(text, index[label]) for text, label in rows_by_split[split]]

    unlabeled: list[str] = []
    if cfg.unlabeled:
        extra = read_source(resolve_path(cfg.unlabeled), cfg.text_column, None)
        unlabeled = [text for rows in extra.values() for text, _ in rows]
    data = TaskData([str(l) for l in train_labels], examples("train"), examples("validation"),
                    examples("test"), unlabeled)
    if not data.test:
        raise EdgekdError(f"data {path}: the test split is empty (too few examples?)")
    return data


def read_source(path: str, text_column: str, label_column: str | None) -> dict[str, list[tuple[str, Any]]]:
    """Read rows `(text, label)` from any supported source, keyed by split (`all` if unsplit)."""
    p = Path(path)
    if p.is_dir() and not _looks_like_hf_dataset(p):
        rows = read_label_folders(p, with_labels=label_column is not None)
    elif p.is_file() and p.suffix.lower() == ".csv":
        rows = read_csv(p, text_column, label_column)
    elif p.is_file() and p.suffix.lower() in (".jsonl", ".json"):
        rows = read_jsonl(p, text_column, label_column)
    elif p.is_file() and p.suffix.lower() == ".txt" and label_column is None:
        rows = [(line.strip(), None) for line in _read_text(p).splitlines() if line.strip()]
    elif p.exists() or ("/" in path and not p.is_absolute() and not path.startswith(".")):
        return read_hf_dataset(path, text_column, label_column)
    else:
        raise EdgekdError(f"data path not found: {path}")
    if not rows:
        raise EdgekdError(f"data {path} holds no examples")
    return {"all": rows}


def read_label_folders(root: Path, with_labels: bool = True) -> list[tuple[str, Any]]:
    """One sub-folder per label holding .txt files (one example per file)."""
    rows = []
    folders = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith((".", "_")))
    if not folders and not with_labels:
        folders = [root]
    for folder in folders:
        for file in sorted(folder.iterdir()):
            if file.suffix.lower() in TEXT_SUFFIXES and file.is_file():
                text = _read_text(file).strip()
                if text:
                    rows.append((text, folder.name if with_labels else None))
    return rows


def read_csv(path: Path, text_column: str, label_column: str | None) -> list[tuple[str, Any]]:
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            records = list(reader)
            columns = reader.fieldnames or []
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise EdgekdError(f"cannot read {path}: {exc}") from None
    return _rows_from_records(path, records, columns, text_column, label_column)


def read_jsonl(path: Path, text_column: str, label_column: str | None) -> list[tuple[str, Any]]:
    records = []
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EdgekdError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise EdgekdError(f"{path}:{number}: each line must be a JSON object")
        records.append(record)
    columns = sorted({key for record in records for key in record})
    return _rows_from_records(path, records, columns, text_column, label_column)


def read_hf_dataset(path: str, text_column: str, label_column: str | None):
    """A Hugging Face dataset id or `save_to_disk` folder; keeps its own splits."""
    try:
        import datasets
    except ImportError:
        raise EdgekdError(f"data path '{path}' is not a local file or folder, and the 'datasets' "
                          "package (for Hugging Face datasets) is not installed") from None
    try:
        if Path(path).is_dir():
            ds = datasets.load_from_disk(path)
        else:
            ds = datasets.load_dataset(path)
    except Exception as exc:  # datasets raises many types; the user needs the message
        raise EdgekdError(f"cannot load dataset '{path}': {str(exc).splitlines()[0]}") from None
    if isinstance(ds, datasets.Dataset):
        ds = {"all": ds}
    out = {}
    for split, table in ds.items():
        name = {"valid": "validation", "dev": "validation"}.get(split, split)
        out[name] = _rows_from_records(Path(path), list(table), table.column_names,
                                       text_column, label_column)
    return out


def split_rows(rows: list, validation: float, test: float, seed: int) -> dict[str, list]:
    """Stratified split: each label is shuffled and cut by the fractions, so small classes stay
    represented in every split."""
    by_label: dict[Any, list] = {}
    for row in rows:
        by_label.setdefault(row[1], []).append(row)
    rng = random.Random(seed)
    out: dict[str, list] = {"train": [], "validation": [], "test": []}
    for label in sorted(by_label, key=str):
        group = by_label[label]
        rng.shuffle(group)
        n_test = max(1, round(len(group) * test)) if len(group) > 2 else 0
        n_val = round(len(group) * validation) if len(group) - n_test > 1 else 0
        out["test"] += group[:n_test]
        out["validation"] += group[n_test:n_test + n_val]
        out["train"] += group[n_test + n_val:]
    for split in out.values():
        rng.shuffle(split)
    return out


def encode(tokenizer, texts: list[str], max_length: int) -> dict[str, "Any"]:
    """Tokenize to fixed-length int64 numpy arrays (`input_ids`, `attention_mask`, and
    `token_type_ids` where the tokenizer makes them): the shapes export and benchmarks use."""
    import numpy as np

    batch = tokenizer(list(texts), padding="max_length", truncation=True, max_length=max_length,
                      return_tensors="np")
    return {name: np.asarray(value, dtype=np.int64) for name, value in batch.items()}


def _rows_from_records(path, records, columns, text_column, label_column):
    missing = [c for c in (text_column, label_column) if c and c not in columns]
    if missing:
        raise EdgekdError(f"data {path}: column '{missing[0]}' not found "
                          f"(columns: {', '.join(map(str, columns))}); set data.text_column / "
                          "data.label_column")
    rows = []
    for record in records:
        text = record.get(text_column)
        if text is None or not str(text).strip():
            continue
        label = record.get(label_column) if label_column else None
        if label_column and (label is None or str(label).strip() == ""):
            continue
        rows.append((str(text), label))
    return rows


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return path.read_text(encoding="latin-1")
    except OSError as exc:
        raise EdgekdError(f"cannot read {path}: {exc.strerror}") from None


def _looks_like_hf_dataset(folder: Path) -> bool:
    """A `datasets.save_to_disk` folder (rather than a folder of label sub-folders)."""
    return (folder / "dataset_dict.json").is_file() or (folder / "dataset_info.json").is_file()


INPUTS_FILE = "inputs.npz"
MAX_SAVED_INPUTS = 64


def save_inputs(folder: str | Path, encoded: dict, labels=None, limit: int = MAX_SAVED_INPUTS) -> Path:
    """Save up to `limit` tokenized examples (and labels) as `folder/inputs.npz`, atomically:
    the real inputs the on-device runner feeds to an artifact."""
    import os
    import tempfile

    import numpy as np

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {name: np.asarray(value[:limit], dtype=np.int64) for name, value in encoded.items()}
    if labels is not None:
        arrays["labels"] = np.asarray(labels[:limit], dtype=np.int64)
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".npz")
    os.close(fd)
    np.savez(tmp, **arrays)
    os.replace(tmp, folder / INPUTS_FILE)
    return folder / INPUTS_FILE


def load_data_argument(value: str, max_length: int | None = None) -> tuple[TaskData, int]:
    """Task data from a CLI `--data` value: a recipe YAML (its `data` section) or a data path
    (folder of label folders, CSV or JSONL with `text`/`label` columns). Returns the data and
    the sequence length to use (the recipe's `data.max_length`, else `max_length`, else 128)."""
    from edgekd.recipe import load_recipe

    if value.endswith((".yaml", ".yml")):
        recipe = load_recipe(value)
        return load_task_data(recipe.data), max_length or recipe.data.max_length
    cfg = DataConfig(path=value, max_length=max_length or 128)
    return load_task_data(cfg), cfg.max_length


def load_text_data(cfg: DataConfig) -> TaskData:
    """Plain text for a language model: the source's texts (labels ignored), split into train /
    validation / test by the fractions unless the source has its own splits. Labels are empty;
    every example's label is 0."""
    path = resolve_path(cfg.path)
    rows_by_split = read_source(path, cfg.text_column, None)
    if set(rows_by_split) == {"all"}:
        rows_by_split = split_rows([(text, None) for text, _ in rows_by_split["all"]],
                                   cfg.split.validation, cfg.split.test, cfg.split.seed)
    rows_by_split.setdefault("validation", [])
    for split in ("train", "test"):
        if not rows_by_split.get(split):
            raise EdgekdError(f"data {path}: the {split} split is empty (too few texts?)")

    def examples(split: str) -> list[Example]:
        return [Example(text, 0) for text, _ in rows_by_split[split]]

    return TaskData([], examples("train"), examples("validation"), examples("test"))


def chunk_texts(tokenizer, texts: list[str], max_length: int, min_tokens: int = 8) -> list[str]:
    """Cut each text into pieces of at most `max_length` tokens (special tokens the tokenizer
    adds included), at token boundaries found through the offset mapping, so re-tokenizing a
    piece gives back (almost always exactly) its tokens. Pieces under `min_tokens` are dropped;
    a piece may start with the space that belongs to its first word."""
    room = max(2, max_length - tokenizer.num_special_tokens_to_add())
    pieces = []
    encoded = tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=True)
    for text, offsets in zip(texts, encoded["offset_mapping"]):
        for start in range(0, len(offsets), room):
            span = offsets[start:start + room]
            if len(span) >= min_tokens:
                # from the end of the previous token (a leading space stays with its word) to
                # the end of the last, so the piece re-tokenizes into the same tokens
                begin = offsets[start - 1][1] if start else 0
                end = span[-1][1] if start + room < len(offsets) else len(text)
                pieces.append(text[begin:end])
    return [p for p in pieces if p.strip()]
