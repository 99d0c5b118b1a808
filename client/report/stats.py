"""`pj report stats`: counts per state, wall time, rates, core-seconds, durations, latencies.

Streaming: each record updates running sums; only the samples the quantiles need are kept, as
arrays of floats (8 bytes a task), never a record per line.

Definitions (the same everywhere in ``pj report``):
- a task's *start* is its ``EXECUTING`` time, its *end* the time of its final state;
- *submission* is the job's ``QUEUED`` time; *wall time* runs from the first submission to the
  last end in the report;
- *core-seconds used*: cores x (end - start) over every task that started, and over the earlier
  attempts of a retried task (each counted with the cores of the task's last attempt: the report
  keeps only those); *available*: the cores of every node x wall time. A node's cores are those its
  agent announced in DIR/master.log when that file is there, else one more than the highest core id
  the report shows there (a lower bound);
- quantiles: ``median`` is the middle value (the mean of the two middle ones for an even count),
  ``pN`` the nearest rank: the value at position ceil(N/100 x n) in ascending order.
"""

from __future__ import annotations

import json
import math
import re
from array import array
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..convert import FINAL_STATES, STATES
from .reading import JobLine, TaskLine

_JOINED = re.compile(r"event='agent joined' node='([^']*)' cores=(\d+)")


def quantile(values: Sequence[float], q: float) -> float:
    """Nearest-rank quantile of ascending ``values`` (0 < q <= 1); values must not be empty."""
    return values[max(0, math.ceil(q * len(values)) - 1)]


def median(values: Sequence[float]) -> float:
    """The middle of ascending ``values`` (mean of the two middle ones for an even count)."""
    n = len(values)
    mid = n // 2
    return values[mid] if n % 2 else (values[mid - 1] + values[mid]) / 2


def summary(samples: Sequence[float], quantiles: Sequence[str] = ("min", "median", "p95", "max")) -> dict[str, Any]:
    """``{"n": count, "min": ..., "median": ..., "p95": ..., "max": ...}`` (None when there are no samples)."""
    values = sorted(samples)
    out: dict[str, Any] = {"n": len(values)}
    for q in quantiles:
        if not values:
            out[q] = None
        elif q == "min":
            out[q] = values[0]
        elif q == "max":
            out[q] = values[-1]
        elif q == "median":
            out[q] = median(values)
        else:
            out[q] = quantile(values, int(q[1:]) / 100)
    return out


def task_span(task: TaskLine) -> tuple[float | None, float | None]:
    """(start, end) of a task; either is None when it did not happen (yet)."""
    t = task.times
    return t.get("EXECUTING"), (t.get(task.state) if task.state in FINAL_STATES else None)


def node_sizes_from_log(workdir: Path) -> dict[str, int]:
    """Each node's cores as its agent announced them in workdir/master.log ({} without that file)."""
    sizes: dict[str, int] = {}
    try:
        with open(workdir / "master.log", errors="replace") as f:
            for line in f:
                if "agent joined" in line:
                    node, cores = _joined(line)
                    if node is not None:
                        sizes[node] = max(sizes.get(node, 0), cores)
    except OSError:
        pass
    return sizes


def _joined(line: str) -> tuple[str | None, int]:
    """The node and cores of an 'agent joined' line, console (key=value) or --log-format json."""
    if line.startswith("{"):
        try:
            rec = json.loads(line)
            if rec.get("event") == "agent joined":
                return str(rec["node"]), int(rec["cores"])
        except (ValueError, KeyError, TypeError, AttributeError):
            pass
        return None, 0
    m = _JOINED.search(line)
    return (m.group(1), int(m.group(2))) if m else (None, 0)


class Submissions:
    """The submission time of each task's job: the line just read, or a job with iterations seen before."""

    def __init__(self) -> None:
        self.last: tuple[str, float] | None = None
        self.iterated: dict[str, float] = {}  # only jobs with iterations: their tasks come on lines of their own

    def job(self, job: JobLine) -> None:
        queued = job.times.get("QUEUED")
        if queued is None:
            return
        self.last = (job.name, queued)
        if job.iterations is not None:
            self.iterated[job.name] = queued

    def of(self, task: TaskLine) -> float | None:
        if self.last is not None and self.last[0] == task.job:
            return self.last[1]
        return self.iterated.get(task.job, task.times.get("QUEUED"))


class Stats:
    """Fed every record of a report in order; :meth:`result` gives the figures."""

    def __init__(self) -> None:
        self.jobs: dict[str, int] = {}
        self.tasks: dict[str, int] = {}
        self.first_submit = math.inf
        self.last_end = -math.inf
        self.core_s = 0.0
        self.node_cores: dict[str, int] = {}  # node -> highest core id seen + 1
        self.durations = array("d")
        self.latencies = array("d")  # submission -> start
        self.subs = Submissions()

    def job(self, job: JobLine) -> None:
        self.jobs[job.state] = self.jobs.get(job.state, 0) + 1
        self.subs.job(job)
        queued = job.times.get("QUEUED")
        if queued is not None and queued < self.first_submit:
            self.first_submit = queued
        end = job.times.get(job.state)
        if end is not None and job.state in FINAL_STATES and end > self.last_end:
            self.last_end = end

    def task(self, task: TaskLine) -> None:
        state, times = task.state, task.times
        self.tasks[state] = self.tasks.get(state, 0) + 1
        sizes = self.node_cores
        ncores = 0
        for node, ids in task.cores.items():
            ncores += len(ids)
            if ids:
                top = max(ids) + 1
                if sizes.get(node, 0) < top:
                    sizes[node] = top
        start = times.get("EXECUTING")  # task_span, inline: this runs for every task
        end = times.get(state) if state in FINAL_STATES else None
        if end is not None and end > self.last_end:
            self.last_end = end
        if start is not None:
            if end is not None:
                self.durations.append(end - start)
                self.core_s += ncores * (end - start)
            submitted = self.subs.of(task)
            if submitted is not None:
                self.latencies.append(start - submitted)
        if task.attempts:
            for a in task.attempts[:-1]:
                s, e = a.get("started"), a.get("ended")
                if isinstance(s, (int, float)) and isinstance(e, (int, float)):
                    self.core_s += ncores * (e - s)

    def result(self, announced: dict[str, int] | None = None) -> dict[str, Any]:
        """The figures as plain data (what ``--json`` prints); ``announced``: node sizes from master.log."""
        nodes = dict(self.node_cores)
        for node, n in (announced or {}).items():
            nodes[node] = max(n, nodes.get(node, 0))
        have_times = self.first_submit < math.inf and self.last_end > -math.inf
        wall = max(0.0, self.last_end - self.first_submit) if have_times else 0.0
        done = sum(n for s, n in self.tasks.items() if s in FINAL_STATES)
        available = sum(nodes.values()) * wall
        return {
            "jobs": _ordered(self.jobs),
            "tasks": _ordered(self.tasks),
            "wall_s": wall,
            "first_submit": self.first_submit if have_times else None,
            "last_end": self.last_end if have_times else None,
            "tasks_per_s": done / wall if wall > 0 else None,
            "nodes": dict(sorted(nodes.items())),
            "core_s_used": self.core_s,
            "core_s_available": available,
            "utilisation": self.core_s / available if available > 0 else None,
            "duration_s": summary(self.durations),
            "submit_to_start_s": summary(self.latencies, ("median", "p95")),
        }


def _ordered(counts: dict[str, int]) -> dict[str, int]:
    known = [s for s in STATES if s in counts]
    return {s: counts[s] for s in known + sorted(set(counts) - set(known))}
