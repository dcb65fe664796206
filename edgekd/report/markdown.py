"""report.md: the report's tables in Markdown, fit for a pull-request comment."""

from __future__ import annotations

from typing import Any

from edgekd.report.rows import (
    comparison_rows, failed_entries, fmt_acc, fmt_bytes, fmt_energy, fmt_mb, fmt_ms, fmt_pct,
    fmt_ratio, fmt_setting, is_generative, latency, setting)

# The artifact's name says its role, format and precision; an estimated energy is marked ≈.
MAIN_COLUMNS = ("artifact", "accuracy", "retention", "p50", "p99", "speed-up", "size",
                "size ratio", "peak memory", "GFLOP/s", "energy / inference")


def cell(value: Any) -> str:
    """A Markdown table cell: pipes escaped, newlines folded, so a message cannot break the table."""
    return str(value).replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def table(header: tuple[str, ...] | list[str], rows: list[list[Any]]) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(cell(h) for h in header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def row_cells(row: dict[str, Any]) -> list[str]:
    """The main table's cells (plain text, in MAIN_COLUMNS order) for one comparison row."""
    e = row["entry"]
    rate = e.get("gflop_per_s")
    return [e["name"], fmt_acc(e.get("accuracy")),
            fmt_pct(row["retention"]), fmt_ms(latency(e)), fmt_ms(latency(e, "p99")),
            fmt_ratio(row["speedup"]), fmt_bytes(e.get("size_bytes")), fmt_ratio(row["size_ratio"]),
            fmt_mb(e.get("peak_memory_mb")), f"{rate:.1f}" if rate else "—", fmt_energy(e)]


def main_rows(report: dict[str, Any]) -> dict[tuple, list[list[str]]]:
    """The main comparison table's rows, grouped by measurement setting (in report order)."""
    groups: dict[tuple, list[list[str]]] = {}
    for row in comparison_rows(report.get("entries", [])):
        cells = row_cells(row)
        if row["entry"].get("role") == "teacher":
            cells[0] = f"**{cells[0]}** (teacher)"
        groups.setdefault(setting(row["entry"]), []).append(cells)
    return groups


def environment_lines(env: dict[str, Any]) -> list[str]:
    """The environment as a bullet list."""
    cpu = env.get("cpu") or {}
    libs = ", ".join(f"{k} {v}" for k, v in (env.get("libraries") or {}).items() if v)
    threads = ", ".join(f"{k}={v}" for k, v in (env.get("threads_env") or {}).items()) or "none set"
    edgekd = env.get("edgekd") or {}
    lines = [
        f"- CPU: {cpu.get('model') or 'unknown'} — {cpu.get('cores_physical') or '?'} physical / "
        f"{cpu.get('cores_logical') or '?'} logical cores; flags: {', '.join(cpu.get('flags') or []) or 'none'}",
        f"- memory: {fmt_mb(env.get('memory_total_mb'))}; OS: {env.get('os', '?')}; "
        f"Python {env.get('python', '?')}; host: {env.get('host', '?')}",
        f"- libraries: {libs or 'unknown'}",
        f"- thread variables: {threads}",
        f"- edgekd {edgekd.get('version', '?')} at commit {edgekd.get('commit') or 'unknown (not a git checkout)'}",
    ]
    bench = env.get("bench")
    if bench:
        lines.append("- bench settings: " + ", ".join(f"{k}={v}" for k, v in bench.items()))
    return lines


def target_environment_lines(target: str, env: dict[str, Any]) -> list[str]:
    """One target's machine, as its runner described it, as a bullet."""
    cpu = env.get("cpu") or {}
    runtimes = ", ".join(f"{k} {v}" for k, v in (env.get("runtimes") or {}).items())
    threads = ", ".join(f"{k}={v}" for k, v in (env.get("threads_env") or {}).items()) or "none set"
    return [f"- **{target}** ({env.get('host', '?')}): {cpu.get('model') or 'unknown CPU'}, "
            f"{cpu.get('cores_logical') or '?'} logical cores, flags: "
            f"{', '.join(cpu.get('flags') or []) or 'none'}; memory {fmt_mb(env.get('memory_total_mb'))}; "
            f"{env.get('os', '?')}; Python {env.get('python', '?')}; {runtimes or 'runtimes unknown'}; "
            f"thread variables: {threads}"]


def answer_markdown(report: dict[str, Any]) -> list[str]:
    """The first screen: the teacher against the recommended student artifact, and why."""
    from edgekd.report.summary import (budget_note, recommended_student, summary_rows,
                                       summary_title, summary_why)

    rows = summary_rows(report)
    if not rows:
        return []
    note = ("GFLOP: operations of one inference from the model's config; GFLOP/s: GFLOP / p50, "
            "how close a runtime comes to the hardware. Energy marked ≈ is an estimate.")
    if is_generative(recommended_student(report)):
        note = ("Ratios are taken so that above 1× the student is better: decode tokens/s "
                "student / teacher; TTFT, TPOT, size, memory and energy teacher / student. "
                "Energy marked ≈ is an estimate.")
    return [f"## {summary_title(report)}", "",
            table(("", "teacher", "recommended student", "student vs teacher"),
                  [list(r) for r in rows]), "",
            summary_why(report) + budget_note(report), "", note, ""]


def generation_markdown(report: dict[str, Any]) -> list[str]:
    """A causal LM's generation table per setting (target, threads, prompt lengths, new tokens)."""
    from edgekd.report.generation import (generation_cells, generation_columns, generation_groups,
                                          generation_note, prompt_lengths)

    out = []
    for entries in generation_groups(report.get("entries", [])).values():
        lengths = prompt_lengths(entries[0])
        rows = []
        for entry in entries:
            cells = generation_cells(entry, lengths)
            if entry.get("role") == "teacher":
                cells[0] = f"**{cells[0]}** (teacher)"
            rows.append(cells)
        out += [f"## Generation: {fmt_setting(entries[0])}", "",
                table(generation_columns(lengths), rows), ""]
    if out:
        out += [generation_note(), ""]
    return out


def render_markdown(report: dict[str, Any], hardware: dict[str, Any] | None = None) -> str:
    """The whole report.md text; `hardware` (from hardware.compare_targets) adds its section."""
    entries = report.get("entries", [])
    out = [f"# edgekd report: {report.get('run') or 'benchmark'}", ""]
    out += answer_markdown(report)
    groups = main_rows(report)
    generation = generation_markdown(report)
    out += generation
    if not groups and not generation:
        out += ["No artifact was measured successfully.", ""]
    for where, rows in groups.items():
        first = next(e for e in entries if setting(e) == where)
        out += [f"## {fmt_setting(first)}", "", table(MAIN_COLUMNS, rows), ""]
    if groups:
        out += ["Retention, speed-up and size ratio are relative to the teacher in the same setting "
                "(speed-up = teacher p50 / artifact p50). Energy marked ≈ is an estimate.", ""]
    failed = failed_entries(entries)
    if failed:
        out += ["## Failed artifacts", "",
                table(("artifact", "target", "error"),
                      [[e.get("name"), e.get("target") or "—", e.get("error") or "unknown error"]
                       for e in failed]), ""]
    if hardware and len(hardware.get("targets", [])) > 1:
        out += [hardware_markdown(hardware), ""]
    targets = (report.get("environment") or {}).get("targets") or {}
    if targets:
        out += ["## Targets (as each target's runner described its machine)", ""]
        for target, env in targets.items():
            out += target_environment_lines(target, env)
        out.append("")
    out += ["## Environment (the host that built this report)", "",
            *environment_lines(report.get("environment") or {}), ""]
    return "\n".join(out)


def hardware_markdown(hardware: dict[str, Any]) -> str:
    """The hardware comparison: one row per artifact, p50 per target and the ratio to the first."""
    from edgekd.report.hardware import comparison_table

    header, rows = comparison_table(hardware)
    reference = hardware["targets"][0]
    note = (f"Ratio = p50 on the target / p50 on {reference} (below 1× is faster). "
            f"Each column is one target; settings are matched exactly.")
    return "\n".join(["## Hardware comparison", "", table(header, rows), "", note])
