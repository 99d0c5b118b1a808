"""The Gantt chart's layout (pure): which rows, which bars, which bands; ``svg.py`` and ``png.py`` draw it.

Three shapes, chosen by size so that the chart stays readable:
- ``task``: one row per task (at most :data:`TASK_ROWS` tasks), labelled with its name;
- ``core``: one row per core of each node (at most :data:`CORE_ROWS` rows and :data:`CORE_BARS` bars);
- ``band``: one band per node (consecutive nodes grouped beyond :data:`MAX_BANDS`), its height the
  node's cores, holding per time bin the average number of busy cores of each job, stacked; the
  space above the stack is idle cores.
Tasks are coloured by job (the :data:`COLOURED` jobs that used most core-seconds; the rest share
:data:`OTHER`); a FAILED task is marked in red, a CANCELED one in black (in bands: a mark above
the bins where tasks failed). Times are seconds from the first submission.
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass, field

from .reading import JobLine, TaskLine
from .stats import task_span

TASK_ROWS = 40
CORE_ROWS = 160
CORE_BARS = 6000
MAX_BANDS = 32
BINS = 400
PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
           "#86bcb6", "#8cd17d")  # fmt: skip
COLOURED = len(PALETTE)
OTHER = "#bab0ac"
FAILED_COLOUR = "#d62728"
CANCELED_COLOUR = "#000000"
IDLE_COLOUR = "#f2f2f2"
FLAG_OK, FLAG_FAILED, FLAG_CANCELED = 0, 1, 2


@dataclass
class Bar:
    row: int
    start: float
    end: float
    job: int  # index into Chart.jobs
    flag: int  # FLAG_*
    label: str = ""  # the task's name (tooltips)


@dataclass
class Band:
    label: str
    cores: int
    busy: list[list[float]]  # per job (Chart.jobs order): average busy cores per bin
    failed: list[int]  # per bin: tasks that ended FAILED there


@dataclass
class Chart:
    mode: str  # "task", "core" or "band"
    span: float  # seconds from the first submission to the last end
    jobs: list[str]  # legend order; colour i is colours[i]
    colours: list[str]
    rows: list[str] = field(default_factory=list)  # task and core modes
    node_rows: list[tuple[str, int, int]] = field(default_factory=list)  # (node, first row, rows) in core mode
    bars: list[Bar] = field(default_factory=list)
    bands: list[Band] = field(default_factory=list)
    bin_s: float = 0.0
    tasks: int = 0
    failed: int = 0


class GanttData:
    """Fed the report's records; keeps one compact interval per task and node (arrays, not objects)."""

    def __init__(self) -> None:
        self.first_submit = math.inf
        self.last_end = -math.inf
        self.job_index: dict[str, int] = {}
        self.node_index: dict[str, int] = {}
        self.node_cores: dict[str, int] = {}
        self.start = array("d")
        self.end = array("d")
        self.node = array("i")
        self.ncores = array("i")
        self.jobi = array("i")
        self.flag = array("b")
        self.task_of = array("i")  # interval -> task number
        self.core_ids: list[list[int]] | None = []  # per interval; None once the chart cannot be per core
        self.names: list[str] | None = []  # per task; None beyond TASK_ROWS
        self.tasks = 0
        self.failed = 0

    def job(self, job: JobLine) -> None:
        queued = job.times.get("QUEUED")
        if queued is not None and queued < self.first_submit:
            self.first_submit = queued

    def task(self, task: TaskLine) -> None:
        start, end = task_span(task)
        if start is None:
            return
        if end is None:
            end = start  # still running when the report was written: a sliver
        if end > self.last_end:
            self.last_end = end
        j = self.job_index.setdefault(task.job, len(self.job_index))
        flag = FLAG_FAILED if task.state == "FAILED" else FLAG_CANCELED if task.state == "CANCELED" else FLAG_OK
        self.failed += flag == FLAG_FAILED
        n = self.tasks
        self.tasks += 1
        if self.names is not None:
            self.names.append(task.name)
            if len(self.names) > TASK_ROWS:
                self.names = None
        for node, ids in task.cores.items():
            k = self.node_index.setdefault(node, len(self.node_index))
            if ids and max(ids) + 1 > self.node_cores.get(node, 0):
                self.node_cores[node] = max(ids) + 1
            self.start.append(start)
            self.end.append(end)
            self.node.append(k)
            self.ncores.append(len(ids))
            self.jobi.append(j)
            self.flag.append(flag)
            self.task_of.append(n)
            if self.core_ids is not None:
                self.core_ids.append(list(ids))
                if len(self.core_ids) > CORE_BARS:
                    self.core_ids = None

    def chart(self, announced: dict[str, int] | None = None) -> Chart:
        """The layout for what was fed; ``announced``: node sizes from master.log."""
        origin = self.first_submit if self.first_submit < math.inf else (min(self.start) if self.start else 0.0)
        span = max(self.last_end - origin, 1e-3) if self.start else 1.0
        sizes = dict(self.node_cores)
        for node, n in (announced or {}).items():
            sizes[node] = max(n, sizes.get(node, 0))
        nodes = sorted(self.node_index, key=_natural)
        used = [0.0] * len(self.job_index)
        for i in range(len(self.start)):
            used[self.jobi[i]] += self.ncores[i] * (self.end[i] - self.start[i])
        by_use = sorted(range(len(used)), key=lambda j: (-used[j], j))
        names = {j: name for name, j in self.job_index.items()}
        legend = [names[j] for j in by_use[:COLOURED]]
        colour_of = {j: i for i, j in enumerate(by_use[:COLOURED])}
        colours = list(PALETTE[: len(legend)])
        if len(by_use) > COLOURED:
            legend.append(f"{len(by_use) - COLOURED} other jobs")
            colours.append(OTHER)
        other = len(legend) - 1
        chart = Chart(mode="band", span=span, jobs=legend, colours=colours, tasks=self.tasks, failed=self.failed)

        def bar(i: int, row: int) -> Bar:
            label = self.names[self.task_of[i]] if self.names else ""
            return Bar(row, self.start[i] - origin, self.end[i] - origin, colour_of.get(self.jobi[i], other),
                       self.flag[i], label)  # fmt: skip

        if self.names and self.tasks <= TASK_ROWS:
            chart.mode = "task"
            chart.rows = list(self.names)
            chart.bars = [bar(i, self.task_of[i]) for i in range(len(self.start))]
            return chart
        rows_needed = sum(sizes.get(n, 0) for n in nodes)
        if self.core_ids and rows_needed <= CORE_ROWS:
            chart.mode = "core"
            first: dict[int, int] = {}
            for node in nodes:
                first[self.node_index[node]] = len(chart.rows)
                chart.node_rows.append((node, len(chart.rows), sizes[node]))
                chart.rows.extend(f"{node}:{c}" for c in range(sizes[node]))
            for i, ids in enumerate(self.core_ids):
                chart.bars.extend(bar(i, first[self.node[i]] + c) for c in ids)
            return chart
        self._bands(chart, nodes, sizes, origin, colour_of, other)
        return chart

    def _bands(self, chart: Chart, nodes: list[str], sizes: dict[str, int], origin: float,
               colour_of: dict[int, int], other: int) -> None:  # fmt: skip
        per = max(1, math.ceil(len(nodes) / MAX_BANDS))
        groups = [nodes[i : i + per] for i in range(0, len(nodes), per)]
        band_of = {self.node_index[n]: b for b, g in enumerate(groups) for n in g}
        width = chart.span / BINS
        chart.bin_s = width
        for g in groups:
            label = g[0] if len(g) == 1 else f"{g[0]}..{g[-1]}"
            chart.bands.append(Band(label, sum(sizes.get(n, 0) for n in g),
                                    [[0.0] * BINS for _ in chart.jobs], [0] * BINS))  # fmt: skip
        for i in range(len(self.start)):
            band = chart.bands[band_of[self.node[i]]]
            row = band.busy[colour_of.get(self.jobi[i], other)]
            s, e, k = self.start[i] - origin, self.end[i] - origin, self.ncores[i]
            b0, b1 = min(int(s / width), BINS - 1), min(int(e / width), BINS - 1)
            if b0 == b1:
                row[b0] += k * (e - s)
            else:
                row[b0] += k * ((b0 + 1) * width - s)
                for b in range(b0 + 1, b1):
                    row[b] += k * width
                row[b1] += k * (e - b1 * width)
            if self.flag[i] == FLAG_FAILED:
                band.failed[b1] += 1
        for band in chart.bands:
            for row in band.busy:
                for b in range(BINS):
                    row[b] /= width


def _natural(name: str) -> tuple[object, ...]:
    """node2 before node10."""
    import re

    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))
