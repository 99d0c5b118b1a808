"""The registry: every job and every task (iteration) the master knows, with its history.

Records are mutable slot classes (hundreds of thousands of them must stay small);
every state change goes through ``set_state`` and so through the transition table.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

from .model import TRANSITIONS, Allocation, JobSpec, State, check_transition


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

    def set_state(self, state: State, now: float, reason: str = "") -> None:
        if state not in TRANSITIONS[self.state]:  # checked here: the message is made only when it fails
            check_transition(f"task {self.name}", self.state, state)
        self.state = state
        entry = _stamps.get(state)  # _stamp, inlined: this runs three times per task
        if entry is None or entry[1] != now:
            entry = _stamps[state] = (state, now)
        self.history.append(entry)
        if reason:
            self.reason = reason


class Job:
    """A job as submitted, with the bookkeeping of its iterations and dependencies."""

    __slots__ = (
        "attempts",
        "cancel_reason",
        "cancel_requested",
        "done",
        "failed",
        "history",
        "iter_deps",
        "iter_ready",
        "iter_sat",
        "next_it",
        "pending",
        "reason",
        "retried",
        "seq",
        "spec",
        "started",
        "state",
        "succeeded",
        "tasks",
        "total",
        "waiters",
    )

    def __init__(self, spec: JobSpec, seq: int, now: float) -> None:
        self.spec = spec
        self.seq = seq
        self.state = State.QUEUED
        self.history: list[tuple[State, float]] = [_stamp(State.QUEUED, now)]
        self.reason = ""
        it = spec.iterations
        self.total = it.count if it is not None else 1
        # Iterations are expanded lazily: next_it is the next one not yet taken.
        self.next_it = it.start if it is not None else 0
        self.started = 0  # tasks placed, of `total` (a task queued again for a retry is not)
        self.done = 0  # tasks in a final state (including omitted / canceled ones)
        self.succeeded = 0
        self.failed = 0
        self.tasks: dict[int | None, Task] = {}
        self.pending = 0  # unmet whole-job dependencies
        self.iter_deps = 0  # per-iteration dependencies each iteration waits for
        # iteration -> per-iteration deps met so far (made with the first per-iteration dependency)
        self.iter_sat: dict[int, int] | None = None
        self.iter_ready = False  # per-iteration mode: the job-level deps are met
        self.waiters: list[Job] | None = None  # jobs whose whole-job dependency is this job (made on the first)
        self.cancel_requested = False
        self.cancel_reason = "canceled"  # the reason its canceled tasks and the job end with
        self.retried: dict[int | None, int] | None = None  # iteration -> retries used (made on the first)
        # iteration -> its earlier attempts, oldest first (made on the first retry: nothing for the rest)
        self.attempts: dict[int | None, list[Attempt]] | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def final(self) -> bool:
        return self.state.final

    def set_state(self, state: State, now: float, reason: str = "") -> None:
        if state not in TRANSITIONS[self.state]:
            check_transition(f"job {self.name}", self.state, state)
        self.state = state
        entry = _stamps.get(state)
        if entry is None or entry[1] != now:
            entry = _stamps[state] = (state, now)
        self.history.append(entry)
        if reason:
            self.reason = reason


class Registry:
    """Every job by name, in submission order."""

    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}

    def __contains__(self, name: str) -> bool:
        return name in self.jobs

    def __len__(self) -> int:
        return len(self.jobs)

    def get(self, name: str) -> Job | None:
        return self.jobs.get(name)

    def add(self, job: Job) -> None:
        self.jobs[job.name] = job

    def __iter__(self) -> Iterator[Job]:
        return iter(self.jobs.values())

    def task(self, name: str) -> Task | None:
        """A task by ``job`` or ``job:it``."""
        job_name, _, it = name.rpartition(":")
        if job_name and it.lstrip("-").isdigit():
            job = self.jobs.get(job_name)
            return job.tasks.get(int(it)) if job is not None else None
        job = self.jobs.get(name)
        return job.tasks.get(None) if job is not None else None
