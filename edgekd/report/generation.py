"""The numbers of a causal LM's `generate` entries, shared by every view of a report.

A generate entry (benchmarks/generation.py) holds, per prompt length, the time to first token
(TTFT: prefill + first argmax) and the time per output token (TPOT: one decode step); its
`latency_ms` is TPOT pooled over the lengths and `throughput_per_s` the decode tokens/s. Quality
is perplexity on held-out text and greedy-token agreement with the PyTorch source (`metrics`).
Entries are grouped by where and how they generated: (target, threads, prompt lengths, new
tokens); a ratio between two entries is only taken inside one such group.
"""

from __future__ import annotations

from edgekd.report.rows import (
    Entry, fmt_bytes, fmt_mb, fmt_ms, is_estimate, is_generative, is_ok, latency, setting)

GENERATION_FIXED_COLUMNS = ("artifact", "format", "precision", "size")


def prompt_lengths(entry: Entry) -> list[int]:
    """The prompt lengths the entry generated from, shortest first."""
    generation = entry.get("generation") or {}
    lengths = generation.get("prompt_lengths") or [p["prompt_len"] for p in generation.get("prompts", [])]
    return sorted(int(n) for n in lengths)


def prompt_record(entry: Entry, length: int) -> dict | None:
    """The `generation.prompts` item of one prompt length (None when not measured)."""
    for item in (entry.get("generation") or {}).get("prompts", []):
        if int(item.get("prompt_len", -1)) == int(length):
            return item
    return None


def ttft(entry: Entry, length: int, stat: str = "p50") -> float | None:
    """Time to first token (ms) at one prompt length."""
    value = ((prompt_record(entry, length) or {}).get("ttft_ms") or {}).get(stat)
    return float(value) if value is not None else None


def ttft_repeats(entry: Entry, length: int) -> tuple[list[list[float]], bool]:
    """The TTFT samples of each repeat (fresh process) at one prompt length, and whether the
    entry had per-repeat generation records at all (else its pooled samples are one repeat)."""
    reps = [(prompt_record(rep, length) or {}).get("ttft_samples_ms") or []
            for rep in entry.get("repeats") or []]
    if reps and all(reps):
        return reps, True
    samples = (prompt_record(entry, length) or {}).get("ttft_samples_ms") or []
    return ([samples] if samples else []), False


def tpot(entry: Entry, stat: str = "p50") -> float | None:
    """Time per output token (ms), pooled over the prompt lengths."""
    return latency(entry, stat)


def decode_rate(entry: Entry) -> float | None:
    """Decode tokens per second: 1 / TPOT p50 (pooled over repeats and prompt lengths), so the
    rate and the TPOT column agree."""
    value = tpot(entry)
    return 1000.0 / value if value else None


def prefill_rate(entry: Entry, length: int | None = None) -> float | None:
    """Prefill tokens per second at `length` (default: the longest prompt)."""
    lengths = prompt_lengths(entry)
    if not lengths:
        return None
    value = (prompt_record(entry, length or lengths[-1]) or {}).get("prefill_tokens_per_s")
    return float(value) if value else None


def perplexity(entry: Entry) -> float | None:
    """Perplexity on held-out text (export.json's metrics, or the model's metrics.json)."""
    value = (entry.get("metrics") or {}).get("perplexity")
    return float(value) if value is not None else None


def greedy_agreement(entry: Entry) -> float | None:
    """Share of greedy tokens equal to the reference's: the PyTorch source for an artifact,
    the teacher for the PyTorch student (its metrics.json)."""
    value = (entry.get("metrics") or {}).get("greedy_agreement")
    if value is None:
        value = (entry.get("parity") or {}).get("token_agreement")
    return float(value) if value is not None else None


def generation_groups(entries: list[Entry]) -> dict[tuple, list[Entry]]:
    """The successfully measured LM entries grouped by setting (target, threads, prompt
    lengths, new tokens), in report order."""
    groups: dict[tuple, list[Entry]] = {}
    for entry in entries:
        if is_ok(entry) and is_generative(entry):
            groups.setdefault(setting(entry), []).append(entry)
    return groups


# -- table (Markdown, HTML and the terminal show the same cells) -------------------------------

def generation_columns(lengths: list[int]) -> tuple[str, ...]:
    """The generation table's header for a group's prompt lengths."""
    longest = lengths[-1] if lengths else "?"
    return (*GENERATION_FIXED_COLUMNS, *(f"TTFT p50 @{n}" for n in lengths), "TPOT p50",
            "TPOT p90", "TPOT p99", "decode tok/s", f"prefill tok/s @{longest}", "GFLOP/s", "peak memory",
            "energy / token", "perplexity", "greedy agr.")


def generation_cells(entry: Entry, lengths: list[int]) -> list[str]:
    """One row of the generation table (plain text, in `generation_columns` order)."""
    return [entry["name"], str(entry.get("format") or "—"), str(entry.get("precision") or "—"),
            fmt_bytes(entry.get("size_bytes")), *(fmt_ms(ttft(entry, n)) for n in lengths),
            fmt_ms(tpot(entry)), fmt_ms(tpot(entry, "p90")), fmt_ms(tpot(entry, "p99")),
            fmt_rate(decode_rate(entry)), fmt_rate(prefill_rate(entry)),
            fmt_number(entry.get("gflop_per_s")), fmt_mb(entry.get("peak_memory_mb")), fmt_energy_per_token(entry),
            fmt_perplexity_cell(entry), fmt_share(greedy_agreement(entry))]


def fmt_perplexity_cell(entry: Entry) -> str:
    """The perplexity, and its change against the source's on the same texts when the export
    recorded it (`metrics.source_perplexity`), e.g. "12.41 (+0.3%)"."""
    value, source = perplexity(entry), (entry.get("metrics") or {}).get("source_perplexity")
    if value is None or not source:
        return fmt_ppl(value)
    return f"{fmt_ppl(value)} ({100 * (value / source - 1):+.1f}%)"


def fmt_rate(value: float | None) -> str:
    return "—" if not value else f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def fmt_number(value: float | None) -> str:
    """Three significant digits (a tiny test model's GFLOP is 0.000123), whole above 100."""
    return "—" if not value else f"{value:.3g}" if value < 100 else f"{value:.0f}"


def fmt_ppl(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}" if value < 1000 else f"{value:.0f}"


def fmt_share(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def fmt_energy_per_token(entry: Entry) -> str:
    """Energy per generated token with its method; an estimate is marked "≈ … (estimate)"."""
    value = entry.get("energy_j")
    if value is None:
        return "—"
    number = f"{value * 1e3:.3g} mJ" if value < 1 else f"{value:.3g} J"
    method = str(entry.get("energy_method") or "unknown method")
    if is_estimate(entry):
        return f"≈ {number} (estimate) [{method.removeprefix('estimate:')}]"
    return f"{number} [{method}]"


def generation_note() -> str:
    """The table's footnote: what each column measures."""
    return ("TTFT: time to first token (prefill + first token) per prompt length; TPOT: time per "
            "output token (one decode step), pooled over the prompt lengths; decode tok/s = "
            "1 / TPOT p50; perplexity (change against the PyTorch source's on the same texts); "
            "GFLOP/s: operations of one decode step (from the model's config) / "
            "TPOT p50; greedy agr.: greedy tokens equal to the PyTorch source's (for the "
            "PyTorch student: the teacher's). Energy is per generated token, with its method; "
            "≈ marks an estimate.")
