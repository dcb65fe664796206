"""The numbers every view of a report shares: teacher-relative ratios and value formatting.

Markdown, HTML and the terminal summary all show the same rows, computed here once. An
artifact is compared with the teacher measured in the *same setting* (target, threads, batch
size, sequence length): a speed-up across two machines would mean nothing.
Accuracy is a fraction in [0, 1] (as in metrics.json and export.json) and shown in percent.
A causal LM's entries (scenario "generate") have their own setting, table and numbers
(`generation.py`); the classifier's table leaves them out.
"""

from __future__ import annotations

from typing import Any

Entry = dict[str, Any]


def is_generative(entry: Entry) -> bool:
    """True for an entry measured with the runner's generate scenario (a causal LM)."""
    return entry.get("scenario") == "generate" and bool(entry.get("generation"))


def setting(entry: Entry) -> tuple:
    """Where and how an entry was measured: (target, threads, batch size, sequence length); for
    a causal LM (target, threads, prompt lengths, new tokens)."""
    if is_generative(entry):
        generation = entry["generation"]
        lengths = generation.get("prompt_lengths") or [p["prompt_len"] for p in generation.get("prompts", [])]
        return (entry.get("target"), entry.get("threads"), tuple(sorted(int(n) for n in lengths)),
                generation.get("new_tokens"))
    return (entry.get("target"), entry.get("threads"), entry.get("batch_size"), entry.get("seq_len"))


def is_ok(entry: Entry) -> bool:
    """True when the entry was measured successfully (has latency numbers)."""
    return entry.get("status", "ok") == "ok" and bool(entry.get("latency_ms"))


def latency(entry: Entry, stat: str = "p50") -> float | None:
    """One latency statistic in ms, or None when the entry has none."""
    value = (entry.get("latency_ms") or {}).get(stat)
    return float(value) if value is not None else None


def is_estimate(entry: Entry) -> bool:
    """True when the energy number is an estimate, not a measurement."""
    return str(entry.get("energy_method") or "").startswith("estimate")


def teacher_for(entry: Entry, entries: list[Entry]) -> Entry | None:
    """The teacher entry measured in the same setting, preferring the PyTorch original."""
    same = [e for e in entries if e.get("role") == "teacher" and is_ok(e) and setting(e) == setting(entry)]
    same.sort(key=lambda e: (e.get("format") != "pytorch", e.get("precision") != "fp32"))
    return same[0] if same else None


def comparison_rows(entries: list[Entry]) -> list[dict[str, Any]]:
    """One row per successfully measured entry (not a causal LM's: `generation.py`), with its
    ratios to the teacher of its setting: accuracy retention (%), speed-up (teacher p50 / p50)
    and size ratio (teacher size / size)."""
    rows = []
    for entry in entries:
        if not is_ok(entry) or is_generative(entry):
            continue
        teacher = teacher_for(entry, entries)
        row = {"entry": entry, "teacher": teacher, "retention": None, "speedup": None,
               "size_ratio": None}
        if teacher is not None:
            if entry.get("accuracy") is not None and teacher.get("accuracy"):
                row["retention"] = 100.0 * entry["accuracy"] / teacher["accuracy"]
            if latency(entry) and latency(teacher):
                row["speedup"] = latency(teacher) / latency(entry)
            if entry.get("size_bytes") and teacher.get("size_bytes"):
                row["size_ratio"] = teacher["size_bytes"] / entry["size_bytes"]
        rows.append(row)
    return rows


def failed_entries(entries: list[Entry]) -> list[Entry]:
    """Entries that failed to export or to run."""
    return [e for e in entries if e.get("status", "ok") != "ok"]


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points not dominated in (lower latency, higher accuracy), by latency."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], float("-inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


# -- formatting (shared by Markdown, HTML and the terminal) ------------------------------------

def fmt_acc(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f}%"


def fmt_ms(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.3f} ms" if value < 1 else f"{value:.2f} ms" if value < 100 else f"{value:.0f} ms"


def fmt_ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}×"


def fmt_pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}%"


def fmt_bytes(value: float | None) -> str:
    if not value:
        return "—"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if value >= scale:
            return f"{value / scale:.1f} {unit}"
    return f"{int(value)} B"


def fmt_mb(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f} MB" if value >= 100 else f"{value:.1f} MB"


def fmt_energy(entry: Entry) -> str:
    """Energy per inference with its method; estimates are marked with "≈" and "(estimate)"."""
    value = entry.get("energy_j")
    if value is None:
        return "—"
    number = f"{value * 1e3:.3g} mJ" if value < 1 else f"{value:.3g} J"
    return f"≈ {number} (estimate)" if is_estimate(entry) else number


def fmt_setting(entry: Entry) -> str:
    """A short label of the measurement setting, e.g. "local, 1 thread, b1, s128" (a causal LM:
    "local, 1 thread, prompts 64/256 tokens, 32 new tokens")."""
    threads = entry.get("threads")
    parts = [str(entry.get("target") or "—")]
    if threads is not None:
        parts.append(f"{threads} thread" + ("s" if threads != 1 else ""))
    if is_generative(entry):
        _, _, lengths, new_tokens = setting(entry)
        parts.append(f"prompts {'/'.join(str(n) for n in lengths)} tokens")
        if new_tokens is not None:
            parts.append(f"{new_tokens} new tokens")
        return ", ".join(parts)
    if entry.get("batch_size") is not None:
        parts.append(f"b{entry['batch_size']}")
    if entry.get("seq_len") is not None:
        parts.append(f"s{entry['seq_len']}")
    return ", ".join(parts)
