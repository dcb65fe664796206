"""report.html: one self-contained page (inline CSS and SVG, nothing fetched at view time).

Per measurement setting: the comparison table, accuracy against p50 latency with the Pareto
frontier and the teacher highlighted, latency with p50–p99 whiskers, size and peak memory, and
energy where measured (estimates hatched and labelled). A tiny inline script records JavaScript
errors in `data-errors` on <body>, so a headless browser test can prove the page loads cleanly.
"""

from __future__ import annotations

from html import escape
from typing import Any

from edgekd.report import plots
from edgekd.report.markdown import (MAIN_COLUMNS, environment_lines, row_cells,
                                    target_environment_lines)
from edgekd.report.rows import (
    comparison_rows, failed_entries, fmt_bytes, fmt_energy, fmt_mb, fmt_ms, fmt_setting,
    is_estimate, latency, pareto_front, setting)

CSS = """
body{font-family:system-ui,sans-serif;margin:24px auto;max-width:1240px;color:#111827;padding:0 16px}
h1{font-size:1.5em}h2{margin-top:1.8em;border-bottom:1px solid #e5e7eb;padding-bottom:4px}
table{border-collapse:collapse;margin:12px 0;font-size:13px}
th,td{border:1px solid #e5e7eb;padding:4px 8px;text-align:right;white-space:nowrap}
.scroll{overflow-x:auto}th{background:#f3f4f6}
td:first-child,th:first-child{text-align:left}tr.teacher td{font-weight:700;background:#f9fafb}
.estimate{color:#92400e;background:#fef3c7;border-radius:3px;padding:0 3px;font-style:italic}
.plots{display:flex;flex-wrap:wrap;gap:16px}.plot{border:1px solid #e5e7eb;border-radius:6px;background:#fff}
.note{color:#4b5563;font-size:13px}.answer table{font-size:15px}.failed td{color:#991b1b;text-align:left;white-space:normal}
"""

# Counts uncaught errors; the test reads data-errors and data-ready from the dumped DOM.
SCRIPT = """
window.__edgekdErrors = 0;
window.addEventListener('error', function () { window.__edgekdErrors += 1; });
window.addEventListener('load', function () {
  document.body.setAttribute('data-errors', String(window.__edgekdErrors));
  document.body.setAttribute('data-plots', String(document.querySelectorAll('svg.plot').length));
  document.body.setAttribute('data-ready', '1');
});
"""


def html_table(header, rows: list[list[str]], row_classes: list[str] | None = None,
               cls: str = "") -> str:
    """An HTML table; cells are escaped; "≈ … (estimate)" cells get the estimate style."""
    def td(value):
        text = escape(str(value))
        return f'<td><span class="estimate">{text}</span></td>' if "(estimate)" in text else f"<td>{text}</td>"

    row_classes = row_classes or [""] * len(rows)
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(f'<tr class="{c}">' + "".join(td(v) for v in row) + "</tr>"
                   for row, c in zip(rows, row_classes))
    return (f'<div class="scroll"><table class="{cls}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{body}</tbody></table></div>')


def setting_section(rows: list[dict[str, Any]]) -> str:
    """Table and plots for the rows of one measurement setting."""
    entries = [r["entry"] for r in rows]
    title = fmt_setting(entries[0])
    out = [f"<h2>{escape(title)}</h2>",
           html_table(MAIN_COLUMNS, [row_cells(r) for r in rows],
                      ["teacher" if e.get("role") == "teacher" else "" for e in entries], "main"),
           '<p class="note">Retention, speed-up and size ratio are relative to the teacher in the '
           'same setting (speed-up = teacher p50 / artifact p50). Energy marked ≈ is an estimate.</p>',
           '<div class="plots">']
    scored = [e for e in entries if e.get("accuracy") is not None and latency(e)]
    if scored:
        points = [{"x": latency(e), "y": 100 * e["accuracy"], "label": e["name"], "fmt": e.get("format"),
                   "teacher": e.get("role") == "teacher"} for e in scored]
        front = pareto_front([(p["x"], p["y"]) for p in points])
        out.append(plots.scatter(points, front, f"Accuracy vs p50 latency — {title}"))
    out.append(plots.whiskers(
        [{"label": e["name"], "p50": latency(e), "p90": latency(e, "p90"), "p99": latency(e, "p99"),
          "teacher": e.get("role") == "teacher"} for e in entries], f"Latency per artifact — {title}"))
    sized = [e for e in entries if e.get("size_bytes")]
    if sized:
        out.append(plots.bars([{"label": e["name"], "value": e["size_bytes"] / 1e6,
                                "text": fmt_bytes(e["size_bytes"]), "teacher": e.get("role") == "teacher"}
                               for e in sized], "Model size", "MB on disk"))
    mem = [e for e in entries if e.get("peak_memory_mb")]
    if mem:
        out.append(plots.bars([{"label": e["name"], "value": e["peak_memory_mb"],
                                "text": fmt_mb(e["peak_memory_mb"]), "teacher": e.get("role") == "teacher"}
                               for e in mem], "Peak memory", "MB, process peak RSS"))
    energy = [e for e in entries if e.get("energy_j")]
    if energy:
        out.append(plots.bars([{"label": e["name"], "value": e["energy_j"], "text": fmt_energy(e),
                                "teacher": e.get("role") == "teacher", "estimate": is_estimate(e)}
                               for e in energy], "Energy per inference",
                              "joules; hatched = estimate, not measured"))
    out.append("</div>")
    return "".join(out)


def generation_section(entries: list[dict[str, Any]]) -> str:
    """A causal LM's setting: the generation table, TPOT whiskers, TTFT and decode-rate bars,
    size, peak memory and energy per token."""
    from edgekd.report.generation import (decode_rate, fmt_energy_per_token, fmt_rate,
                                          generation_cells, generation_columns, generation_note,
                                          prompt_lengths, ttft)

    lengths = prompt_lengths(entries[0])
    title = fmt_setting(entries[0])

    def teacher(e):
        return e.get("role") == "teacher"

    out = [f"<h2>Generation: {escape(title)}</h2>",
           html_table(generation_columns(lengths), [generation_cells(e, lengths) for e in entries],
                      ["teacher" if teacher(e) else "" for e in entries], "generation"),
           f'<p class="note">{escape(generation_note())}</p>', '<div class="plots">',
           plots.whiskers([{"label": e["name"], "p50": latency(e), "p90": latency(e, "p90"),
                            "p99": latency(e, "p99"), "teacher": teacher(e)} for e in entries],
                          f"Time per output token (TPOT) — {title}")]
    longest = lengths[-1]
    timed = [e for e in entries if ttft(e, longest)]
    if timed:
        out.append(plots.bars([{"label": e["name"], "value": ttft(e, longest),
                                "text": fmt_ms(ttft(e, longest)), "teacher": teacher(e)}
                               for e in timed], f"Time to first token @{longest}", "ms, p50"))
    rated = [e for e in entries if decode_rate(e)]
    if rated:
        out.append(plots.bars([{"label": e["name"], "value": decode_rate(e),
                                "text": fmt_rate(decode_rate(e)), "teacher": teacher(e)}
                               for e in rated], "Decode speed", "tokens/s, higher is faster"))
    for key, what, unit, text in (("size_bytes", "Model size", "MB on disk", fmt_bytes),
                                  ("peak_memory_mb", "Peak memory", "MB, process peak RSS", fmt_mb)):
        shown = [e for e in entries if e.get(key)]
        if shown:
            scale = 1e6 if key == "size_bytes" else 1
            out.append(plots.bars([{"label": e["name"], "value": e[key] / scale,
                                    "text": text(e[key]), "teacher": teacher(e)} for e in shown],
                                  what, unit))
    energy = [e for e in entries if e.get("energy_j")]
    if energy:
        out.append(plots.bars([{"label": e["name"], "value": e["energy_j"],
                                "text": fmt_energy_per_token(e), "teacher": teacher(e),
                                "estimate": is_estimate(e)} for e in energy],
                              "Energy per token", "joules; hatched = estimate, not measured"))
    out.append("</div>")
    return "".join(out)


def hardware_section(hardware: dict[str, Any]) -> str:
    """Target against target: the table (p50 per target, ratio to the first) and a grouped plot."""
    from edgekd.report.hardware import comparison_table

    targets = hardware["targets"]
    ref = targets[0]
    header, rows = comparison_table(hardware)
    groups = [{"label": f"{r['name']} (t{r['threads']})",
               "values": {t: (r["p50_ms"].get(t), r["p99_ms"].get(t)) for t in targets}}
              for r in hardware["rows"] if any(r["p50_ms"].values())]
    out = ["<h2>Hardware comparison</h2>", html_table(header, rows, cls="hardware"),
           f'<p class="note">Ratio = p50 on the target / p50 on {escape(ref)} (below 1× is faster).</p>']
    if groups:
        out.append(plots.grouped_bars(groups, targets, "p50 latency, target against target"))
    return "".join(out)


def answer_section(report: dict[str, Any]) -> str:
    """The first screen: teacher against the recommended student artifact, and why."""
    from edgekd.report.summary import budget_note, summary_rows, summary_title, summary_why

    rows = summary_rows(report)
    if not rows:
        return ""
    note = summary_why(report) + budget_note(report, code=False)
    return (f'<section class="answer"><h2>{escape(summary_title(report))}</h2>'
            + html_table(("", "teacher", "recommended student", "student vs teacher"),
                         [list(r) for r in rows], cls="answer")
            + f'<p class="note">{escape(note)}</p></section>')


def render_html(report: dict[str, Any], hardware: dict[str, Any] | None = None,
                title: str | None = None) -> str:
    """The whole report.html page; `hardware` (from hardware.compare_targets) adds its section."""
    title = title or f"edgekd report: {report.get('run') or 'benchmark'}"
    entries = report.get("entries", [])
    groups: dict[tuple, list] = {}
    for row in comparison_rows(entries):
        groups.setdefault(setting(row["entry"]), []).append(row)
    body = [f"<h1>{escape(title)}</h1>",
            f'<p class="note">created {escape(str(report.get("created") or ""))}</p>',
            answer_section(report)]
    from edgekd.report.generation import generation_groups

    generation = generation_groups(entries)
    body += [generation_section(lm_entries) for lm_entries in generation.values()]
    if not groups and not generation and entries:
        body.append("<p>No artifact was measured successfully.</p>")
    body += [setting_section(rows) for rows in groups.values()]
    failed = failed_entries(entries)
    if failed:
        body += ["<h2>Failed artifacts</h2>",
                 html_table(("artifact", "target", "error"),
                            [[e.get("name"), e.get("target") or "—", e.get("error") or "unknown error"]
                             for e in failed], ["failed"] * len(failed), "failed")]
    if hardware and len(hardware.get("targets", [])) > 1:
        body.append(hardware_section(hardware))
    env = report.get("environment")
    if env and env.get("targets"):
        items = "".join(f"<li>{escape(line[2:].replace('**', ''))}</li>"
                        for target, machine in env["targets"].items()
                        for line in target_environment_lines(target, machine))
        body += ["<h2>Targets (as each target's runner described its machine)</h2>",
                 f"<ul class=\"targets\">{items}</ul>"]
    if env:
        items = "".join(f"<li>{escape(line[2:])}</li>" for line in environment_lines(env))
        body += ["<h2>Environment (the host that built this report)</h2>", f"<ul>{items}</ul>"]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{escape(title)}</title><style>{CSS}</style><script>{SCRIPT}</script></head>"
            f"<body>{''.join(body)}</body></html>\n")


def render_hardware_html(hardware: dict[str, Any]) -> str:
    """A page holding only the hardware comparison of several runs, with each target's machine."""
    runs = ", ".join(str(r) for r in hardware.get("runs", []))
    title = f"edgekd hardware comparison: {runs}"
    machines = []
    for label, env in hardware.get("environments", {}).items():
        cpu = env.get("cpu") or {}
        machines.append([label, env.get("run") or "—", env.get("host") or "—", cpu.get("model") or "—",
                         cpu.get("cores") or "—", f"{env.get('runtime') or '—'} {env.get('runtime_version') or ''}"])
    body = [f"<h1>{escape(title)}</h1>", hardware_section(hardware), "<h2>Targets</h2>",
            html_table(("target", "run", "host", "CPU", "cores", "runtime"), machines, cls="targets")]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{escape(title)}</title><style>{CSS}</style><script>{SCRIPT}</script></head>"
            f"<body>{''.join(body)}</body></html>\n")
