"""Task metrics: accuracy and macro-F1, from logits or from a model."""

from __future__ import annotations

import numpy as np


def classification_metrics(logits: np.ndarray, labels, num_labels: int | None = None) -> dict:
    """Accuracy and macro-F1 (the unweighted mean of each class's F1; a class absent from both
    predictions and labels is left out of the mean)."""
    labels = np.asarray(labels)
    preds = np.asarray(logits).argmax(axis=-1)
    n = len(labels)
    if n == 0:
        return {"accuracy": None, "macro_f1": None, "n": 0}
    num_labels = num_labels or int(max(labels.max(), preds.max()) + 1)
    f1s = []
    for c in range(num_labels):
        tp = int(np.sum((preds == c) & (labels == c)))
        fp = int(np.sum((preds == c) & (labels != c)))
        fn = int(np.sum((preds != c) & (labels == c)))
        if tp + fp + fn == 0:
            continue
        f1s.append(2 * tp / (2 * tp + fp + fn))
    return {"accuracy": float(np.mean(preds == labels)), "macro_f1": float(np.mean(f1s)), "n": n}


def evaluate_model(model, tokenizer, examples, max_length: int, batch_size: int = 32,
                   progress: str | None = None) -> dict:
    """Run `model` on `examples` (a list of `Example`) and score it."""
    from edgekd.distillation.dataset import EncodedDataset
    from edgekd.distillation.teacher_cache import predict_logits

    dataset = EncodedDataset(tokenizer, [e.text for e in examples], [e.label for e in examples],
                             max_length)
    logits = predict_logits(model, dataset, batch_size, tokenizer.pad_token_id or 0, progress)
    return classification_metrics(logits, dataset.labels, model.config.num_labels)
