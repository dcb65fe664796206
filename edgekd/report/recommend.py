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


def perplexity_cost(entry: Entry, reference: float | None) -> float | None:
    """What exporting cost in perplexity: the entry's perplexity / its reference's. The
    reference is the PyTorch source's perplexity on the same texts when the export recorded it
    (`metrics.source_perplexity`: the held-out sets of metrics.json and export.json may differ),
    else `reference` (the PyTorch student's)."""
    from edgekd.report.generation import perplexity

    value = perplexity(entry)
    ref = (entry.get("metrics") or {}).get("source_perplexity") or reference
    return value / ref if value is not None and ref else None


def recommend_generation(entries: list[Entry], where: tuple,
                         budget: float = DEFAULT_PERPLEXITY_BUDGET) -> dict[str, Any] | None:
    """The causal-LM recommendation in setting `where`: the student artifact with the lowest
    TPOT p50 whose perplexity is at most (1 + budget) x its reference's (`perplexity_cost`);
    None without a teacher or a student there."""
    from edgekd.report.generation import perplexity

    students = [e for e in entries if e.get("role") == "student" and is_generative(e)
                and setting(e) == where and latency(e)]
    teacher = teacher_for(students[0], entries) if students else None
    if teacher is None:
        return None
    reference = student_reference_perplexity(entries, where)
    source = f"the PyTorch student's ({reference:.2f})" if reference else ""
    if reference is None:  # no PyTorch student scored: budget against the best artifact
        reference = min((perplexity(e) for e in students if perplexity(e) is not None), default=None)
        source = f"the best student artifact's ({reference:.2f})" if reference else ""
    cost = {id(e): perplexity_cost(e, reference) for e in students}
    if any((e.get("metrics") or {}).get("source_perplexity") for e in students):
        source = "its PyTorch source's on the same texts" + (f", else {source}" if source else "")
    scored = [e for e in students if cost[id(e)] is not None]
    within = [e for e in scored if cost[id(e)] <= 1 + budget + 1e-12]
    if within:
        pick = min(within, key=latency)
        why = (f"the fastest (TPOT p50) of {len(within)} student artifacts whose perplexity is "
               f"within {100 * budget:g}% of {source}")
    elif scored:
        pick = min(scored, key=lambda e: (cost[id(e)], latency(e)))
        why = (f"no student artifact's perplexity is within {100 * budget:g}% of {source}; "
               "this one's is the closest")
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
