"""sweep.md and sweep.html: the student artifacts of every sweep variant against each other."""

from __future__ import annotations

from html import escape

from edgekd.report import plots
from edgekd.report.markdown import table
from edgekd.report.rows import fmt_acc, fmt_bytes, fmt_ms


def _rows(document: dict) -> list[list[str]]:
    fronts = {k: set(v) for k, v in document["pareto"].items()}
    rows = []
    for v in document["variants"]:
        shape = v["student"]
        width = shape["width"] or {}
        described = (f"layers {shape['from_teacher']}" if shape["from_teacher"] else "") + \
            "".join(f", {k} {width[k]}" for k in ("hidden", "heads", "ffn") if width.get(k)) + \
            (", trimmed vocabulary" if shape["vocabulary_trim"] else "") + \
            ("" if v["distilled"] else ", no distillation (alpha 0)")
        for a in sorted(v["artifacts"], key=lambda a: a["p50_ms"] or 0):
            key = f"{v['name']}/{a['name']}"
            marks = "".join(m for m, cost in (("L", "latency"), ("S", "size")) if key in fronts[cost])
            rows.append([v["name"], described.lstrip(", "), a["name"], fmt_acc(a["accuracy"]),
                         fmt_ms(a["p50_ms"]), fmt_bytes(a["size_bytes"]),
                         f"{a['gflop']:.2f}" if a["gflop"] else "—", marks])
    return rows


HEADER = ("variant", "student", "artifact", "accuracy", "p50", "size", "GFLOP", "Pareto")


def _baselines(document: dict) -> list[list[str]]:
    return [[b["distilled"], b["baseline"], fmt_acc(b["accuracy_distilled"]),
             fmt_acc(b["accuracy_baseline"]),
             "—" if b["gain_points"] is None else f"{b['gain_points']:+.2f} points"]
            for b in document["baselines"]]


def sweep_markdown(document: dict) -> str:
    """The sweep as Markdown: every student artifact (Pareto: L = accuracy-latency front,
    S = accuracy-size front) and what distillation adds over the no-distillation twins."""
    out = [f"# edgekd sweep: {document['sweep']}", "",
           "Every student artifact of every variant, in the setting its teacher was measured in. "
           "Pareto: L = on the accuracy-latency front, S = on the accuracy-size front.", "",
           table(HEADER, _rows(document)), ""]
    if document["baselines"]:
        out += ["## What distillation adds", "",
                "Best artifact accuracy of each distilled variant against the same student shape, "
                "initialisation and epochs trained on the labels alone (alpha 0).", "",
                table(("distilled", "no-distillation twin", "accuracy (KD)",
                       "accuracy (labels only)", "difference"), _baselines(document)), ""]
    return "\n".join(out)


def sweep_html(document: dict) -> str:
    """The sweep as one self-contained page with the two Pareto plots."""
    points = [a for v in document["variants"] for a in v["artifacts"]
              if a["accuracy"] is not None and a["p50_ms"] and a["size_bytes"]]
    plot_html = ""
    if points:
        for cost, key, unit, scale, label in (("latency", "p50_ms", "ms", 1, "p50 latency"),
                                              ("size", "size_bytes", "MB", 1e-6, "size on disk")):
            dots = [{"x": p[key] * scale, "y": 100 * p["accuracy"], "fmt": p["format"],
                     "label": f"{p['variant']}/{p['name']}"} for p in points]
            front_names = document["pareto"][cost]
            front = sorted((i for i, d in enumerate(dots) if d["label"] in front_names),
                           key=lambda i: dots[i]["x"])
            plot_html += plots.scatter(dots, front, f"Accuracy vs {label}", x_label=label,
                                       x_unit=unit, x_hint="left is better")
    rows = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>"
                   for row in _rows(document))
    head = "".join(f"<th>{escape(h)}</th>" for h in HEADER)
    base = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>"
                   for row in _baselines(document))
    base_table = (f"<h2>What distillation adds</h2><table><tr><th>distilled</th><th>twin "
                  f"(labels only)</th><th>accuracy (KD)</th><th>accuracy (labels)</th>"
                  f"<th>difference</th></tr>{base}</table>") if base else ""
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>edgekd sweep "
            f"{escape(document['sweep'])}</title><style>body{{font-family:system-ui,sans-serif;"
            f"max-width:1240px;margin:24px auto;padding:0 16px}}table{{border-collapse:collapse;"
            f"font-size:13px}}td,th{{border:1px solid #e5e7eb;padding:4px 8px}}</style></head>"
            f"<body><h1>edgekd sweep: {escape(document['sweep'])}</h1>{plot_html}"
            f"<h2>Every student artifact</h2><div style='overflow-x:auto'><table><tr>{head}</tr>"
            f"{rows}</table></div>{base_table}</body></html>")
