"""Inline SVG charts for the gate report: no JavaScript, no fonts or images to fetch, so the report is
one self-contained file that renders offline and in a CI artifact viewer."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

BEFORE_COLOUR = "#8a96a3"
AFTER_COLOUR = "#c0392b"
FONT = "font-family='system-ui, sans-serif' font-size='12'"


def grouped_bars(rows: Sequence[Mapping[str, Any]], *, title: str) -> str:
    """Horizontal before/after bars per row (keys: label, before, after, before_low/high, after_low/high),
    rates on a 0-100% axis, with 95% interval whiskers."""
    label_w, plot_w, row_h, top = 220, 380, 36, 52
    height = top + row_h * max(len(rows), 1) + 30
    width = label_w + plot_w + 70
    parts = [_open(width, height, title),
             f"<text x='0' y='16' {FONT} font-weight='600'>{escape(title)}</text>",
             _legend(label_w, 36)]
    for tick in range(0, 101, 25):
        x = label_w + plot_w * tick / 100
        parts.append(f"<line x1='{x:.1f}' y1='{top - 4}' x2='{x:.1f}' y2='{height - 24}' stroke='#e3e6ea'/>")
        parts.append(f"<text x='{x:.1f}' y='{height - 10}' {FONT} text-anchor='middle' fill='#555'>"
                     f"{tick}%</text>")
    for i, row in enumerate(rows):
        y = top + i * row_h
        parts.append(f"<text x='{label_w - 8}' y='{y + 19}' {FONT} text-anchor='end'>"
                     f"{escape(str(row['label']))}</text>")
        for j, (key, colour) in enumerate((("before", BEFORE_COLOUR), ("after", AFTER_COLOUR))):
            parts.append(_bar(row, key, colour, label_w, plot_w, y + 3 + j * 14))
    if not rows:
        parts.append(f"<text x='{label_w}' y='{top + 18}' {FONT} fill='#555'>no data</text>")
    parts.append("</svg>")
    return "".join(parts)


def _bar(row: Mapping[str, Any], key: str, colour: str, x0: int, plot_w: int, y: float) -> str:
    value = row.get(key)
    if value is None:
        return f"<text x='{x0 + 4}' y='{y + 10}' {FONT} fill='#555'>n/a</text>"
    w = plot_w * value
    out = [f"<rect x='{x0}' y='{y:.1f}' width='{w:.1f}' height='12' fill='{colour}'>"
           f"<title>{key}: {value * 100:.1f}%</title></rect>"]
    low, high = row.get(f"{key}_low"), row.get(f"{key}_high")
    if low is not None and high is not None:
        xl, xh, ym = x0 + plot_w * low, x0 + plot_w * high, y + 6
        out.append(f"<path d='M{xl:.1f} {ym:.1f}H{xh:.1f}M{xl:.1f} {ym - 4:.1f}V{ym + 4:.1f}"
                   f"M{xh:.1f} {ym - 4:.1f}V{ym + 4:.1f}' stroke='#222' stroke-width='1.2' fill='none'/>")
    out.append(f"<text x='{x0 + plot_w + 6}' y='{y + 10}' {FONT} fill='#333'>{value * 100:.0f}%</text>")
    return "".join(out)


def heat_map(cells: Sequence[Mapping[str, Any]], *, title: str) -> str:
    """Family x category grid of the ASR change in points (red = worse, blue = better)."""
    families = sorted({c["family"] for c in cells})
    categories = sorted({c["category"] for c in cells})
    by_key = {(c["family"], c["category"]): c for c in cells}
    label_w, cell_w, cell_h, top = 170, 74, 30, 92
    width = max(label_w + cell_w * max(len(categories), 1) + 10, 560)  # room for the title
    height = top + cell_h * max(len(families), 1) + 10
    parts = [_open(width, height, title),
             f"<text x='0' y='16' {FONT} font-weight='600'>{escape(title)}</text>"]
    for j, category in enumerate(categories):
        x = label_w + j * cell_w + cell_w / 2
        parts.append(f"<text transform='translate({x:.1f},{top - 6}) rotate(-35)' {FONT}>"
                     f"{escape(_short(category))}</text>")
    for i, family in enumerate(families):
        y = top + i * cell_h
        parts.append(f"<text x='{label_w - 8}' y='{y + 19}' {FONT} text-anchor='end'>{escape(family)}</text>")
        for j, category in enumerate(categories):
            x = label_w + j * cell_w
            cell = by_key.get((family, category))
            if cell is None:
                parts.append(f"<rect x='{x}' y='{y}' width='{cell_w - 2}' height='{cell_h - 2}' "
                             "fill='#f2f3f5'/>")
                continue
            diff = cell["diff"] * 100
            tip = (f"{family} / {category}: {cell['before'] * 100:.0f}% -> {cell['after'] * 100:.0f}% "
                   f"(n={cell['n']})")
            parts.append(f"<rect x='{x}' y='{y}' width='{cell_w - 2}' height='{cell_h - 2}' "
                         f"fill='{_diverging(diff)}'><title>{escape(tip)}</title></rect>")
            ink = "#fff" if abs(diff) > 45 else "#111"
            parts.append(f"<text x='{x + cell_w / 2 - 1:.1f}' y='{y + 19}' {FONT} text-anchor='middle' "
                         f"fill='{ink}'>{_whole_points(diff)}</text>")
    if not cells:
        parts.append(f"<text x='{label_w}' y='{top + 18}' {FONT} fill='#555'>"
                     "no paired harmful attempts</text>")
    parts.append("</svg>")
    return "".join(parts)


def line_chart(series: Sequence[Mapping[str, Any]], *, title: str, x_label: str = "step",
               percent: bool = False, rules: Sequence[Mapping[str, Any]] = ()) -> str:
    """One polyline (and a dot per point) per series (keys: label, colour, points: [(x, y), ...]) on
    shared axes; `percent` draws y as 0-100% of a 0-1 rate. `rules` are dashed horizontal lines (keys:
    label, y, colour), e.g. a limit. Points whose y is not a finite number are left out of the line."""
    label_w, plot_w, plot_h, top = 56, 560, 200, 44
    width, height = label_w + plot_w + 20, top + plot_h + 44
    clean = [[(float(x), float(y)) for x, y in s["points"] if _finite(y)] for s in series]
    xs = [x for pts in clean for x, _ in pts] or [0.0]
    ys = [y for pts in clean for _, y in pts] + [float(r["y"]) for r in rules]
    x0, x1 = min(xs), max(max(xs), min(xs) + 1)
    y0, y1 = (0.0, 1.0) if percent else (min(ys or [0.0]), max(ys or [1.0]))
    if percent:
        y1 = max(1.0, *ys) if ys else 1.0
    if y1 - y0 < 1e-9:
        y0, y1 = y0 - 0.5, y1 + 0.5
    def px(x: float) -> float:
        return label_w + plot_w * (x - x0) / (x1 - x0)

    def py(y: float) -> float:
        return top + plot_h * (1 - (y - y0) / (y1 - y0))

    parts = [_open(width, height, title),
             f"<text x='0' y='16' {FONT} font-weight='600'>{escape(title)}</text>"]
    for i, s in enumerate(series):  # legend
        lx = label_w + i * 150
        parts.append(f"<rect x='{lx}' y='24' width='12' height='4' fill='{s['colour']}'/>"
                     f"<text x='{lx + 16}' y='31' {FONT}>{escape(str(s['label']))}</text>")
    for k in range(5):
        y = y0 + (y1 - y0) * k / 4
        tick = f"{y * 100:.0f}%" if percent else f"{y:.3g}"
        parts.append(f"<line x1='{label_w}' y1='{py(y):.1f}' x2='{label_w + plot_w}' y2='{py(y):.1f}' "
                     f"stroke='#e3e6ea'/><text x='{label_w - 6}' y='{py(y) + 4:.1f}' {FONT} "
                     f"text-anchor='end' fill='#555'>{tick}</text>")
    for k in range(5):
        x = x0 + (x1 - x0) * k / 4
        parts.append(f"<text x='{px(x):.1f}' y='{top + plot_h + 18}' {FONT} text-anchor='middle' "
                     f"fill='#555'>{x:.4g}</text>")
    parts.append(f"<text x='{label_w + plot_w / 2:.0f}' y='{height - 6}' {FONT} text-anchor='middle' "
                 f"fill='#555'>{escape(x_label)}</text>")
    for rule in rules:
        ry = py(float(rule["y"]))
        parts.append(f"<line class='rule' x1='{label_w}' y1='{ry:.1f}' x2='{label_w + plot_w}' y2='{ry:.1f}' "
                     f"stroke='{rule['colour']}' stroke-dasharray='5 4'><title>{escape(str(rule['label']))}"
                     f"</title></line>")
    for s, pts in zip(series, clean, strict=True):
        name = escape(str(s["label"]))
        coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
        parts.append(f"<polyline data-series='{name}' points='{coords}' fill='none' stroke='{s['colour']}' "
                     "stroke-width='1.8'/>")
        for x, y in pts:
            shown = f"{y * 100:.1f}%" if percent else f"{y:.4g}"
            parts.append(f"<circle cx='{px(x):.1f}' cy='{py(y):.1f}' r='2.5' fill='{s['colour']}'>"
                         f"<title>{name}: {shown} at {x_label} {x:g}</title></circle>")
    if not any(clean):
        parts.append(f"<text x='{label_w + 8}' y='{top + 18}' {FONT} fill='#555'>no data</text>")
    parts.append("</svg>")
    return "".join(parts)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _whole_points(points: float) -> str:
    """A change in whole points, signed; one that rounds to nothing is "0", never "-0" or "+0"."""
    shown = round(points)
    return f"{shown:+d}" if shown else "0"


def _diverging(points: float) -> str:
    """White at 0, toward red for regressions and blue for improvements, saturating at 60 points."""
    t = min(abs(points) / 60, 1.0)
    target = (192, 57, 43) if points > 0 else (41, 98, 168)
    r, g, b = (round(255 + (c - 255) * t) for c in target)
    return f"#{r:02x}{g:02x}{b:02x}"


def _legend(x: int, y: int) -> str:
    return (f"<rect x='{x}' y='{y - 10}' width='12' height='12' fill='{BEFORE_COLOUR}'/>"
            f"<text x='{x + 16}' y='{y}' {FONT}>base</text>"
            f"<rect x='{x + 60}' y='{y - 10}' width='12' height='12' fill='{AFTER_COLOUR}'/>"
            f"<text x='{x + 76}' y='{y}' {FONT}>candidate</text>"
            f"<text x='{x + 150}' y='{y}' {FONT} fill='#555'>whiskers: 95% interval</text>")


def _open(width: float, height: float, title: str) -> str:
    return (f"<svg xmlns='http://www.w3.org/2000/svg' width='{width:.0f}' height='{height:.0f}' "
            f"viewBox='0 0 {width:.0f} {height:.0f}' role='img' aria-label='{escape(title)}'>")


def _short(text: str, limit: int = 22) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
