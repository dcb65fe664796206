"""Session fixtures for the pruning tests: the teacher tokenizers (trained once)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tiny_pruning.py

from tiny_pruning import RARE, byte_bpe_tokenizer, sentences, wordpiece_tokenizer  # noqa: E402


@pytest.fixture(scope="session")
def teacher_texts() -> list[str]:
    """What the teacher tokenizers are trained on: common sentences plus rare words."""
    return sentences(300, seed=1) + [RARE] * 5


@pytest.fixture(scope="session")
def wordpiece(teacher_texts):
    return wordpiece_tokenizer(teacher_texts)


@pytest.fixture(scope="session")
def byte_bpe(teacher_texts):
    return byte_bpe_tokenizer(teacher_texts)
