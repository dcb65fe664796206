"""Which student artifact to ship: per target setting, the fastest one within the accuracy budget.

The budget is how much accuracy a user will give up against the teacher (the recipe's
`report.accuracy_budget`, a fraction: 0.01 = one point). Among the student artifacts measured in
a setting (target, threads, batch size, sequence length) whose accuracy is at least the
teacher's minus the budget, the one with the lowest p50 is recommended. When none is within the
budget, the most accurate student is named instead and the reason says so.

A causal LM has no accuracy: its budget is what exporting may cost in perplexity (the recipe's
`report.perplexity_budget`, a fraction: 0.05 = an artifact's perplexity at most 1.05 x the
PyTorch student's). Among the student artifacts that generated in a setting (target, threads,
prompt lengths, new tokens) within that budget, the one with the lowest TPOT p50 (time per
output token) is recommended (`recommend_generation`).
"""

from __future__ import annotations

from typing import Any

from edgekd.report.rows import (
    Entry, fmt_setting, is_generative, is_ok, latency, setting, teacher_for)

DEFAULT_BUDGET = 0.01
DEFAULT_PERPLEXITY_BUDGET = 0.05


def recommend(report: dict[str, Any], budget: float = DEFAULT_BUDGET,
              perplexity_budget: float | None = None) -> list[dict[str, Any]]:
    """One recommendation per measured setting with a teacher: {setting, label, entry, teacher,
    within_budget, why}, in the report's entry order. A causal LM's setting is judged by
    `recommend_generation` with `perplexity_budget` (default: the report's, else 5%)."""
    if perplexity_budget is None:
        perplexity_budget = report.get("perplexity_budget")
    if perplexity_budget is None:
        perplexity_budget = DEFAULT_PERPLEXITY_BUDGET
    entries = [e for e in report.get("entries", []) if is_ok(e)]
    out, seen = [], set()
    for first in entries:
        where = setting(first)
        if where in seen:
            continue
        seen.add(where)
        if is_generative(first):
            pick = recommend_generation(entries, where, perplexity_budget)
            if pick:
                out.append(pick)
            continue
        students = [e for e in entries if e.get("role") == "student" and setting(e) == where
                    and e.get("accuracy") is not None and latency(e)]
        teacher = teacher_for(students[0], entries) if students else None
        if teacher is None or teacher.get("accuracy") is None:
            continue
        floor = teacher["accuracy"] - budget
        within = [e for e in students if e["accuracy"] >= floor - 1e-12]
        if within:
            pick = min(within, key=latency)
            why = (f"the fastest of {len(within)} student artifacts within {100 * budget:g} "
                   f"point(s) of the teacher's accuracy ({100 * teacher['accuracy']:.2f}%)")
        else:
            pick = max(students, key=lambda e: (e["accuracy"], -latency(e)))
            why = (f"no student artifact is within {100 * budget:g} point(s) of the teacher's "
                   f"accuracy; this is the most accurate")
        out.append({"setting": where, "label": fmt_setting(pick), "entry": pick,
                    "teacher": teacher, "within_budget": bool(within), "why": why})
    return out


def student_reference_perplexity(entries: list[Entry], where: tuple) -> float | None:
    """The PyTorch student's perplexity (its metrics.json), preferring the entry measured in
    `where`: what the export of the student is allowed to cost against."""
    from edgekd.report.generation import perplexity

    students = [e for e in entries if e.get("role") == "student" and e.get("format") == "pytorch"
                and perplexity(e) is not None]
    students.sort(key=lambda e: setting(e) != where)
    return perplexity(students[0]) if students else None


def recommend_generation(entries: list[Entry], where: tuple,
                         budget: float = DEFAULT_PERPLEXITY_BUDGET) -> dict[str, Any] | None:
    """The causal-LM recommendation in setting `where`: the student artifact with the lowest
    TPOT p50 whose perplexity is at most (1 + budget) x the PyTorch student's; None without a
    teacher or a student there."""
    from edgekd.report.generation import perplexity

    students = [e for e in entries if e.get("role") == "student" and is_generative(e)
                and setting(e) == where and latency(e)]
    teacher = teacher_for(students[0], entries) if students else None
    if teacher is None:
        return None
    scored = [e for e in students if perplexity(e) is not None]
    reference = student_reference_perplexity(entries, where)
    source = "the PyTorch student's"
    if reference is None and scored:  # no PyTorch student scored: budget against the best one
        reference, source = min(perplexity(e) for e in scored), "the best student artifact's"
    ceiling = None if reference is None else reference * (1 + budget)
    within = [e for e in scored if ceiling is not None and perplexity(e) <= ceiling * (1 + 1e-12)]
    if within:
        pick = min(within, key=latency)
        why = (f"the fastest (TPOT p50) of {len(within)} student artifacts whose perplexity is "
               f"within {100 * budget:g}% of {source} ({reference:.2f}, ceiling {ceiling:.2f})")
    elif scored:
        pick = min(scored, key=lambda e: (perplexity(e), latency(e)))
        why = (f"no student artifact's perplexity is within {100 * budget:g}% of {source} "
               f"({reference:.2f}); this has the lowest perplexity")
    else:
        pick = min(students, key=latency)
        why = "no student artifact has a perplexity to budget against; this is the fastest (TPOT p50)"
    return {"setting": where, "label": fmt_setting(pick), "entry": pick, "teacher": teacher,
            "within_budget": bool(within), "why": why}


def recommended_for(report: dict[str, Any], where: tuple | None,
                    budget: float = DEFAULT_BUDGET) -> Entry | None:
    """The recommended student artifact in setting `where` (None: the first setting)."""
    picks = recommend(report, budget)
    for pick in picks:
        if where is None or pick["setting"] == where:
            return pick["entry"]
    return None
