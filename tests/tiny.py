"""Tiny, fast stand-ins for real models and data, built inside the tests (no network).

- `make_keyword_dataset`: a folder-per-label text dataset whose label follows from keywords.
- `make_tiny_bert`: a random-init BERT sequence classifier with a WordPiece tokenizer whose
  vocabulary is exactly the dataset's words, saved with `save_pretrained`.
"""

from __future__ import annotations

import random
from pathlib import Path

LABEL_WORDS = {
    "sport": ["match", "goal", "team", "league", "coach", "score", "cup", "player"],
    "tech": ["software", "chip", "phone", "internet", "robot", "data", "laptop", "code"],
    "politics": ["election", "minister", "vote", "parliament", "party", "law", "policy", "senate"],
}
FILLER = ["the", "a", "of", "and", "today", "new", "said", "people", "year", "week", "big",
          "small", "report", "news", "city", "after", "before", "many", "few", "local"]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def vocabulary() -> list[str]:
    """Every token the generated texts can contain, special tokens first."""
    words = FILLER + [w for words in LABEL_WORDS.values() for w in words]
    return SPECIAL + sorted(set(words))


def make_text(rng: random.Random, label: str, length: int = 14) -> str:
    """A sentence of filler words with two keywords of `label` at random places."""
    words = [rng.choice(FILLER) for _ in range(length)]
    for _ in range(2):
        words.insert(rng.randrange(len(words) + 1), rng.choice(LABEL_WORDS[label]))
    return " ".join(words)


def make_keyword_dataset(folder: Path, per_label: int = 60, seed: int = 0) -> Path:
    """Write `folder/<label>/<i>.txt` files; returns `folder`."""
    rng = random.Random(seed)
    for label in LABEL_WORDS:
        (folder / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_label):
            (folder / label / f"{i:04d}.txt").write_text(make_text(rng, label) + "\n")
    return folder


def make_tiny_bert(folder: Path, num_labels: int = 3, layers: int = 2, hidden: int = 64,
                   heads: int = 2, intermediate: int = 256, seed: int = 0) -> Path:
    """Save a random-init tiny `BertForSequenceClassification` and its tokenizer in `folder`."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab_file = folder / "vocab.txt"
    vocab_file.write_text("\n".join(vocabulary()) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(vocab_file), do_lower_case=True)
    torch.manual_seed(seed)
    labels = sorted(LABEL_WORDS)[:num_labels]
    config = BertConfig(
        vocab_size=len(vocabulary()), hidden_size=hidden, num_hidden_layers=layers,
        num_attention_heads=heads, intermediate_size=intermediate, max_position_embeddings=128,
        num_labels=num_labels, id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)})
    model = BertForSequenceClassification(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
