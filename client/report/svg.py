"""A :class:`~.gantt.Chart` as SVG text, written by hand (no dependency): for `-o FILE.svg` and the HTML page.

Each task bar is one ``<rect class="task">`` (``task failed`` / ``task canceled`` when it ended so)
with the task's name as its tooltip; bands are stacked ``<path class="busy">`` steps over a grey
``<rect class="idle">`` the height of the node's cores; failures in bands are red marks
(``<path class="fail">``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from html import escape

from ..formats import plural
from .gantt import (
    CANCELED_COLOUR,
    FAILED_COLOUR,
    FLAG_CANCELED,
    FLAG_FAILED,
    IDLE_COLOUR,
    Band,
    Chart,
)

WIDTH = 1000
LEFT = 120
RIGHT = 20
TOP = 34


def _num(x: float) -> str:
    return f"{x:.2f}".rstrip("0").rstrip(".")


def nice_step(span: float, ticks: int = 8) -> float:
    """A round tick step (1, 2 or 5 x 10^k seconds) giving about ``ticks`` ticks over ``span``."""
    raw = max(span, 1e-9) / ticks
    base = 10 ** math.floor(math.log10(raw))
    return next(m * base for m in (1, 2, 5, 10) if m * base >= raw)


def fmt_tick(t: float, step: float) -> str:
    if step >= 60 and t >= 60:
        m, s = divmod(round(t), 60)
        return f"{m // 60}h{m % 60:02d}m" if m >= 60 else f"{m}m{s:02d}s" if s else f"{m}m"
    digits = max(0, -math.floor(math.log10(step))) if step < 1 else 0
    return f"{t:.{digits}f}s"


def render(chart: Chart, title: str = "") -> str:
    plot_w = WIDTH - LEFT - RIGHT
    xs = plot_w / chart.span

    def x(t: float) -> float:
        return LEFT + max(0.0, t) * xs

    out: list[str] = []
    if chart.mode == "band":
        band_h = max(40.0, min(120.0, 640 / max(1, len(chart.bands))))
        body_h = band_h * len(chart.bands)
    else:
        row_h = max(3.0, min(18.0, 640 / max(1, len(chart.rows))))
        body_h = row_h * len(chart.rows)
    legend_y = TOP + body_h + 44
    legend_rows = math.ceil((len(chart.jobs) + 1) / 5)
    height = legend_y + 20 * legend_rows + 10
    out.append(f'<svg xmlns="http://www.w3.org/2000/svg" class="pj-gantt" width="{WIDTH}" height="{_num(height)}" '
               f'viewBox="0 0 {WIDTH} {_num(height)}" font-family="sans-serif" font-size="11">')
    out.append('<rect width="100%" height="100%" fill="#ffffff"/>')
    head = title or f"{plural(chart.tasks, 'task')}, {chart.failed} failed"
    out.append(f'<text x="{LEFT}" y="20" font-size="14" font-weight="bold">{escape(head)}</text>')
    if chart.mode == "band":
        _bands(out, chart, x, band_h)
    else:
        _rows(out, chart, x, row_h)
    # time axis
    axis_y = TOP + body_h
    step = nice_step(chart.span)
    out.append(f'<line x1="{LEFT}" y1="{_num(axis_y)}" x2="{WIDTH - RIGHT}" y2="{_num(axis_y)}" stroke="#333"/>')
    t = 0.0
    while t <= chart.span + 1e-9:
        tx = _num(x(t))
        out.append(f'<line x1="{tx}" y1="{_num(axis_y)}" x2="{tx}" y2="{_num(axis_y + 4)}" stroke="#333"/>')
        out.append(f'<text x="{tx}" y="{_num(axis_y + 16)}" text-anchor="middle">{fmt_tick(t, step)}</text>')
        t += step
    out.append(f'<text x="{WIDTH - RIGHT}" y="{_num(axis_y + 30)}" text-anchor="end">time since the first '
               f'submission</text>')
    # legend
    entries = [(c, name) for c, name in zip(chart.colours, chart.jobs, strict=True)]
    entries.append((FAILED_COLOUR, "FAILED"))
    for i, (colour, name) in enumerate(entries):
        lx, ly = LEFT + (i % 5) * 170, legend_y + 20 * (i // 5)
        if colour == FAILED_COLOUR:
            out.append(f'<rect x="{lx}" y="{ly - 9}" width="12" height="10" fill="#ffffff" stroke="{FAILED_COLOUR}" '
                       'stroke-width="2"/>')
        else:
            out.append(f'<rect class="legend" x="{lx}" y="{ly - 9}" width="12" height="10" fill="{colour}"/>')
        out.append(f'<text x="{lx + 16}" y="{ly}">{escape(name[:24])}</text>')
    out.append("</svg>")
    return "\n".join(out)


def _rows(out: list[str], chart: Chart, x: Callable[[float], float], row_h: float) -> None:
    right = WIDTH - RIGHT
    if chart.mode == "core":
        for n, (node, first, count) in enumerate(chart.node_rows):
            y = TOP + first * row_h
            shade = IDLE_COLOUR if n % 2 == 0 else "#e6e6e6"
            out.append(f'<rect class="idle" x="{LEFT}" y="{_num(y)}" width="{right - LEFT}" '
                       f'height="{_num(count * row_h)}" fill="{shade}"/>')
            out.append(f'<text x="{LEFT - 6}" y="{_num(y + count * row_h / 2 + 4)}" text-anchor="end">'
                       f'{escape(node)} ({count})</text>')
    else:
        out.append(f'<rect class="idle" x="{LEFT}" y="{TOP}" width="{right - LEFT}" '
                   f'height="{_num(len(chart.rows) * row_h)}" fill="{IDLE_COLOUR}"/>')
        for i, name in enumerate(chart.rows):
            out.append(f'<text x="{LEFT - 6}" y="{_num(TOP + i * row_h + row_h / 2 + 4)}" text-anchor="end">'
                       f'{escape(name[:18])}</text>')
    gap = 1.0 if row_h >= 6 else 0.0
    for b in chart.bars:
        x0 = x(b.start)
        w = max(x(b.end) - x0, 0.8)
        y = TOP + b.row * row_h + gap / 2
        cls, extra = "task", ""
        if b.flag == FLAG_FAILED:
            cls, extra = "task failed", f' stroke="{FAILED_COLOUR}" stroke-width="2"'
        elif b.flag == FLAG_CANCELED:
            cls, extra = "task canceled", f' stroke="{CANCELED_COLOUR}" stroke-width="1" stroke-dasharray="2,1"'
        tip = f"<title>{escape(b.label)}</title>" if b.label else ""
        out.append(f'<rect class="{cls}" x="{_num(x0)}" y="{_num(y)}" width="{_num(w)}" height="{_num(row_h - gap)}" '
                   f'fill="{chart.colours[b.job]}"{extra}>{tip}</rect>')


def _bands(out: list[str], chart: Chart, x: Callable[[float], float], band_h: float) -> None:
    inner = band_h - 14
    for n, band in enumerate(chart.bands):
        top = TOP + n * band_h + 10
        base = top + inner
        out.append(f'<rect class="idle" x="{LEFT}" y="{_num(top)}" width="{WIDTH - RIGHT - LEFT}" '
                   f'height="{_num(inner)}" fill="{IDLE_COLOUR}"/>')
        out.append(f'<text x="{LEFT - 6}" y="{_num(top + inner / 2)}" text-anchor="end">{escape(band.label)}</text>')
        out.append(f'<text x="{LEFT - 6}" y="{_num(top + inner / 2 + 13)}" text-anchor="end" fill="#666">'
                   f'{band.cores} cores</text>')
        scale = inner / max(band.cores, 1)
        _stack(out, chart, band, x, base, scale)
        for b, count in enumerate(band.failed):
            if count:
                cx = x((b + 0.5) * chart.bin_s)
                out.append(f'<path class="fail" d="M{_num(cx - 4)},{_num(top - 9)} h8 l-4,7 z" fill="{FAILED_COLOUR}">'
                           f'<title>{count} failed</title></path>')


def _stack(out: list[str], chart: Chart, band: Band, x: Callable[[float], float], base: float, scale: float) -> None:
    """One step-shaped path per job, stacked in legend order."""
    bins = len(band.failed)
    below = [0.0] * bins
    for j, busy in enumerate(band.busy):
        if not any(busy):
            continue
        above = [below[b] + busy[b] for b in range(bins)]
        pts = []
        for b in range(bins):
            y = _num(base - above[b] * scale)
            pts.append(f"L{_num(x(b * chart.bin_s))},{y}L{_num(x((b + 1) * chart.bin_s))},{y}")
        back = []
        for b in reversed(range(bins)):
            y = _num(base - below[b] * scale)
            back.append(f"L{_num(x((b + 1) * chart.bin_s))},{y}L{_num(x(b * chart.bin_s))},{y}")
        d = f"M{_num(x(0))},{_num(base - below[0] * scale)}" + "".join(pts) + "".join(back) + "Z"
        out.append(f'<path class="busy" d="{d}" fill="{chart.colours[j]}"/>')
        below = above
