"""What `pj top` shows, without I/O or a clock: the arithmetic, the view, the frame.

``Rates`` (tasks finished per second over the last seconds), ``overall_rate``, ``eta`` and
``estimate_tasks`` (the campaign's size in tasks from one List of the jobs' iterations); ``View``
folds Watch events, List sizes and Info reasons into a ``Snapshot``; ``render`` turns a Snapshot
and a terminal size into lines. ``top.py`` feeds it and draws.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .convert import BAD_STATES, FINAL_STATES, JobSummary, NodeResources, WatchEvent, sort_counts
from .errors import one_line
from .progress import fmt_counts, fmt_duration

RATE_WINDOW_S = 10.0  # "recent" rate: over about this many seconds
FAILURES_KEPT = 100
FAILURES_SHOWN = 5
NOTICES_SHOWN = 3
PLAIN_NODES_MAX = 32  # a pipe shows at most this many node lines, else the histogram
BUCKETS: tuple[tuple[str, float, float], ...] = (  # busy fraction f: lo <= f < hi (full: f == 1)
    ("idle 0%", 0.0, 1e-9), ("1-24%", 1e-9, 0.25), ("25-49%", 0.25, 0.5), ("50-74%", 0.5, 0.75),
    ("75-99%", 0.75, 1.0), ("full 100%", 1.0, 2.0),
)  # fmt: skip


# ---------------------------------------------------------------- arithmetic (pure)


class Rates:
    """Tasks finished per second over the last ``window`` seconds, from (time, tasks done) samples."""

    def __init__(self, window: float = RATE_WINDOW_S) -> None:
        self.window = window
        self.samples: deque[tuple[float, int]] = deque()

    def add(self, t: float, done: int) -> None:
        s = self.samples
        if s and done < s[-1][1]:  # a count that went back (a resumed master): start again
            s.clear()
        s.append((t, done))
        while len(s) > 2 and s[1][0] <= t - self.window:  # keep one sample at or before the window's start
            s.popleft()

    def recent(self) -> float | None:
        """None until the samples span half a second."""
        if len(self.samples) < 2:
            return None
        (t0, d0), (t1, d1) = self.samples[0], self.samples[-1]
        return (d1 - d0) / (t1 - t0) if t1 - t0 >= 0.5 else None


def overall_rate(done: int, elapsed: float | None) -> float | None:
    return done / elapsed if elapsed is not None and elapsed > 0 else None


def eta(left: int | None, rate: float | None) -> float | None:
    """Seconds until ``left`` tasks are done at ``rate``; 0 when none is left; None when unknown."""
    if left is None:
        return None
    if left <= 0:
        return 0.0
    if rate is None or rate <= 0:
        return None
    return left / rate


def estimate_tasks(jobs_total: int, sized_jobs: int, sized_tasks: int) -> int | None:
    """The campaign's tasks: those of the ``sized_jobs`` listed, the jobs submitted since at their average."""
    if sized_jobs <= 0:
        return None
    more = max(jobs_total - sized_jobs, 0)
    return sized_tasks + round(more * sized_tasks / sized_jobs)


# ---------------------------------------------------------------- the view (pure)


@dataclass(frozen=True)
class Failure:
    name: str
    state: str
    reason: str


@dataclass(frozen=True)
class Snapshot:
    """Everything one frame shows."""

    address: str = ""
    uptime: float | None = None  # seconds since the master started
    jobs: dict[str, int] = field(default_factory=dict)
    tasks: dict[str, int] = field(default_factory=dict)
    jobs_total: int = 0
    jobs_unfinished: int = -1  # -1: no Watch event yet
    tasks_done: int = 0
    tasks_total: int | None = None  # an estimate (jobs' iterations); None: not known yet
    rate_recent: float | None = None
    rate_overall: float | None = None
    eta: float | None = None
    nodes: tuple[NodeResources, ...] = ()
    nodes_missing: tuple[str, ...] = ()
    failures: tuple[Failure, ...] = ()  # newest first
    notices: tuple[str, ...] = ()  # newest last
    finishing: bool = False
    ended: str = ""  # the last line: why the view stops
    keys: str = ""  # the help line on a terminal ("q quits")


@dataclass
class Sized:
    """The jobs' sizes from one List: how many jobs, their tasks, the failed ones in list order."""

    jobs: int
    tasks: int
    bad: list[JobSummary]


class View:
    """The campaign as Watch events, List sizes and Info reasons tell it; ``snapshot()`` for a frame."""

    def __init__(self, address: str = "", started_at: float | None = None) -> None:
        self.address = address
        self.started_at = started_at  # the master's clock (epoch seconds)
        self.jobs: dict[str, int] = {}
        self.tasks: dict[str, int] = {}
        self.total = 0
        self.unfinished = -1
        self.finishing = False
        self.failures: deque[Failure] = deque(maxlen=FAILURES_KEPT)  # oldest first
        self.notices: deque[str] = deque(maxlen=20)
        self.sized: Sized | None = None
        self.rates = Rates()
        self.nodes: tuple[NodeResources, ...] = ()
        self.nodes_missing: tuple[str, ...] = ()
        self._asked: set[str] = set()  # failures whose reason Info was asked for

    @property
    def heard(self) -> bool:
        return self.unfinished >= 0

    @property
    def all_ended(self) -> bool:
        """Every job has ended (and there was one)."""
        return self.heard and self.total > 0 and self.unfinished == 0

    @property
    def tasks_done(self) -> int:
        return sum(n for s, n in self.tasks.items() if s in FINAL_STATES)

    def apply(self, ev: WatchEvent) -> None:
        if ev.jobs is not None:
            self.jobs = dict(ev.jobs)
        elif not ev.changed and ev.watched_total == 0:
            self.jobs = {}
        self.tasks = dict(ev.tasks)
        self.total, self.unfinished = ev.watched_total, ev.watched_unfinished
        self.finishing = ev.master_finishing
        for j in ev.changed:
            if j.state in BAD_STATES:
                self._fail(Failure(j.name, j.state, one_line(j.reason)), newest=True)
        self.notices.extend(one_line(n) for n in ev.notices)

    def _fail(self, f: Failure, newest: bool) -> None:
        known = [i for i, old in enumerate(self.failures) if old.name == f.name]
        if known:
            if not newest:
                return
            del self.failures[known[0]]
        if newest:
            self.failures.append(f)
        elif len(self.failures) < FAILURES_KEPT:
            self.failures.appendleft(f)

    def sizes(self, sized: Sized) -> None:
        """A List's result: the sizes, and the jobs that had ended badly (older than any the stream told)."""
        first = self.sized is None
        self.sized = sized
        if first:
            for j in reversed(sized.bad[-FAILURES_KEPT:]):
                self._fail(Failure(j.name, j.state, one_line(j.reason)), newest=False)

    def reasons(self, found: dict[str, str]) -> None:
        """Reasons from Info for failures that came without one."""
        for i, f in enumerate(self.failures):
            if not f.reason and found.get(f.name):
                self.failures[i] = Failure(f.name, f.state, one_line(found[f.name]))

    def missing_reasons(self, limit: int = FAILURES_SHOWN) -> list[str]:
        """The newest failures shown without a reason, not asked about before (each is asked once)."""
        ask = [f.name for f in list(self.failures)[-limit:] if not f.reason and f.name not in self._asked]
        self._asked.update(ask)
        return ask

    def needs_sizing(self) -> bool:
        """The List is worth repeating: more than half of the jobs came after it (amortised: each
        List at least doubles what is known)."""
        return self.sized is not None and self.total > 2 * max(self.sized.jobs, 0) and self.total > 0

    def snapshot(self, mono: float, wall: float, ended: str = "", keys: str = "") -> Snapshot:
        done = self.tasks_done
        self.rates.add(mono, done)
        uptime = wall - self.started_at if self.started_at else None
        total = estimate_tasks(self.total, self.sized.jobs, self.sized.tasks) if self.sized else None
        if total is not None:
            total = max(total, done + sum(n for s, n in self.tasks.items() if s not in FINAL_STATES))
        left = 0 if self.all_ended else (None if total is None else total - done)
        recent = self.rates.recent()
        overall = overall_rate(done, uptime)
        return Snapshot(
            address=self.address, uptime=uptime, jobs=sort_counts(self.jobs), tasks=sort_counts(self.tasks),
            jobs_total=self.total, jobs_unfinished=self.unfinished, tasks_done=done, tasks_total=total,
            rate_recent=recent, rate_overall=overall, eta=eta(left, recent if recent is not None else overall),
            nodes=self.nodes, nodes_missing=self.nodes_missing, failures=tuple(reversed(self.failures)),
            notices=tuple(self.notices), finishing=self.finishing, ended=ended, keys=keys,
        )  # fmt: skip


# ---------------------------------------------------------------- rendering (pure)


def _rate(r: float | None) -> str:
    return "-" if r is None else (f"{r:.1f}" if r < 100 else f"{r:.0f}")


def _eta(s: Snapshot) -> str:
    if s.jobs_total > 0 and s.jobs_unfinished == 0:
        return "done"
    return "-" if s.eta is None else fmt_duration(s.eta)


def bar(used: int, total: int, width: int) -> str:
    """``[###.....]``: ``used`` of ``total`` in ``width`` cells; any use shows, full only when full."""
    if total <= 0 or width <= 0:
        return ""
    n = round(used * width / total)
    if used > 0:
        n = max(n, 1)
    if used < total:
        n = min(n, width - 1)
    return "[" + "#" * n + "." * (width - n) + "]"


def _busy(n: NodeResources) -> tuple[int, int]:
    return n.cores - n.cores_free, len(n.gpus) - n.gpus_free


def _fraction(n: NodeResources) -> float:
    """The busy share of a node: cores and GPUs together (a GPU node is busy when its GPUs are)."""
    cores, gpus = _busy(n)
    parts = [cores / n.cores] if n.cores else []
    if n.gpus:
        parts.append(gpus / len(n.gpus))
    return max(parts) if parts else 0.0


def _natural(name: str) -> list[Any]:
    """"n10" after "n9"."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


def node_lines(nodes: Sequence[NodeResources], width: int) -> list[str]:
    """One line per node: its busy cores and GPUs as bars."""
    name_w = min(max((len(n.name) for n in nodes), default=4), 24)
    max_cores = max((n.cores for n in nodes), default=1)
    max_gpus = max((len(n.gpus) for n in nodes), default=0)
    room = width - 2 - name_w - 2 - 14 - (16 if max_gpus else 0)
    cw = max(4, min(max_cores, room if room > 4 else 4, 40))
    gw = max(2, min(max_gpus, 8))
    out = []
    for n in sorted(nodes, key=lambda n: _natural(n.name)):
        cores, gpus = _busy(n)
        line = f"  {n.name[:name_w]:<{name_w}}  {bar(cores, n.cores, cw)} {cores}/{n.cores} cores"
        if n.gpus:
            line += f"  {bar(gpus, len(n.gpus), gw)} {gpus}/{len(n.gpus)} GPUs"
        if not n.online:
            line += "  offline"
        out.append(line)
    return out


def histogram_lines(nodes: Sequence[NodeResources], width: int) -> list[str]:
    """Many nodes: how many are how busy (a histogram of busy fractions), the busiest and the idlest."""
    online = [n for n in nodes if n.online]
    fracs = [(_fraction(n), n.name) for n in online]
    counts = [sum(1 for f, _ in fracs if lo <= f < hi) for _, lo, hi in BUCKETS]
    most = max(counts, default=0) or 1
    bw = max(width - 22, 4)
    out = [f"  {label:<10}{c:>6} " + "#" * (round(c * bw / most) if c else 0) for (label, _, _), c in zip(BUCKETS, counts, strict=True)]
    ranked = sorted(fracs, key=lambda fn: (-fn[0], fn[1]))
    if ranked:
        out.append("  busiest   " + ", ".join(f"{name} {f:.0%}" for f, name in ranked[:3]))
        out.append("  idlest    " + ", ".join(f"{name} {f:.0%}" for f, name in sorted(fracs)[:3]))
    return out


def _header(s: Snapshot) -> list[str]:
    up = fmt_duration(s.uptime) if s.uptime is not None else "?"
    head = f"pj top  master {s.address or '?'}  up {up}" + ("  finishing" if s.finishing else "")
    if s.jobs_unfinished < 0:
        return [head, "jobs    (waiting for the master's first message)"]
    ended = s.jobs_total - s.jobs_unfinished
    jobs = f"jobs    {ended}/{s.jobs_total} ended" + (f": {fmt_counts(s.jobs, ', ')}" if s.jobs else "")
    total = f" of ~{s.tasks_total}" if s.tasks_total is not None else ""
    tasks = f"tasks   {s.tasks_done}{total} done" + (f": {fmt_counts(s.tasks, ', ')}" if s.tasks else "")
    rate = (f"rate    {_rate(s.rate_recent)} tasks/s (last {RATE_WINDOW_S:.0f} s), {_rate(s.rate_overall)} overall"
            f"   ETA {_eta(s)}")  # fmt: skip
    return [head, jobs, tasks, rate]


def _nodes_summary(s: Snapshot) -> str:
    online = [n for n in s.nodes if n.online]
    cores = sum(n.cores for n in online)
    busy = sum(_busy(n)[0] for n in online)
    gpus = sum(len(n.gpus) for n in online)
    line = f"nodes   {len(online)} online" + (f", cores {busy}/{cores} busy ({busy / cores:.0%})" if cores else "")
    if gpus:
        line += f", GPUs {sum(_busy(n)[1] for n in online)}/{gpus} busy"
    offline = len(s.nodes) - len(online)
    if offline:
        line += f", {offline} offline"
    if s.nodes_missing:
        line += f", {len(s.nodes_missing)} missing"
    return line


def _section(title: str, items: list[str], total: int | None = None) -> list[str]:
    if not items:
        return []
    return [title if total is None else f"{title} ({len(items)} of {max(total, len(items))})", *items]


def render(s: Snapshot, width: int = 100, height: int | None = None) -> list[str]:
    """The frame's lines, none wider than ``width``; at most ``height`` lines (None: no limit).

    Nodes get a line each when they fit (a pipe: up to 32), else a histogram of busy fractions
    with the busiest and idlest; then failures and notices give up lines (down to one each).
    """
    width = max(width, 20)
    head = [*_header(s), _nodes_summary(s)]
    fails = [f"  {f.name}  {f.state}  {f.reason or '-'}" for f in s.failures[:FAILURES_SHOWN]]
    notes = [f"  {n}" for n in s.notices[-NOTICES_SHOWN:]]
    nbad = sum(s.jobs.get(b, 0) for b in BAD_STATES)
    tail = [line for line in (s.ended, s.keys) if line]
    per_node = node_lines(s.nodes, width) if s.nodes else []
    many = histogram_lines(s.nodes, width) if s.nodes else []

    def body(nodes: list[str]) -> list[str]:
        return head + nodes + _section("failures, newest first", fails, nbad) + _section("notices", notes)

    if height is None:
        lines = body(per_node if len(per_node) <= PLAIN_NODES_MAX else many) + tail
    else:
        room = height - len(tail)
        nodes = per_node if len(body(per_node)) <= room or len(per_node) <= len(many) else many
        while len(body(nodes)) > room and (len(fails) > 1 or len(notes) > 1):
            if len(fails) >= len(notes):
                fails.pop()  # the oldest failure shown
            else:
                notes.pop(0)  # the oldest notice
        lines = body(nodes)[: max(room, 0)] + tail
        lines = lines[-height:] if len(lines) > height else lines
    keep = s.ended if height is None else None  # a frame that stays on screen keeps its last word whole
    return [line if len(line) <= width or line == keep else line[: width - 1] + "…" for line in lines]


def ended_line(v: View) -> str:
    """What the view says when every job has ended."""
    if set(v.jobs) <= {"SUCCEED"}:
        return f"campaign ended: all {v.total} jobs succeeded"
    return f"campaign ended: {v.total} {'job' if v.total == 1 else 'jobs'}: {fmt_counts(sort_counts(v.jobs), ', ')}"
