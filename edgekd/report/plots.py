"""Hand-written inline SVG plots for report.html: no JavaScript library, nothing fetched at view time.

Each function returns one `<svg>` element as text. Every mark carries a `<title>` so hovering
shows the exact number; class names (`teacher`, `pareto`, `estimate`) let CSS and tests find them.
"""

from __future__ import annotations

import math
from html import escape

FORMAT_COLORS = {"pytorch": "#4b5563", "onnx": "#2563eb", "openvino": "#7c3aed", "tflite": "#ea580c"}
SERIES_COLORS = ("#2563eb", "#ea580c", "#059669", "#7c3aed", "#db2777", "#ca8a04")
BOLD = ' font-weight="700"'
FONT = 'font-family="system-ui, sans-serif" font-size="12"'


def color_for(fmt: str | None) -> str:
    return FORMAT_COLORS.get(fmt or "", "#0f766e")


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About `count` round tick values covering [lo, hi] (1, 2, 2.5, 5 × 10^k steps)."""
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(count, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    start = math.floor(lo / step) * step
    ticks, value = [], start
    while value <= hi + step * 1e-9:
        ticks.append(round(value, 10))
        value += step
    return ticks


def _fmt_tick(value: float) -> str:
    return f"{value:g}"


def _svg_open(width: int, height: int, label: str, cls: str) -> str:
    return (f'<svg class="plot {cls}" role="img" aria-label="{escape(label)}" width="{width}" '
            f'height="{height}" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg" {FONT}>')


def scatter(points: list[dict], front: list[int], title: str, width: int = 820,
            height: int = 420, x_label: str = "p50 latency", x_unit: str = "ms",
            x_hint: str = "left is faster") -> str:
    """Accuracy (%, y) against p50 latency (ms, x) — or another cost `x_label` in `x_unit` —
    one dot per artifact. `points` hold x, y, label, fmt and teacher (bool); `front` indexes the
    Pareto-optimal points, joined by a line. Only the teacher and the points on the front get a
    text label (artifacts often share an accuracy, and their labels would pile up); every dot
    has a hover title."""
    left, right, top, bottom = 60, 150, 30, 50
    xs, ys = [p["x"] for p in points], [p["y"] for p in points]
    log_x = min(xs) > 0 and max(xs) / min(xs) > 20  # wide latency ranges read better on a log axis
    tx = (lambda v: math.log10(v)) if log_x else (lambda v: v)
    if log_x:
        x_lo, x_hi = math.floor(tx(min(xs))), math.ceil(tx(max(xs)))
        x_ticks = list(range(int(x_lo), int(x_hi) + 1))
    else:
        x_ticks = nice_ticks(0, max(xs) * 1.08)
        x_lo, x_hi = x_ticks[0], x_ticks[-1]
    y_ticks = nice_ticks(max(0.0, min(ys) - 2), min(100.0, max(ys) + 2), 5)
    y_lo, y_hi = y_ticks[0], y_ticks[-1]
    pw, ph = width - left - right, height - top - bottom

    def px(v):
        return left + (tx(v) - x_lo) / ((x_hi - x_lo) or 1) * pw

    def py(v):
        return top + ph - (v - y_lo) / ((y_hi - y_lo) or 1) * ph

    out = [_svg_open(width, height, title, "scatter"),
           f'<text x="{left}" y="18" font-weight="600">{escape(title)}</text>']
    for t in x_ticks:
        x = left + (t - x_lo) / ((x_hi - x_lo) or 1) * pw
        label = _fmt_tick(10 ** t) if log_x else _fmt_tick(t)
        out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + ph}" stroke="#e5e7eb"/>'
                   f'<text x="{x:.1f}" y="{top + ph + 16}" text-anchor="middle">{label}</text>')
    for t in y_ticks:
        y = py(t)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}" stroke="#e5e7eb"/>'
                   f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt_tick(t)}</text>')
    out.append(f'<text x="{left + pw / 2}" y="{height - 10}" text-anchor="middle">'
               f'{escape(x_label)} ({escape(x_unit)}{", log scale" if log_x else ""}) — '
               f'{escape(x_hint)}</text>'
               f'<text transform="translate(16 {top + ph / 2}) rotate(-90)" text-anchor="middle">'
               f'accuracy (%)</text>')
    if len(front) > 1:
        path = " ".join(f"{px(points[i]['x']):.1f},{py(points[i]['y']):.1f}" for i in front)
        out.append(f'<polyline class="pareto" points="{path}" fill="none" stroke="#16a34a" '
                   f'stroke-width="2" stroke-dasharray="6 4"><title>Pareto frontier</title></polyline>')
    placed: list[tuple[float, float, float]] = []   # (x0, x1, baseline y) of labels drawn
    for i in sorted(range(len(points)), key=lambda k: (not points[k].get("teacher"), -points[k]["y"])):
        p = points[i]
        x, y = px(p["x"]), py(p["y"])
        tip = escape(f"{p['label']}: {p['y']:.2f}% at {p['x']:.3g} {x_unit}")
        cls = "point teacher" if p.get("teacher") else "point"
        if i in front:
            cls += " on-front"
        radius = 8 if p.get("teacher") else 5
        ring = ' stroke="#111827" stroke-width="2.5"' if p.get("teacher") else ' stroke="#fff"'
        out.append(f'<circle class="{cls}" cx="{x:.1f}" cy="{y:.1f}" r="{radius}" '
                   f'fill="{color_for(p.get("fmt"))}"{ring}><title>{tip}</title></circle>')
        if i not in front and not p.get("teacher"):
            continue  # the hover title names it
        name = p["label"] + (" ★ teacher" if p.get("teacher") else "")
        lx, ly, anchor = _place_label(x, y + 4, len(name) * 6.3, left + pw, placed)
        out.append(f'<text class="point-label" x="{lx:.1f}" y="{ly:.1f}" font-size="11" '
                   f'text-anchor="{anchor}"{BOLD if p.get("teacher") else ""}>{escape(name)}</text>')
    out.append(_legend_formats(width - right + 20, top, {p.get("fmt") for p in points}))
    out.append("</svg>")
    return "".join(out)


def _place_label(x: float, y: float, width: float, right_edge: float,
                 placed: list[tuple[float, float, float]]) -> tuple[float, float, str]:
    """Put a point's label right of it (left of it near the right edge), moved up or down in
    13 px steps until it overlaps no label already placed; records the label in `placed`."""
    if x + 10 + width > right_edge:
        x0, x1, lx, anchor = x - 10 - width, x - 10, x - 10, "end"
    else:
        x0, x1, lx, anchor = x + 10, x + 10 + width, x + 10, "start"
    for shift in (0, 13, -13, 26, -26, 39, -39, 52, -52):
        ly = y + shift
        if not any(a < x1 and x0 < b and abs(ly - yb) < 12 for a, b, yb in placed):
            break
    placed.append((x0, x1, ly))
    return lx, ly, anchor


def _legend_formats(x: int, y: int, formats: set) -> str:
    parts, row = [], 0
    for fmt in [f for f in FORMAT_COLORS if f in formats] + sorted(f for f in formats - set(FORMAT_COLORS) if f):
        cy = y + 14 + row * 18
        parts.append(f'<circle cx="{x}" cy="{cy}" r="5" fill="{color_for(fmt)}"/>'
                     f'<text x="{x + 10}" y="{cy + 4}">{escape(fmt)}</text>')
        row += 1
    cy = y + 14 + row * 18
    parts.append(f'<line x1="{x - 6}" y1="{cy}" x2="{x + 6}" y2="{cy}" stroke="#16a34a" '
                 f'stroke-width="2" stroke-dasharray="4 2"/><text x="{x + 10}" y="{cy + 4}">Pareto frontier</text>')
    return "".join(parts)


def _linear_x_axis(hi: float, left: float, plot_width: float):
    """Ticks from 0 to past `hi`, the value -> x-pixel function, and the plot width."""
    ticks = nice_ticks(0, hi)

    def px(v):
        return left + v / ticks[-1] * plot_width

    return ticks, px, plot_width


def _x_grid(ticks, px, top: float, base: float) -> str:
    """Vertical grid lines at the ticks with their labels under the plot."""
    return "".join(f'<line x1="{px(t):.1f}" y1="{top}" x2="{px(t):.1f}" y2="{base}" stroke="#e5e7eb"/>'
                   f'<text x="{px(t):.1f}" y="{base + 16}" text-anchor="middle">{_fmt_tick(t)}</text>'
                   for t in ticks)


def whiskers(rows: list[dict], title: str, width: int = 760) -> str:
    """Latency per artifact: a bar to p50 with a whisker from p50 to p99 (tick at p90).
    `rows` hold label, p50, p90, p99 and teacher (bool)."""
    left, right, top, row_h = 230, 40, 34, 26
    height = top + row_h * len(rows) + 40
    hi = max(r["p99"] or r["p50"] for r in rows) * 1.05
    ticks, px, pw = _linear_x_axis(hi, left, width - left - right)

    out = [_svg_open(width, height, title, "whiskers"),
           f'<text x="10" y="18" font-weight="600">{escape(title)}</text>']
    base = top + row_h * len(rows)
    out.append(_x_grid(ticks, px, top, base))
    out.append(f'<text x="{left + pw / 2}" y="{height - 6}" text-anchor="middle">latency (ms): '
               f'bar = p50, whisker = p50–p99, tick = p90</text>')
    for i, r in enumerate(rows):
        y = top + i * row_h + row_h / 2
        cls = "lat teacher" if r.get("teacher") else "lat"
        fill = "#111827" if r.get("teacher") else "#60a5fa"
        tip = escape(f"{r['label']}: p50 {r['p50']:.3g} ms, p90 {r['p90'] or 0:.3g} ms, p99 {r['p99'] or 0:.3g} ms")
        out.append(f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end"'
                   f'{BOLD if r.get("teacher") else ""}>{escape(r["label"])}</text>'
                   f'<g class="{cls}"><title>{tip}</title>'
                   f'<rect x="{left}" y="{y - 8:.1f}" width="{px(r["p50"]) - left:.1f}" height="16" fill="{fill}"/>')
        if r.get("p99"):
            out.append(f'<line x1="{px(r["p50"]):.1f}" y1="{y:.1f}" x2="{px(r["p99"]):.1f}" y2="{y:.1f}" '
                       f'stroke="#111827" stroke-width="1.5"/><line x1="{px(r["p99"]):.1f}" y1="{y - 6:.1f}" '
                       f'x2="{px(r["p99"]):.1f}" y2="{y + 6:.1f}" stroke="#111827" stroke-width="1.5"/>')
        if r.get("p90"):
            out.append(f'<line x1="{px(r["p90"]):.1f}" y1="{y - 4:.1f}" x2="{px(r["p90"]):.1f}" '
                       f'y2="{y + 4:.1f}" stroke="#111827"/>')
        out.append("</g>")
    out.append("</svg>")
    return "".join(out)


def bars(rows: list[dict], title: str, unit: str, width: int = 370) -> str:
    """Horizontal bars; `rows` hold label, value, text (shown at the bar's end), teacher and
    estimate (bool: drawn hatched and pale, text already says "estimate")."""
    left = 16 + int(6.6 * max(len(r["label"]) for r in rows))
    right = 12 + int(6.2 * max(len(r["text"]) for r in rows))
    width = max(width, left + right + 120)
    top, row_h = 34, 24
    height = top + row_h * len(rows) + 34
    hi = max(r["value"] for r in rows) or 1.0
    pw = width - left - right
    out = [_svg_open(width, height, title, "bars"),
           '<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
           'patternTransform="rotate(45)"><rect width="6" height="6" fill="#fde68a"/>'
           '<line x1="0" y1="0" x2="0" y2="6" stroke="#d97706" stroke-width="2"/></pattern></defs>',
           f'<text x="10" y="18" font-weight="600">{escape(title)}</text>']
    for i, r in enumerate(rows):
        y = top + i * row_h
        w = r["value"] / hi * pw
        fill = "url(#hatch)" if r.get("estimate") else "#111827" if r.get("teacher") else "#34d399"
        cls = "bar" + (" teacher" if r.get("teacher") else "") + (" estimate" if r.get("estimate") else "")
        label = r["label"]
        out.append(f'<text x="{left - 6}" y="{y + 15}" text-anchor="end">{escape(label)}</text>'
                   f'<rect class="{cls}" x="{left}" y="{y + 3}" width="{max(w, 1):.1f}" height="16" '
                   f'fill="{fill}"><title>{escape(r["label"] + ": " + r["text"])}</title></rect>'
                   f'<text x="{left + w + 4:.1f}" y="{y + 15}" font-size="11">{escape(r["text"])}</text>')
    out.append(f'<text x="{left}" y="{height - 8}">{escape(unit)}</text></svg>')
    return "".join(out)


def grouped_bars(groups: list[dict], series: list[str], title: str, width: int = 760) -> str:
    """Target against target: per artifact one bar per target at p50 with a p99 whisker.
    `groups` hold label and values {series: (p50, p99)}."""
    left, right, top, bar_h = 230, 40, 34 + 18 * ((len(series) + 2) // 3), 14
    group_h = bar_h * len(series) + 12
    height = top + group_h * len(groups) + 40
    hi = max((v[1] or v[0]) for g in groups for v in g["values"].values() if v[0]) * 1.05
    ticks, px, pw = _linear_x_axis(hi, left, width - left - right)

    out = [_svg_open(width, height, title, "hardware"),
           f'<text x="10" y="18" font-weight="600">{escape(title)}</text>']
    for k, name in enumerate(series):
        lx, ly = 10 + (k % 3) * 250, 36 + (k // 3) * 18
        out.append(f'<rect x="{lx}" y="{ly - 10}" width="12" height="12" fill="{SERIES_COLORS[k % 6]}"/>'
                   f'<text x="{lx + 16}" y="{ly}">{escape(name)}</text>')
    base = top + group_h * len(groups)
    out.append(_x_grid(ticks, px, top, base))
    out.append(f'<text x="{left + pw / 2}" y="{height - 6}" text-anchor="middle">p50 latency (ms), '
               f'whisker to p99</text>')
    for i, g in enumerate(groups):
        y0 = top + i * group_h + 6
        out.append(f'<text x="{left - 8}" y="{y0 + group_h / 2:.1f}" text-anchor="end">{escape(g["label"])}</text>')
        for k, name in enumerate(series):
            p50, p99 = g["values"].get(name, (None, None))
            if not p50:
                continue
            y = y0 + k * bar_h
            out.append(f'<rect class="hw-bar" x="{left}" y="{y}" width="{px(p50) - left:.1f}" '
                       f'height="{bar_h - 2}" fill="{SERIES_COLORS[k % 6]}"><title>'
                       f'{escape(g["label"])} on {escape(name)}: p50 {p50:.3g} ms</title></rect>')
            if p99:
                out.append(f'<line x1="{px(p50):.1f}" y1="{y + 6}" x2="{px(p99):.1f}" y2="{y + 6}" stroke="#111827"/>')
    out.append("</svg>")
    return "".join(out)
