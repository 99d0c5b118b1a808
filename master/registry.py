"""The registry: every job and every task (iteration) the master knows, with its history.

Records are mutable slot classes (hundreds of thousands of them must stay small);
every state change goes through ``set_state`` and so through the transition table.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator, Mapping
from typing import NamedTuple

from .ended import Ended, Fields
from .model import JOB_MOVES, TASK_MOVES, Allocation, Event, JobSpec, State, event_to, move


class Attempt(NamedTuple):
    """An earlier attempt of a task (iteration) that was retried: kept only for tasks that retried."""

    state: State
    exit_code: int | None
    reason: str
    nodes: tuple[str, ...]
    started: float | None  # when it began executing (None: it never did)
    ended: float
    task_id: int
    lost: bool = False  # it ended because a node it ran on was lost
    usage: bytes = b""  # CPU time and peak memory, packed (usage.py); b"": not measured
    stderr_tail: str = ""  # a FAILED attempt's last 4 KB of stderr


_stamps: dict[State, tuple[State, float]] = {}


def _stamp(state: State, now: float) -> tuple[State, float]:
    """A history entry, shared by every job and task that changed to ``state`` at the same ``now``
    (a pass stamps all it changes with one time: 100 000 jobs keep one tuple per state and pass)."""
    entry = _stamps.get(state)
    if entry is None or entry[1] != now:
        entry = _stamps[state] = (state, now)
    return entry


_queued_at: list[tuple[tuple[State, float]]] = []


def _queued(now: float) -> tuple[tuple[State, float]]:
    """A new job's history, one tuple for every job queued at ``now`` (a Submit's batch)."""
    if not _queued_at or _queued_at[0][0][1] != now:
        _queued_at[:] = [(_stamp(State.QUEUED, now),)]
    return _queued_at[0]


_ended_history: list[tuple[tuple[State, float], ...]] = [()]  # the last ended job's, shared by its equals


class Task:
    """One run of a job: the job itself, or one of its iterations."""

    __slots__ = (
        "allocation", "exit_code", "history", "id", "iteration", "job", "reason", "state", "stderr_tail", "usage",
    )

    def __init__(self, task_id: int, job: Job, iteration: int | None, now: float) -> None:
        self.id = task_id
        self.job = job
        self.iteration = iteration
        self.state = State.QUEUED
        self.history: list[tuple[State, float]] = [_stamp(State.QUEUED, now)]
        self.allocation: Allocation = ()
        self.exit_code: int | None = None
        self.reason = ""
        self.usage = b""  # what it used, packed (usage.py), once it has ended
        self.stderr_tail = ""  # the last 4 KB of its stderr, when it FAILED

    @property
    def name(self) -> str:
        return self.job.name if self.iteration is None else f"{self.job.name}:{self.iteration}"

    @classmethod
    def ended(cls, f: Fields) -> Task:
        """An ended task made from its row's fields (ended.py): a copy, for reading."""
        task = cls.__new__(cls)
        (task.id, task.job, task.iteration, task.state, task.history, task.allocation, task.exit_code,
         task.reason, task.usage, task.stderr_tail) = f
        return task

    def move(self, event: Event, now: float, reason: str = "") -> State:
        """Take the move ``TASK_MOVES[(state, event)]`` (else IllegalTransition); the new state."""
        # The lookup inlined (it runs three times per task); move() raises, naming the task.
        state = TASK_MOVES.get((self.state, event)) or move(TASK_MOVES, f"task {self.name}", self.state, event)
        self._to(state, now, reason)
        return state

    def set_state(self, state: State, now: float, reason: str = "") -> None:
        """Move to ``state`` by the one event that leads there from here (records made by hand)."""
        self.move(event_to(TASK_MOVES, f"task {self.name}", self.state, state), now, reason)

    def _to(self, state: State, now: float, reason: str) -> None:
        self.state = state
        entry = _stamps.get(state)  # _stamp, inlined: this runs three times per task
        if entry is None or entry[1] != now:
            entry = _stamps[state] = (state, now)
        self.history.append(entry)
        if reason:
            self.reason = reason


class Rare:
    """What few jobs need (per-iteration dependencies, whole-job waiters, a cancel, retries): made on
    the first job's first such field set (``Job.rare``), so a plain queued job keeps one pointer, not 7."""

    __slots__ = ("attempts", "cancel_reason", "iter_deps", "iter_ready", "iter_sat", "retried", "waiters")

    def __init__(self) -> None:
        self.iter_deps = 0
        self.iter_sat: dict[int, int] | None = None
        self.iter_ready = False
        self.waiters: list[Job] | None = None
        self.cancel_reason = "canceled"
        self.retried: dict[int | None, int] | None = None
        self.attempts: dict[int | None, list[Attempt]] | None = None


_NONE = Rare()  # what a job without its own reads (never written: the setters make one)


class Job:
    """A job as submitted, with the bookkeeping of its iterations and dependencies."""

    __slots__ = (
        "cancel_requested",
        "done",
        "ended",
        "failed",
        "history",
        "live",
        "name",
        "next_it",
        "pending",
        "rare",
        "reason",
        "rows",
        "seq",
        "started",
        "state",
        "succeeded",
        "tmpl",
        "total",
    )

    def __init__(
        self,
        spec: JobSpec,
        seq: int,
        now: float,
        ended: Ended | None = None,
        tmpl: JobSpec | None = None,
        name: str | None = None,
    ) -> None:
        # ``tmpl``: a spec equal to ``spec`` but (maybe) for its name, shared by the jobs of a Submit
        # that differ only by name (Core.submit): a million such jobs keep one JobSpec, not a million.
        # ``name``: the job's, where ``spec`` is another job's (None: spec.name).
        self.name = spec.name if name is None else name
        self.tmpl = spec if tmpl is None else tmpl
        self.seq = seq
        self.state = State.QUEUED
        # a tuple shared by the jobs of a Submit (``_to`` makes a list of it on the first change)
        self.history: list[tuple[State, float]] | tuple[tuple[State, float], ...] = _queued(now)
        self.reason = ""
        it = self.tmpl.iterations
        self.total = it.count if it is not None else 1
        # Iterations are expanded lazily: next_it is the next one not yet taken.
        self.next_it = it.start if it is not None else 0
        self.started = 0  # tasks placed, of `total` (a task queued again for a retry is not)
        self.done = 0  # tasks in a final state (including omitted / canceled ones)
        self.succeeded = 0
        self.failed = 0
        # Its tasks: those not ended, by iteration (made with the first, dropped with the last), and
        # the rows of those ended in the registry's table (``ended``): for a job with iterations,
        # (iteration - start) -> row + 1, 0 for none yet (made when the first iteration ends); the
        # table keeps a one-task job's row by its ``seq``.
        self.live: dict[int | None, Task] | None = None
        self.rows: array[int] | None = None
        self.ended = ended if ended is not None else Ended()  # the registry's (Registry.add)
        self.pending = 0  # unmet whole-job dependencies
        self.cancel_requested = False
        self.rare = _NONE  # the fields below, made on the first set

    def _put(self, field: str, value: object, default: object) -> None:
        """Set one of the rare fields; a job without its own ``Rare`` gets one unless ``value`` is
        the field's default (``job.waiters = None`` as each job ends makes nothing)."""
        r = self.rare
        if r is _NONE:
            if value == default:
                return
            r = self.rare = Rare()
        setattr(r, field, value)

    @property
    def iter_deps(self) -> int:
        """Per-iteration dependencies each iteration waits for."""
        return self.rare.iter_deps

    @iter_deps.setter
    def iter_deps(self, n: int) -> None:
        self._put("iter_deps", n, 0)

    @property
    def iter_sat(self) -> dict[int, int] | None:
        """Iteration -> per-iteration deps met so far (made with the first per-iteration dependency)."""
        return self.rare.iter_sat

    @iter_sat.setter
    def iter_sat(self, sat: dict[int, int] | None) -> None:
        self._put("iter_sat", sat, None)

    @property
    def iter_ready(self) -> bool:
        """Per-iteration mode: the job-level deps are met."""
        return self.rare.iter_ready

    @iter_ready.setter
    def iter_ready(self, ready: bool) -> None:
        self._put("iter_ready", ready, False)

    @property
    def waiters(self) -> list[Job] | None:
        """Jobs whose whole-job dependency is this job (made on the first)."""
        return self.rare.waiters

    @waiters.setter
    def waiters(self, jobs: list[Job] | None) -> None:
        self._put("waiters", jobs, None)

    @property
    def cancel_reason(self) -> str:
        """The reason its canceled tasks and the job end with."""
        return self.rare.cancel_reason

    @cancel_reason.setter
    def cancel_reason(self, reason: str) -> None:
        self._put("cancel_reason", reason, "canceled")

    @property
    def retried(self) -> dict[int | None, int] | None:
        """Iteration -> retries used (made on the first)."""
        return self.rare.retried

    @retried.setter
    def retried(self, used: dict[int | None, int] | None) -> None:
        self._put("retried", used, None)

    @property
    def attempts(self) -> dict[int | None, list[Attempt]] | None:
        """Iteration -> its earlier attempts, oldest first (made on the first retry: nothing for the rest)."""
        return self.rare.attempts

    @attempts.setter
    def attempts(self, attempts: dict[int | None, list[Attempt]] | None) -> None:
        self._put("attempts", attempts, None)

    @property
    def spec(self) -> JobSpec:
        """The job as submitted (its template, named after it: made on each call off the hot path;
        what only reads fields other than the name reads ``tmpl``)."""
        t = self.tmpl
        return t if t.name == self.name else t._replace(name=self.name)

    @spec.setter
    def spec(self, spec: JobSpec) -> None:
        self.name = spec.name
        self.tmpl = spec

    @property
    def final(self) -> bool:
        return self.state.final

    # ------------------------------------------------------------------ its tasks

    @property
    def tasks(self) -> TaskView:
        """Its tasks by iteration (None: the job's one task), live and ended, read-only."""
        return TaskView(self)

    def task(self, it: int | None) -> Task | None:
        """The task of iteration ``it`` (None: the job's one task): the live one, else the ended one
        (made from its row: a copy), else None."""
        live = self.live
        if live is not None:
            t = live.get(it)
            if t is not None:
                return t
        row = self.row(it)
        return None if row is None else Task.ended(self.ended.fields(row))

    def row(self, it: int | None) -> int | None:
        """The ended task's row in the registry's table, or None."""
        if it is None:
            return self.ended.job_row(self.seq) if self.tmpl.iterations is None else None
        rows = self.rows
        if rows is None:
            return None
        assert self.tmpl.iterations is not None
        k = it - self.tmpl.iterations.start
        if 0 <= k < len(rows) and rows[k]:
            return rows[k] - 1
        return None

    def has_task(self, it: int | None) -> bool:
        """Iteration ``it`` has a task, live or ended."""
        live = self.live
        return (live is not None and it in live) or self.row(it) is not None

    def ended_state(self, it: int | None) -> State | None:
        """The final state of iteration ``it``'s task if it has ended, else None (no task yet, one
        running, or a failed attempt whose retry waits)."""
        live = self.live
        if live is not None and it in live:
            return None  # live: running, or (FAILED) waiting for its retry
        row = self.row(it)
        return None if row is None else self.ended.state(row)

    def add_task(self, task: Task) -> None:
        """A new task (attempt) for its iteration: it replaces an ended one there."""
        if self.live is None:
            self.live = {}
        self.live[task.iteration] = task
        self._forget_row(task.iteration)

    def drop_task(self, task: Task) -> None:
        """Take back a live task that never ran (a withdrawn standby): its iteration has none."""
        live = self.live
        if live is not None and live.get(task.iteration) is task:
            del live[task.iteration]
            if not live:
                self.live = None

    def task_ended(self, task: Task) -> None:
        """``task`` (in a final state) is done changing: keep it as a row of the table."""
        row = self.ended.add(task)
        self.drop_task(task)
        self.keep_row(task.iteration, row)

    def keep_row(self, it: int | None, row: int) -> None:
        """Iteration ``it``'s ended task is ``row`` of the table (``task_ended``, a restore)."""
        if it is None:
            self.ended.set_job_row(self.seq, row)
            return
        rows = self.rows
        if rows is None:
            assert self.tmpl.iterations is not None
            rows = self.rows = array("l", bytes(8 * self.total)) if row >= 2**31 - 1 else array("i", bytes(4 * self.total))
        elif row >= 2**31 - 1 and rows.typecode == "i":
            rows = self.rows = array("l", rows)
        assert self.tmpl.iterations is not None
        rows[it - self.tmpl.iterations.start] = row + 1

    def _forget_row(self, it: int | None) -> None:
        rows = self.rows
        if it is None:
            self.ended.set_job_row(self.seq, None)
        elif rows is not None and self.tmpl.iterations is not None:
            k = it - self.tmpl.iterations.start
            if 0 <= k < len(rows):
                rows[k] = 0

    def each_task(self) -> Iterator[Task]:
        """Every task, by iteration (ended ones made from their rows)."""
        if self.tmpl.iterations is None:
            t = self.task(None)
            if t is not None:
                yield t
            return
        live = self.live or {}
        rows = self.rows
        start = self.tmpl.iterations.start
        if rows is None:
            for it in sorted(k for k in live if k is not None):
                yield live[it]
            return
        pending = sorted(k for k in live if k is not None)
        p = 0
        ended = self.ended
        for k, r in enumerate(rows):
            it = start + k
            while p < len(pending) and pending[p] < it:
                yield live[pending[p]]
                p += 1
            if p < len(pending) and pending[p] == it:
                yield live[it]
                p += 1
            elif r:
                yield Task.ended(ended.fields(r - 1))
        while p < len(pending):
            yield live[pending[p]]
            p += 1

    def iterations_with_tasks(self) -> Iterator[int | None]:
        """The iterations that have a task, live or ended, in order."""
        for t in self.each_task():
            yield t.iteration

    def move(self, event: Event, now: float, reason: str = "") -> State:
        """Take the move ``JOB_MOVES[(state, event)]`` (else IllegalTransition); the new state."""
        state = JOB_MOVES.get((self.state, event)) or move(JOB_MOVES, f"job {self.name}", self.state, event)
        self._to(state, now, reason)
        return state

    def set_state(self, state: State, now: float, reason: str = "") -> None:
        """Move to ``state`` by the one event that leads there from here (records made by hand)."""
        self.move(event_to(JOB_MOVES, f"job {self.name}", self.state, state), now, reason)

    def _to(self, state: State, now: float, reason: str) -> None:
        self.state = state
        entry = _stamps.get(state)
        if entry is None or entry[1] != now:
            entry = _stamps[state] = (state, now)
        history = self.history
        if isinstance(history, tuple):
            history = self.history = list(history)
        history.append(entry)
        if reason:
            self.reason = reason
        if state.final:  # it will hardly change again: a tuple is about half a list's size
            done = tuple(history)
            last = _ended_history[0]
            if done == last:  # the jobs of one pass and one report batch end with equal histories
                done = last
            else:
                _ended_history[0] = done
            self.history = done


class TaskView(Mapping[int | None, Task]):
    """A job's tasks by iteration, live and ended (a read-only mapping; ended ones are copies)."""

    __slots__ = ("_job",)

    def __init__(self, job: Job) -> None:
        self._job = job

    def __getitem__(self, it: int | None) -> Task:
        t = self._job.task(it)
        if t is None:
            raise KeyError(it)
        return t

    def get(self, it: int | None, default: object = None) -> Task | None:  # type: ignore[override]
        t = self._job.task(it)
        return t if t is not None else default  # type: ignore[return-value]

    def __contains__(self, it: object) -> bool:
        return (it is None or isinstance(it, int)) and self._job.has_task(it)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[int | None]:
        return self._job.iterations_with_tasks()

    def __len__(self) -> int:
        job = self._job
        n = len(job.live) if job.live else 0  # a live task's iteration has no row (add_task)
        if job.tmpl.iterations is None:
            return n + (job.row(None) is not None)
        rows = job.rows
        return n + (len(rows) - rows.count(0) if rows is not None else 0)

    def __bool__(self) -> bool:
        job = self._job
        if job.live:
            return True
        return job.rows is not None if job.tmpl.iterations is not None else job.row(None) is not None


class Registry:
    """Every job by name, in submission order, and the table of every ended task."""

    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self.ended = Ended()

    def __contains__(self, name: str) -> bool:
        return name in self.jobs

    def __len__(self) -> int:
        return len(self.jobs)

    def get(self, name: str) -> Job | None:
        return self.jobs.get(name)

    def add(self, job: Job) -> None:
        self.jobs[job.name] = job
        job.ended = self.ended

    def __iter__(self) -> Iterator[Job]:
        return iter(self.jobs.values())

    def task(self, name: str) -> Task | None:
        """A task by ``job`` or ``job:it``."""
        job_name, _, it = name.rpartition(":")
        if job_name and it.lstrip("-").isdigit():
            job = self.jobs.get(job_name)
            return job.task(int(it)) if job is not None else None
        job = self.jobs.get(name)
        return job.task(None) if job is not None else None
