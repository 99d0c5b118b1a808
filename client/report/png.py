"""A :class:`~.gantt.Chart` as a PNG, drawn with matplotlib (the optional extra ``pj[report]``).

matplotlib is imported only here, through its object API (``Figure`` on the Agg canvas: no
pyplot, no display, no global state). Without it, :class:`MissingMatplotlib` says what to install.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..formats import plural
from .gantt import CANCELED_COLOUR, FAILED_COLOUR, FLAG_CANCELED, FLAG_FAILED, IDLE_COLOUR, Chart
from .svg import fmt_tick, nice_step

INSTALL = "pip install 'pj[report]'"


class MissingMatplotlib(Exception):
    """matplotlib is not installed: one line naming it and the install command."""


def _figure_class() -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingMatplotlib(f"a PNG chart needs matplotlib, which is not installed: {INSTALL} "
                                "(or write SVG: -o FILE.svg needs nothing more)") from None
    return Figure


def write_png(chart: Chart, path: Path, title: str = "") -> None:
    Figure = _figure_class()
    if chart.mode == "band":
        height = 1.6 + 0.9 * len(chart.bands)
    else:
        height = 1.6 + min(8.0, max(1.5, 0.22 * len(chart.rows)))
    fig = Figure(figsize=(10, height), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    if chart.mode == "band":
        _bands(ax, chart)
    else:
        _rows(ax, chart)
    ax.set_xlim(0, chart.span)
    step = nice_step(chart.span)
    ticks = [i * step for i in range(int(chart.span / step + 1e-9) + 1)]
    ax.set_xticks(ticks, [fmt_tick(t, step) for t in ticks])
    ax.set_xlabel("time since the first submission")
    ax.set_title(title or f"{plural(chart.tasks, 'task')}, {chart.failed} failed", loc="left", fontsize=11)
    from matplotlib.patches import Patch

    handles = [Patch(facecolor=c, label=name[:24]) for c, name in zip(chart.colours, chart.jobs, strict=True)]
    handles.append(Patch(facecolor="white", edgecolor=FAILED_COLOUR, linewidth=2, label="FAILED"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(str(path), format="png")


def _rows(ax: Any, chart: Chart) -> None:
    n = len(chart.rows)
    ax.set_ylim(n, 0)
    ax.set_facecolor("white")
    if chart.mode == "core":
        for i, (_node, first, count) in enumerate(chart.node_rows):
            ax.axhspan(first, first + count, color=IDLE_COLOUR if i % 2 == 0 else "#e6e6e6", zorder=0)
        ax.set_yticks([first + count / 2 for _, first, count in chart.node_rows],
                      [f"{node} ({count} cores)" for node, _, count in chart.node_rows])  # fmt: skip
    else:
        ax.axhspan(0, n, color=IDLE_COLOUR, zorder=0)
        ax.set_yticks([i + 0.5 for i in range(n)], [r[:18] for r in chart.rows], fontsize=8)
    groups: dict[tuple[int, int], list[tuple[float, float, int]]] = {}
    for b in chart.bars:
        groups.setdefault((b.job, b.flag), []).append((b.start, max(b.end - b.start, chart.span / 2000), b.row))
    gap = 0.1 if n <= 80 else 0.0
    for (job, flag), items in groups.items():
        by_row: dict[int, list[tuple[float, float]]] = {}
        for start, width, row in items:
            by_row.setdefault(row, []).append((start, width))
        # a thin white edge tells consecutive tasks of one job apart while bars are few enough to see it
        plain = ("white", 0.4) if len(chart.bars) <= 3000 else ("none", 0.0)
        edge, width = {FLAG_FAILED: (FAILED_COLOUR, 1.5), FLAG_CANCELED: (CANCELED_COLOUR, 1.0)}.get(flag, plain)
        for row, spans in by_row.items():
            ax.broken_barh(spans, (row + gap / 2, 1 - gap), facecolors=chart.colours[job], edgecolors=edge,
                           linewidth=width, zorder=2)  # fmt: skip
    failed = [(b.end, b.row + 0.5) for b in chart.bars if b.flag == FLAG_FAILED]
    if failed:
        ax.scatter([f[0] for f in failed], [f[1] for f in failed], marker="x", color=FAILED_COLOUR, s=18, zorder=3)


def _bands(ax: Any, chart: Chart) -> None:
    nb = len(chart.bands)
    edges = [i * chart.bin_s for i in range(len(chart.bands[0].failed) + 1)] if nb else [0.0, chart.span]
    ax.set_ylim(nb * 1.3, -0.1)
    ax.set_yticks([i * 1.3 + 0.5 for i in range(nb)], [f"{b.label} ({b.cores} cores)" for b in chart.bands])
    for i, band in enumerate(chart.bands):
        base = i * 1.3 + 1.0  # y grows downwards: the band's floor
        ax.axhspan(base - 1.0, base, color=IDLE_COLOUR, zorder=0)
        below = [0.0] * len(band.failed)
        for j, busy in enumerate(band.busy):
            if not any(busy):
                continue
            above = [below[k] + busy[k] / max(band.cores, 1) for k in range(len(busy))]
            ax.stairs([base - a for a in above], edges, baseline=[base - b for b in below], fill=True,
                      color=chart.colours[j], zorder=2)  # fmt: skip
            below = above
        marks = [(k + 0.5) * chart.bin_s for k, c in enumerate(band.failed) if c]
        if marks:
            ax.scatter(marks, [base - 1.08] * len(marks), marker="v", color=FAILED_COLOUR, s=14, zorder=3)
