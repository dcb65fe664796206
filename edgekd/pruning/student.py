"""The recipe's `student.width` and `student.vocabulary`, applied to a student before distillation.

The Minitron order (Muralidharan et al. 2024): prune first, then distil from the teacher's
logits, so distillation repairs what pruning removed. `check_shape` rejects an impossible shape
against the teacher's config before any work starts; `shrink_student` does the work.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from edgekd.errors import EdgekdError


@dataclass
class Shrunk:
    """The shrunk student, its tokenizer, and what was done (recorded in metrics.json)."""

    model: object
    tokenizer: object
    student_to_teacher: object = None     # numpy ids map when the vocabulary was trimmed
    record: dict = field(default_factory=dict)


def resolve_width(width, config) -> dict:
    """Sizes {hidden, heads, ffn} (None = keep) from the recipe's sizes or fractions of `config`.

    Where the family derives head size from hidden/heads (BERT-like: no `head_dim` in the
    config) and only `hidden` is given, the heads are cut to what the width can hold."""
    current = {"hidden": config.hidden_size, "heads": config.num_attention_heads,
               "ffn": getattr(config, "intermediate_size", None) or getattr(config, "n_inner", None)
               or 4 * config.hidden_size}
    sizes = {}
    for name in ("hidden", "heads", "ffn"):
        value = getattr(width, name)
        if isinstance(value, float):
            value = max(1, round(value * current[name]))
        if value is not None and value > current[name]:
            raise EdgekdError(f"student.width.{name}={value} is larger than the teacher's "
                              f"{current[name]}")
        sizes[name] = value
    derived = getattr(config, "head_dim", None) is None
    if derived and sizes["hidden"] is not None:
        head_dim = current["hidden"] // current["heads"]
        if sizes["hidden"] % head_dim:
            raise EdgekdError(f"student.width.hidden={sizes['hidden']} must be a multiple of the "
                              f"head size {head_dim} ({type(config).__name__} derives head size "
                              "from hidden / heads)")
        fits = sizes["hidden"] // head_dim
        if sizes["heads"] is None:
            sizes["heads"] = min(current["heads"], fits)
        elif sizes["heads"] > fits:
            raise EdgekdError(f"student.width.heads={sizes['heads']} do not fit in hidden="
                              f"{sizes['hidden']} (at most {fits} heads of size {head_dim})")
    return sizes


def check_shape(student_cfg, teacher_config) -> None:
    """Reject a width the teacher's family cannot take, before any work starts."""
    from edgekd.pruning.layouts import LAYOUTS

    if student_cfg.width is None and student_cfg.vocabulary is None:
        return
    if teacher_config.model_type not in LAYOUTS:
        raise EdgekdError(f"student.width / student.vocabulary: pruning supports "
                          f"{', '.join(sorted(LAYOUTS))}, not {teacher_config.model_type}")
    if student_cfg.width is not None:
        resolve_width(student_cfg.width, teacher_config)


def shrink_student(student, tokenizer, student_cfg, texts: list[str], max_length: int,
                   log=print) -> Shrunk:
    """Prune the width (ranked by activations on the first `calibration_samples` texts) and trim
    the vocabulary to `texts`, as `student_cfg` asks; returns the result and its record."""
    from edgekd.pruning import (activation_importance, calibration_batches, parameter_count,
                                prune_width, trim_vocabulary)

    started = time.perf_counter()
    record = {"parameters_before": parameter_count(student)}
    mapping = None
    if student_cfg.width is not None:
        sizes = resolve_width(student_cfg.width, student.config)
        calibration = texts[:student_cfg.width.calibration_samples]
        importance = activation_importance(
            student, calibration_batches(tokenizer, calibration, max_length=max_length))
        student = prune_width(student, importance=importance, **sizes)
        record["width"] = {**{k: v for k, v in sizes.items()},
                           "calibration_samples": len(calibration), "importance": "activation (Minitron)"}
        log(f"student: width pruned to hidden {sizes['hidden']}, heads {sizes['heads']}, "
            f"ffn {sizes['ffn']} ({parameter_count(student):,} parameters)")
    if student_cfg.vocabulary is not None and student_cfg.vocabulary.trim:
        before = len(tokenizer)
        trim = trim_vocabulary(student, tokenizer, texts, budget=student_cfg.vocabulary.budget)
        student, tokenizer, mapping = trim.model, trim.tokenizer, trim.student_to_teacher
        record["vocabulary"] = {"teacher": before, "student": len(tokenizer),
                                "budget": student_cfg.vocabulary.budget}
        log(f"student: vocabulary trimmed {before:,} -> {len(tokenizer):,} tokens "
            f"({parameter_count(student):,} parameters)")
    record["parameters_after"] = parameter_count(student)
    record["time_s"] = round(time.perf_counter() - started, 2)
    return Shrunk(student, tokenizer, mapping, record)
