"""Live progress of a campaign, fed by Watch events (no polling), and its final summary.

``Tracker`` folds events into counts; ``Progress`` draws them: on a terminal one line rewritten
in place at most ~4 times a second, elsewhere one line every ~5 s, nothing when quiet.
``Summary`` is what `pj run` prints at the end.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from .convert import BAD_STATES, FINAL_STATES, JobSummary, WatchEvent, sort_counts
from .errors import PJError, one_line
from .formats import plural, tail_lines

if TYPE_CHECKING:  # importing api pulls in grpc
    from .api import Client

TAIL_LINES_SHOWN = 6  # lines of the first failed task's stderr tail in pj run's summary
TAIL_MAX_ITERATIONS = 10_000  # a job with more: its tasks are not fetched for the summary's tail


def fmt_duration(seconds: float) -> str:
    """12.3 -> "12.3s"; 83 -> "1:23"; 3725 -> "1:02:05"."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    s = round(seconds)
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def fmt_counts(counts: dict[str, int], sep: str = " ") -> str:
    return sep.join(f"{state} {n}" for state, n in sort_counts(counts).items() if n)


class Tracker:
    """The campaign as the Watch stream tells it: the latest summary of every job seen, counts per
    state, task counts and the watched totals. Seed it with ``seed()`` (a List) when the stream's
    first event does not list the jobs (a watch of every job)."""

    def __init__(self) -> None:
        self.jobs: dict[str, JobSummary] = {}
        self.counts: dict[str, int] = {}
        self.tasks: dict[str, int] = {}
        self.watched_total = 0
        self.watched_unfinished = -1  # -1: no event yet
        self.events = 0
        self.master_finishing = False

    def _put(self, job: JobSummary) -> None:
        old = self.jobs.get(job.name)
        if old is not None:
            self.counts[old.state] -= 1
        self.jobs[job.name] = job
        self.counts[job.state] = self.counts.get(job.state, 0) + 1

    def seed(self, jobs: Iterable[JobSummary]) -> None:
        for j in jobs:
            self._put(j)

    def apply(self, ev: WatchEvent) -> None:
        for j in ev.changed:
            self._put(j)
        if ev.jobs is not None:  # a counts-only watch: the master counted (changed: bad ends only)
            self.counts = dict(ev.jobs)
        self.tasks = dict(ev.tasks)
        self.watched_total = ev.watched_total
        self.watched_unfinished = ev.watched_unfinished
        self.master_finishing = ev.master_finishing
        self.events += 1

    @property
    def all_finished(self) -> bool:
        return self.watched_unfinished == 0

    def job_counts(self) -> dict[str, int]:
        return sort_counts({s: n for s, n in self.counts.items() if n})

    @property
    def tasks_done(self) -> int:
        return sum(n for s, n in self.tasks.items() if s in FINAL_STATES)

    def bad_jobs(self) -> list[JobSummary]:
        """Jobs that did not succeed, in the order they were seen."""
        return [j for j in self.jobs.values() if j.state in BAD_STATES]


class Progress:
    """Draws a Tracker on ``stream``. Call ``tick()`` often (it rate-limits itself) and ``close()`` once."""

    def __init__(
        self,
        tracker: Tracker,
        stream: TextIO,
        *,
        tty: bool | None = None,
        quiet: bool = False,
        clock: Callable[[], float] = time.monotonic,
        tty_interval: float = 0.25,
        plain_interval: float = 5.0,
    ) -> None:
        self.tracker = tracker
        self.stream = stream
        if tty is None:
            isatty = getattr(stream, "isatty", None)
            tty = bool(isatty()) if isatty is not None else False
        self.tty = tty
        self.quiet = quiet
        self.clock = clock
        self.start = clock()
        self.interval = tty_interval if tty else plain_interval
        self._last = float("-inf") if tty else self.start  # plain: the first line after one interval
        self._drawn = False  # a TTY line is on screen, not yet ended by a newline

    def line(self) -> str:
        t = self.tracker
        elapsed = max(self.clock() - self.start, 1e-9)
        total = t.watched_total
        done = total - t.watched_unfinished if t.watched_unfinished >= 0 else 0
        parts = [f"[{fmt_duration(elapsed)}] jobs {done}/{total} done"]
        counts = fmt_counts(t.job_counts(), sep=", ")
        if counts:
            parts.append(f"({counts})")
        parts.append(f"| tasks {t.tasks_done} done, {t.tasks_done / elapsed:.1f}/s")
        if t.master_finishing:
            parts.append("| finishing")
        return " ".join(parts)

    def tick(self, force: bool = False) -> None:
        if self.quiet:
            return
        now = self.clock()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        text = self.line()
        if self.tty:
            width = shutil.get_terminal_size((100, 24)).columns
            if len(text) >= width:
                text = text[: max(width - 2, 10)] + "…"
            self.stream.write("\r" + text + "\x1b[K")
            self._drawn = True
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def clear(self) -> None:
        """End the TTY line so that other messages start on a line of their own."""
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False

    def close(self) -> None:
        """Draw the last state (on a TTY) and end the line."""
        if self.quiet:
            return
        if self.tty:
            self.tick(force=True)
        self.clear()


@dataclass
class Summary:
    jobs: dict[str, int]
    tasks: dict[str, int]
    bad: list[JobSummary]
    bad_total: int
    elapsed: float  # since pj run started
    campaign: float  # since the jobs were submitted
    workdir: Path
    outcome: str = "finished"  # finished | interrupted | failed
    logs: tuple[str, ...] = ("master.log",)  # names (or patterns) in the workdir
    tail: tuple[str, str] | None = None  # the first failed task with a stderr tail: (name, tail)
    report_missing: str = ""  # why DIR/jobs.jsonl was not written ("": it was)

    @property
    def all_succeeded(self) -> bool:
        return self.outcome == "finished" and set(self.jobs) <= {"SUCCEED"}

    def as_dict(self) -> dict[str, object]:
        """`pj run --json`: what lines() says, as data (schema: pj/common/schemas/cli-output.v1.schema.json)."""
        ran = sum(n for s, n in self.tasks.items() if s in FINAL_STATES)
        return {
            "outcome": self.outcome,
            "all_succeeded": self.all_succeeded,
            "jobs": self.jobs,
            "tasks": self.tasks,
            "tasks_run": ran,
            "not_succeeded": [dataclasses.asdict(j) for j in self.bad],
            "not_succeeded_total": self.bad_total,
            "wall_time_s": round(self.elapsed, 3),
            "campaign_s": round(self.campaign, 3),
            "workdir": str(self.workdir),
            "report": None if self.report_missing else str(self.workdir / "jobs.jsonl"),
            "report_missing": self.report_missing,
            "logs": [str(self.workdir / name) for name in self.logs],
            "stderr_tail": None if self.tail is None else {"task": self.tail[0], "text": self.tail[1]},
        }

    def lines(self) -> list[str]:
        njobs = sum(self.jobs.values())
        out = [f"pj run {self.outcome}: {plural(njobs, 'job')}" + (f": {fmt_counts(self.jobs, ', ')}" if njobs else "")]
        ran = sum(n for s, n in self.tasks.items() if s in FINAL_STATES)
        rate = ran / self.campaign if self.campaign > 0 else 0.0
        task_counts = f" ({fmt_counts(self.tasks, ', ')})" if self.tasks else ""
        out.append(
            f"tasks: {ran} run{task_counts}; wall time {fmt_duration(self.elapsed)}, "
            f"{rate:.1f} tasks/s over {fmt_duration(self.campaign)} since submission"
        )
        if self.bad:
            out.append(f"not succeeded ({len(self.bad)} of {self.bad_total} shown):")
            width = max(len(j.name) for j in self.bad)
            for j in self.bad:
                out.append(f"  {j.name:<{width}}  {j.state:<8}  {one_line(j.reason) or '-'}")
        if self.tail is not None:
            name, text = self.tail
            out.append(f"stderr of {name} (its last lines):")
            out += tail_lines(text, TAIL_LINES_SHOWN)
        if self.report_missing:
            out.append(f"report: not written: {self.report_missing}")
        else:
            out.append(f"report: {self.workdir / 'jobs.jsonl'}")
        out.append("logs:   " + ", ".join(str(self.workdir / name) for name in self.logs))
        return out


def first_tail(client: Client, bad: list[JobSummary], tries: int = 3) -> tuple[str, str] | None:
    """The first FAILED task with a stderr tail among the first ``tries`` FAILED jobs of ``bad``
    (one Info each; a job of more than TAIL_MAX_ITERATIONS iterations is passed over)."""
    failed = [j for j in bad if j.state == "FAILED" and j.iterations <= TAIL_MAX_ITERATIONS][:tries]
    for job in failed:
        try:
            (info,) = client.info([job.name], with_tasks=job.iterations > 0)
        except (PJError, ValueError):
            continue
        for task in info.tasks:
            if task.stderr_tail:
                return task.name, task.stderr_tail
    return None
