"""Rebuild a core from what the journal kept (``pj-master --resume``): pure, no I/O.

The replay runs in four steps, on a fresh core:

1. every journaled batch is submitted again, same names, same order (``Core.submit``);
2. every task that had reached a final state gets its record back (state, exit code, reason,
   times, nodes/cores) before anything is propagated, so that a restored iteration is never
   queued again by a per-iteration dependency;
3. those tasks are then settled in the order they ended: the jobs' counts, the dependents (a job
   whose dependency had succeeded becomes ready, one whose dependency failed is omitted), and the
   jobs' own end;
4. every final job gets its journaled state, reason and history back, then the cancel and finish
   requests are replayed.

Before step 2, each task's earlier attempts (those queued again: a retry, a lost node, an
interruption) are put back on their job (``AttemptRecord``), with the retries they used: a resumed
master continues each task's retry budget and crash count, and the report lists every attempt.

What was queued when the master died is left queued: it runs again. A task that was placed then
(journaled in ``placements``, not final) is an *orphan*: back in its job with its allocation, in
state SCHEDULED, holding no core until its node registers; ``reconcile.py`` then adopts it, applies
its exit, or queues it again. Task ids continue after the highest one the crashed master gave.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from . import reconcile
from .core import Core
from .model import END_EVENTS, JOB_MOVES, Allocation, Event, JobSpec, State
from .registry import Attempt, Job, Task

History = tuple[tuple[State, float], ...]


class TaskRecord(NamedTuple):
    """One task (a job, or one iteration of it) in its final state, as journaled (a tuple: a
    resume makes a million of them)."""

    job: str
    iteration: int | None
    state: State
    exit_code: int | None
    reason: str
    history: History
    allocation: Allocation = ()
    usage: bytes = b""  # CPU times and peak memory, packed (usage.py)
    stderr_tail: str = ""


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """An ended attempt of a task that was queued again, as journaled."""

    job: str
    iteration: int | None
    attempt: Attempt
    retried: bool  # it used one of its job's retries (an interrupted attempt did not)


class JobRecord(NamedTuple):
    """One job in its final state, as journaled."""

    name: str
    state: State
    reason: str
    history: History


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """A user's cancel (``names``) or finish (``drain``) request, as journaled."""

    kind: str  # "cancel" or "finish"
    names: tuple[str, ...] = ()
    drain: bool = True


@dataclass(frozen=True, slots=True)
class Placement:
    """A task placed on nodes (its launch may have reached its agent), as journaled."""

    task_id: int
    job: str
    iteration: int | None
    allocation: Allocation


@dataclass(frozen=True, slots=True)
class Batch:
    specs: Sequence[JobSpec]
    time: float
    names: Sequence[str] | None = None  # as Core.submit takes them


def restore(
    core: Core,
    batches: Iterable[Batch],
    tasks: Iterable[TaskRecord],
    jobs: Iterable[JobRecord],
    requests: Iterable[RequestRecord],
    now: float,
    placements: Sequence[Placement] = (),
    orphan_timeout: float = 60.0,
    attempts: Iterable[AttemptRecord] = (),
) -> None:
    """Replay a journal into ``core`` (fresh, no node yet). The Outbox keeps the changed jobs, but
    not the ended tasks and finished jobs: those are in the journal already. ``placements``: the
    tasks placed and not final; those whose node has not registered ``orphan_timeout`` seconds after
    ``now`` are queued again. ``attempts``: the earlier attempts of tasks, in the order they ended."""
    for batch in batches:
        core.submit(batch.specs, batch.time, names=batch.names)
    for arec in attempts:
        restore_attempt(core, arec)
    core.next_task_id = max(core.next_task_id, 1 + max((p.task_id for p in placements), default=0))
    first = len(core.registry.ended)  # restored tasks are rows first.. of the table, in journal order
    restore_tasks(core, tasks, now)
    last = len(core.registry.ended)
    for p in placements:
        restore_orphan(core, p, now)
    if core.recon.orphans:
        core.recon.orphan_deadline = now + orphan_timeout
    settle_rows(core, first, last)
    for jrec in jobs:
        restore_job(core, jrec, now)
    for req in requests:
        if req.kind == "cancel":
            core.cancel([n for n in req.names if n in core.registry], now)
        elif req.kind == "finish":
            core.finish(req.drain, now)
    out = core.outbox
    out.ended.clear()
    out.finished.clear()
    out.placed.clear()
    out.unplaced.clear()
    out.attempts.clear()


def restore_attempt(core: Core, rec: AttemptRecord) -> None:
    """Give a task (iteration) back an earlier attempt, and the retry it used."""
    job = core.registry.get(rec.job)
    if job is None:
        return
    it_range = job.tmpl.iterations
    if (rec.iteration is None) != (it_range is None):
        return
    if it_range is not None and rec.iteration not in range(it_range.start, it_range.stop):
        return
    if job.attempts is None:
        job.attempts = {}
    job.attempts.setdefault(rec.iteration, []).append(rec.attempt)
    if rec.retried:
        if job.retried is None:
            job.retried = {}
        job.retried[rec.iteration] = job.retried.get(rec.iteration, 0) + 1


def restore_orphan(core: Core, p: Placement, now: float) -> Task | None:
    """Put a placed, not final task back as SCHEDULED, holding no core yet (``reconcile.orphan``)."""
    job = core.registry.get(p.job)
    if job is None or job.final or not p.allocation or p.task_id in core.running:
        return None
    it_range = job.tmpl.iterations
    if (p.iteration is None) != (it_range is None) or job.has_task(p.iteration):
        return None
    if it_range is not None and p.iteration not in range(it_range.start, it_range.stop):
        return None
    task = Task(p.task_id, job, p.iteration, now)
    job.add_task(task)
    core.task_counts[State.QUEUED] += 1
    task.allocation = p.allocation
    core.move_task(task, Event.PLACE, now)
    core.running[task.id] = task
    job.started += 1
    if job.state == State.QUEUED:
        core.move_job(job, Event.PLACE, now)
    reconcile.orphan(core, task)
    return task


def restore_tasks(core: Core, records: Iterable[TaskRecord], now: float) -> None:
    """Put each final task back into its job, in order, as the next row of the ended table; nothing
    is propagated yet (``settle_rows``). A record with no such job or iteration, or whose iteration
    has a task already, is skipped (the loop a resume spends its time in)."""
    jobs = core.registry.jobs
    add = core.registry.ended.add_fields
    counts: dict[State, int] = {}
    task_id = core.next_task_id
    for rec in records:
        job = jobs.get(rec.job)
        state = rec.state
        if job is None or job.state._value_ >= State.SUCCEED or state._value_ < State.SUCCEED:
            continue
        it = rec.iteration
        it_range = job.tmpl.iterations
        if it_range is None:
            if it is not None or job.row(None) is not None or job.live:
                continue
        elif it is None or not it_range.start <= it < it_range.stop or job.has_task(it):
            continue
        counts[state] = counts.get(state, 0) + 1
        row = add(job, it, task_id, state, rec.exit_code, rec.history or ((state, now),), rec.allocation,
                  rec.reason, rec.usage, rec.stderr_tail)
        task_id += 1
        job.keep_row(it, row)
    core.next_task_id = task_id
    core.task_counts.update(counts)


def settle_rows(core: Core, first: int, last: int) -> None:
    """Settle the restored tasks of rows first..last-1, in the order they ended: their jobs' counts
    (and first placement and start), their dependents, their jobs' ends."""
    settle, move_job = core.settle_task, core.move_job
    queued, scheduled, omitted = State.QUEUED, State.SCHEDULED, State.OMITTED
    for job, it, state, reason, sched, execd, end in core.registry.ended.settled(first, last):
        if job.state._value_ >= State.SUCCEED:  # final
            continue
        if state is not omitted:
            job.started += 1
            if job.state is queued:
                move_job(job, Event.PLACE, sched)
            if job.state is scheduled:
                move_job(job, Event.START, execd)
        settle(job, it, state, reason, end)


def restore_job(core: Core, rec: JobRecord, now: float) -> None:
    """Give a job its journaled final state, reason and history (ending it first if the replay
    has not: a job canceled, omitted or refused before any of its tasks ran)."""
    job = core.registry.get(rec.name)
    if job is None or not rec.state.final:
        return
    if not job.final:
        core.settle_unrun(job, job.total - job.done)
        if (job.state, END_EVENTS[rec.state]) in JOB_MOVES:
            core.move_job(job, END_EVENTS[rec.state], now, rec.reason)
        else:
            _force_state(core, job, rec.state)
            core.unfinished -= 1
        core.job_ended(job, now)
    elif job.state != rec.state:
        _force_state(core, job, rec.state)
    job.history = tuple(rec.history) or job.history
    job.reason = rec.reason


def _force_state(core: Core, job: Job, state: State) -> None:
    core.job_counts[job.state] -= 1
    core.job_counts[state] += 1
    job.state = state
    core.outbox.changed[job.name] = job
