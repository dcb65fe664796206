"""Tokenized examples for training, with the teacher's cached logits riding along."""

from __future__ import annotations

import torch

from edgekd.distillation.losses import IGNORE_INDEX
from edgekd.tasks.text_classification import INPUT_NAMES


class EncodedDataset(torch.utils.data.Dataset):
    """Tokenized texts (unpadded), their labels (-100 for unlabeled) and, once the teacher cache
    is filled, the teacher's logits for each example."""

    def __init__(self, tokenizer, texts: list[str], labels: list[int], max_length: int):
        self.encodings = tokenizer(list(texts), truncation=True, max_length=max_length)
        self.labels = list(labels)
        self.teacher_logits = None  # numpy [N, C] when cached

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        item = {key: values[i] for key, values in self.encodings.items()}
        item["labels"] = self.labels[i]
        if self.teacher_logits is not None:
            item["teacher_logits"] = self.teacher_logits[i]
        return item


def collate(features: list[dict], pad_token_id: int = 0) -> dict[str, torch.Tensor]:
    """Pad to the longest example in the batch (cheaper than padding everything to max_length)."""
    longest = max(len(f["input_ids"]) for f in features)
    batch: dict[str, torch.Tensor] = {}
    for key in INPUT_NAMES:
        if key in features[0]:
            pad = pad_token_id if key == "input_ids" else 0
            batch[key] = torch.tensor([list(f[key]) + [pad] * (longest - len(f[key])) for f in features])
    batch["labels"] = torch.tensor([f["labels"] for f in features], dtype=torch.long)
    if "teacher_logits" in features[0]:
        batch["teacher_logits"] = torch.tensor([list(f["teacher_logits"]) for f in features],
                                               dtype=torch.float32)
    return batch


def training_examples(data) -> tuple[list[str], list[int]]:
    """Texts and labels of the train split followed by the unlabeled texts (label -100)."""
    texts = [e.text for e in data.train] + list(data.unlabeled)
    labels = [e.label for e in data.train] + [IGNORE_INDEX] * len(data.unlabeled)
    return texts, labels
