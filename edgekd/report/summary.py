"""The terminal table that ends a run: the teacher against the best student artifact.

"Best" is defined in `best_student` (an accuracy tolerance, then speed), in the setting where
the teacher was measured first (the recipe's first target and thread count), so that the
speed-up printed is a like-for-like ratio.
"""

from __future__ import annotations

from typing import Any

from edgekd.report.rows import (
    Entry, fmt_acc, fmt_bytes, fmt_energy, fmt_mb, fmt_ms, fmt_ratio, fmt_setting, is_ok, latency, setting,
    teacher_for)

# A student artifact within this many accuracy points (fraction 0.01 = 1 point) of the best
# student accuracy counts as "as accurate"; among those the fastest wins.
ACCURACY_TOLERANCE = 0.01


def primary_setting(report: dict[str, Any]) -> tuple | None:
    """The setting of the first successfully measured teacher entry (else of any ok entry)."""
    entries = [e for e in report.get("entries", []) if is_ok(e)]
    teachers = [e for e in entries if e.get("role") == "teacher"]
    chosen = teachers or entries
    return setting(chosen[0]) if chosen else None


def best_student(report: dict[str, Any]) -> Entry | None:
    """The best student artifact of a report, or None when no student was measured.

    Rule: among the student entries with status "ok" in the primary setting, take those whose
    accuracy is within 1 point of the best student accuracy (entries without an accuracy only
    count when no student has one), and return the one with the lowest p50 latency.
    """
    where = primary_setting(report)
    students = [e for e in report.get("entries", [])
                if e.get("role") == "student" and is_ok(e) and setting(e) == where]
    if not students:
        return None
    scored = [e for e in students if e.get("accuracy") is not None]
    if scored:
        top = max(e["accuracy"] for e in scored)
        students = [e for e in scored if e["accuracy"] >= top - ACCURACY_TOLERANCE - 1e-12]
    return min(students, key=lambda e: latency(e) or float("inf"))


def summary_rows(report: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(metric, teacher, best student, student vs teacher) rows; empty when either is missing."""
    student = best_student(report)
    teacher = teacher_for(student, report.get("entries", [])) if student else None
    if student is None or teacher is None:
        return []

    def ratio(a, b):
        return fmt_ratio(a / b) if a and b else "—"

    acc_t, acc_s = teacher.get("accuracy"), student.get("accuracy")
    diff = "—" if acc_t is None or acc_s is None else f"{100 * (acc_s - acc_t):+.2f} points"
    mem_t, mem_s = teacher.get("peak_memory_mb"), student.get("peak_memory_mb")
    e_t, e_s = teacher.get("energy_j"), student.get("energy_j")
    return [
        ("artifact", teacher["name"], student["name"], ""),
        ("accuracy", fmt_acc(acc_t), fmt_acc(acc_s), diff),
        ("p50 latency", fmt_ms(latency(teacher)), fmt_ms(latency(student)),
         f"{ratio(latency(teacher), latency(student))} speed-up"),
        ("p99 latency", fmt_ms(latency(teacher, "p99")), fmt_ms(latency(student, "p99")),
         f"{ratio(latency(teacher, 'p99'), latency(student, 'p99'))} speed-up"),
        ("size", fmt_bytes(teacher.get("size_bytes")), fmt_bytes(student.get("size_bytes")),
         f"{ratio(teacher.get('size_bytes'), student.get('size_bytes'))} smaller"),
        ("peak memory", fmt_mb(mem_t), fmt_mb(mem_s), f"{ratio(mem_t, mem_s)} less"),
        ("energy / inference", fmt_energy(teacher), fmt_energy(student),
         f"{ratio(e_t, e_s)} less" if e_t and e_s else "—"),
    ]


def summary_table(report: dict[str, Any]):
    """A `rich.table.Table`: teacher vs best student artifact — accuracy, p50/p99 latency, size,
    peak memory, energy, with the speed-up and size ratios."""
    from rich.table import Table

    rows = summary_rows(report)
    student = best_student(report)
    where = f" ({fmt_setting(student)})" if student else ""
    table = Table(title=f"Teacher vs best student{where}")
    for column in ("", "teacher", "best student", "student vs teacher"):
        # fold, not ellipsis: artifact names are the point of the table
        table.add_column(column, justify="left" if not column else "right", overflow="fold")
    if not rows:
        table.add_row("no teacher and student measured in the same setting", "—", "—", "—")
    for row in rows:
        table.add_row(*row)
    return table


def print_summary(report: dict[str, Any], console=None) -> None:
    """Print `summary_table(report)` to `console` (a rich Console; stdout by default)."""
    from rich.console import Console

    (console or Console()).print(summary_table(report))
