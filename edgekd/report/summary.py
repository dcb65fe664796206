"""The teacher against the recommended student artifact: the report's first screen and the
table that ends a run.

"Recommended" is defined in `recommend.py`: in the setting where the teacher was measured first
(the recipe's first target and thread count), the fastest student artifact whose accuracy is
within the recipe's accuracy budget of the teacher's — so the speed-up printed is a
like-for-like ratio and the accuracy given up is one the user agreed to. For a causal LM the
rows are perplexity, decode tokens/s, TTFT per prompt length, TPOT, size, memory and energy per
token, and the budget is on perplexity (`recommend.recommend_generation`).
"""

from __future__ import annotations

from typing import Any

from edgekd.report.recommend import DEFAULT_BUDGET, DEFAULT_PERPLEXITY_BUDGET, recommend
from edgekd.report.rows import (
    Entry, fmt_acc, fmt_bytes, fmt_energy, fmt_mb, fmt_ms, fmt_ratio, fmt_setting, is_generative,
    is_ok, latency, setting, teacher_for)


def primary_setting(report: dict[str, Any]) -> tuple | None:
    """The setting of the first successfully measured teacher entry (else of any ok entry)."""
    entries = [e for e in report.get("entries", []) if is_ok(e)]
    teachers = [e for e in entries if e.get("role") == "teacher"]
    chosen = teachers or entries
    return setting(chosen[0]) if chosen else None


def recommendation(report: dict[str, Any]) -> dict | None:
    """The recommendation (entry, teacher, why) in the primary setting, or None."""
    budget = report.get("accuracy_budget")
    where = primary_setting(report)
    for pick in recommend(report, DEFAULT_BUDGET if budget is None else budget):
        if pick["setting"] == where:
            return pick
    return None


def recommended_student(report: dict[str, Any]) -> Entry | None:
    """The recommended student artifact in the primary setting (None when none was measured)."""
    pick = recommendation(report)
    return pick["entry"] if pick else None


def summary_rows(report: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(metric, teacher, recommended student, student vs teacher) rows; empty when either is
    missing."""
    pick = recommendation(report)
    if pick is None:
        return []
    student, teacher = pick["entry"], teacher_for(pick["entry"], report.get("entries", []))
    if is_generative(student):
        return generation_summary_rows(teacher, student)

    acc_t, acc_s = teacher.get("accuracy"), student.get("accuracy")
    diff = "—" if acc_t is None or acc_s is None else f"{100 * (acc_s - acc_t):+.2f} points"
    mem_t, mem_s = teacher.get("peak_memory_mb"), student.get("peak_memory_mb")
    e_t, e_s = teacher.get("energy_j"), student.get("energy_j")
    g_t, g_s = teacher.get("gflop"), student.get("gflop")
    return [
        ("artifact", teacher["name"], student["name"], ""),
        ("accuracy", fmt_acc(acc_t), fmt_acc(acc_s), diff),
        ("p50 latency", fmt_ms(latency(teacher)), fmt_ms(latency(student)),
         _versus(latency(teacher), latency(student), "speed-up")),
        ("p99 latency", fmt_ms(latency(teacher, "p99")), fmt_ms(latency(student, "p99")),
         _versus(latency(teacher, "p99"), latency(student, "p99"), "speed-up")),
        ("size", fmt_bytes(teacher.get("size_bytes")), fmt_bytes(student.get("size_bytes")),
         _versus(teacher.get("size_bytes"), student.get("size_bytes"), "smaller")),
        ("peak memory", fmt_mb(mem_t), fmt_mb(mem_s), _versus(mem_t, mem_s, "less")),
        ("GFLOP / inference", _gflop(g_t), _gflop(g_s), _versus(g_t, g_s, "fewer")),
        ("energy / inference", fmt_energy(teacher), fmt_energy(student),
         _versus(e_t, e_s, "less")),
    ]


def _ratio(a: float | None, b: float | None) -> str:
    return fmt_ratio(a / b) if a and b else "—"


# The words for "the student is better by" and "worse by" of each comparison.
WORDS = {"speed-up": "slow-down", "faster": "slower", "smaller": "larger", "less": "more",
         "fewer": "more"}


def _versus(teacher: float | None, student: float | None, better: str) -> str:
    """The student against the teacher on a lower-is-better measure, read the right way
    round: '5.25× smaller' when it wins, '1.27× larger' (not '0.79× smaller') when it loses."""
    if not (teacher and student):
        return "—"
    if student <= teacher:
        return f"{fmt_ratio(teacher / student)} {better}"
    return f"{fmt_ratio(student / teacher)} {WORDS[better]}"


def generation_summary_rows(teacher: Entry, student: Entry) -> list[tuple[str, str, str, str]]:
    """The causal-LM rows: perplexity of both, decode tokens/s, TTFT per prompt length and
    TPOT with their ratios, size, peak memory and energy per token."""
    from edgekd.report.generation import (
        decode_rate, fmt_energy_per_token, fmt_number, fmt_ppl, fmt_rate, fmt_share, greedy_agreement,
        perplexity, prompt_lengths, ttft)

    ppl_t, ppl_s = perplexity(teacher), perplexity(student)
    dec_t, dec_s = decode_rate(teacher), decode_rate(student)
    mem_t, mem_s = teacher.get("peak_memory_mb"), student.get("peak_memory_mb")
    e_t, e_s = teacher.get("energy_j"), student.get("energy_j")
    g_t, g_s = teacher.get("gflop"), student.get("gflop")
    rows = [
        ("artifact", teacher["name"], student["name"], ""),
        ("perplexity", fmt_ppl(ppl_t), fmt_ppl(ppl_s),
         f"{_ratio(ppl_s, ppl_t)} the teacher's" if ppl_t and ppl_s else "—"),
        # the teacher's own (metrics.json: 100%, against itself) would compare nothing
        ("greedy agreement", "—", fmt_share(greedy_agreement(student)),
         "vs the teacher" if student.get("format") == "pytorch" else "vs its PyTorch source"),
        # tokens/s is higher-is-better: the arguments swap roles
        ("decode tokens/s", fmt_rate(dec_t), fmt_rate(dec_s), _versus(dec_s, dec_t, "faster")),
    ]
    for n in prompt_lengths(student):
        t, s = ttft(teacher, n), ttft(student, n)
        rows.append((f"TTFT p50 @{n} tokens", fmt_ms(t), fmt_ms(s), _versus(t, s, "faster")))
    rows += [
        ("TPOT p50", fmt_ms(latency(teacher)), fmt_ms(latency(student)),
         _versus(latency(teacher), latency(student), "faster")),
        ("size", fmt_bytes(teacher.get("size_bytes")), fmt_bytes(student.get("size_bytes")),
         _versus(teacher.get("size_bytes"), student.get("size_bytes"), "smaller")),
        ("peak memory", fmt_mb(mem_t), fmt_mb(mem_s), _versus(mem_t, mem_s, "less")),
        ("GFLOP / token", fmt_number(g_t), fmt_number(g_s),
         _versus(g_t, g_s, "fewer")),
        ("energy / token", fmt_energy_per_token(teacher), fmt_energy_per_token(student),
         _versus(e_t, e_s, "less")),
    ]
    return rows


def budget_note(report: dict[str, Any], code: bool = True) -> str:
    """The budget the recommendation applied, and where the recipe sets it ("" when none)."""
    pick = recommendation(report)
    quote = "`" if code else ""
    if pick is not None and is_generative(pick["entry"]):
        budget = report.get("perplexity_budget")
        budget = DEFAULT_PERPLEXITY_BUDGET if budget is None else budget
        return (f" Perplexity budget: an artifact's perplexity at most {1 + budget:g}× its "
                "PyTorch source's on the same held-out texts (else the PyTorch student's) "
                f"(recipe {quote}report.perplexity_budget{quote}).")
    budget = report.get("accuracy_budget")
    return (f" Accuracy budget: {100 * budget:g} point(s) (recipe "
            f"{quote}report.accuracy_budget{quote})." if budget is not None else "")


def _gflop(value: float | None) -> str:
    return f"{value:.2f}" if value else "—"


def summary_title(report: dict[str, Any]) -> str:
    """"Teacher vs recommended student (setting)"."""
    student = recommended_student(report)
    return "Teacher vs recommended student" + (f" ({fmt_setting(student)})" if student else "")


def summary_why(report: dict[str, Any]) -> str:
    """Why that artifact: the budget rule as applied."""
    pick = recommendation(report)
    return f"Recommended: {pick['entry']['name']}, {pick['why']}." if pick else ""


def summary_table(report: dict[str, Any]):
    """A `rich.table.Table`: teacher vs the recommended student artifact — accuracy, p50/p99
    latency, size, peak memory, GFLOP, energy, with the ratios; the reason as its caption."""
    from rich.table import Table

    rows = summary_rows(report)
    table = Table(title=summary_title(report), caption=summary_why(report) or None)
    for column in ("", "teacher", "recommended student", "student vs teacher"):
        # fold, not ellipsis: artifact names are the point of the table
        table.add_column(column, justify="left" if not column else "right", overflow="fold")
    if not rows:
        table.add_row("no teacher and student measured in the same setting", "—", "—", "—")
    for row in rows:
        table.add_row(*row)
    return table


def print_summary(report: dict[str, Any], console=None) -> None:
    """Print `summary_table(report)` to `console` (a rich Console; stdout by default)."""
    from edgekd.console import make_console

    (console or make_console()).print(summary_table(report))
