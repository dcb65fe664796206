"""The recipe's `student` section: how the student is made from the teacher (layers kept,
width pruned, vocabulary trimmed). Part of the recipe (`edgekd.recipe` re-exports these)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# How `student.from_teacher.keep` chooses layers (edgekd/distillation/lm_layers.py).
LAYER_SELECTIONS = ("block_influence", "spread")


@dataclass
class FromTeacherConfig:
    """The teacher layers the student copies: `layers`, or `keep` that many chosen by `select`
    (causal LMs, `edgekd.distillation.lm_layers`: block_influence = ShortGPT, spread = even)."""
    layers: list[int] | None = None
    keep: int | None = None
    select: str | None = None             # with keep: block_influence (default) | spread
    calibration_chunks: int = 16          # block_influence: training chunks the teacher scores

    def __post_init__(self):
        if (self.layers is None) == (self.keep is None):
            raise ValueError("student.from_teacher needs layers (a list) or keep (a count), not both")
        if self.layers is not None:
            if not self.layers:
                raise ValueError("from_teacher.layers must name at least one teacher layer")
            if len(set(self.layers)) != len(self.layers) or any(i < 0 for i in self.layers):
                raise ValueError("from_teacher.layers must be distinct, non-negative layer indices")
            if self.select is not None:
                raise ValueError("student.from_teacher.select chooses layers for keep; "
                                 "explicit layers need none")
            return
        if self.keep < 1 or self.calibration_chunks < 1:
            raise ValueError("student.from_teacher: keep and calibration_chunks must be >= 1")
        self.select = self.select or "block_influence"
        if self.select not in LAYER_SELECTIONS:
            raise ValueError(f"student.from_teacher.select must be one of "
                             f"{', '.join(LAYER_SELECTIONS)} (got '{self.select}')")

    @property
    def count(self) -> int:
        """How many teacher layers the student gets."""
        return len(self.layers) if self.layers is not None else self.keep


@dataclass
class WidthConfig:
    """Structured width pruning of the student (Minitron): each value is a size (an int >= 1)
    or a fraction of the current size (a float in (0, 1)); null keeps that dimension."""
    hidden: int | float | None = None
    heads: int | float | None = None
    ffn: int | float | None = None
    calibration_samples: int = 256        # training texts whose activations rank the channels

    def __post_init__(self):
        for name in ("hidden", "heads", "ffn"):
            value = getattr(self, name)
            if isinstance(value, float) and not 0 < value < 1:
                raise ValueError(f"student.width.{name}={value:g}: a fraction must be in (0, 1); "
                                 "give a size as an integer")
            if isinstance(value, int) and value < 1:
                raise ValueError(f"student.width.{name}={value} would leave nothing")
        if self.hidden is None and self.heads is None and self.ffn is None:
            raise ValueError("student.width names none of hidden, heads, ffn")
        if self.calibration_samples < 1:
            raise ValueError("student.width.calibration_samples must be >= 1")


@dataclass
class VocabularyConfig:
    """Vocabulary trimming: keep the tokens the training text uses (special tokens always)."""
    trim: bool = True
    budget: int | None = None             # keep at most this many tokens, most frequent first

    def __post_init__(self):
        if self.budget is not None and self.budget < 1:
            raise ValueError("student.vocabulary.budget must be >= 1 (or null for no limit)")


@dataclass
class StudentConfig:
    from_teacher: FromTeacherConfig | None = None   # copy embeddings + these layers (DistilBERT init)
    config: dict[str, Any] | None = None             # overrides of the teacher's config, random init
    model: str | None = None                          # an existing model id or folder
    width: WidthConfig | None = None                 # then prune the width (before distillation)
    vocabulary: VocabularyConfig | None = None       # then trim the vocabulary to the task's text

    def __post_init__(self):
        given = [k for k in ("from_teacher", "config", "model") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of student.from_teacher, student.config, student.model"
                             + (f" (got {', '.join(given)})" if given else ""))
