"""Which student artifact to ship: per target setting, the fastest one within the accuracy budget.

The budget is how much accuracy a user will give up against the teacher (the recipe's
`report.accuracy_budget`, a fraction: 0.01 = one point). Among the student artifacts measured in
a setting (target, threads, batch size, sequence length) whose accuracy is at least the
teacher's minus the budget, the one with the lowest p50 is recommended. When none is within the
budget, the most accurate student is named instead and the reason says so.
"""

from __future__ import annotations

from typing import Any

from edgekd.report.rows import Entry, fmt_setting, is_ok, latency, setting, teacher_for

DEFAULT_BUDGET = 0.01


def recommend(report: dict[str, Any], budget: float = DEFAULT_BUDGET) -> list[dict[str, Any]]:
    """One recommendation per measured setting with a teacher: {setting, label, entry, teacher,
    within_budget, why}, in the report's entry order."""
    entries = [e for e in report.get("entries", []) if is_ok(e)]
    out, seen = [], set()
    for first in entries:
        where = setting(first)
        if where in seen:
            continue
        seen.add(where)
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


def recommended_for(report: dict[str, Any], where: tuple | None,
                    budget: float = DEFAULT_BUDGET) -> Entry | None:
    """The recommended student artifact in setting `where` (None: the first setting)."""
    picks = recommend(report, budget)
    for pick in picks:
        if where is None or pick["setting"] == where:
            return pick["entry"]
    return None
