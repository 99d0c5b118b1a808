"""Dependencies between jobs: who waits on whom, and what an end means for them. Pure, no I/O.

A job may wait on a whole job (``after: ["a"]``: the target's ``Job.waiters``), on one iteration of
one (``a:3``: ``Waiters.on_iteration``), or iteration by iteration on every iteration of one
(``a:${it}``: ``Waiters.per_iteration``; the waiter's ``iter_sat`` counts, per iteration, the
per-iteration dependencies met so far). A dependency that ends badly omits what waits on it (the
whole job, or the one iteration); one that succeeds lets it be queued once nothing else is awaited.
The core keeps the ``Waiters`` and calls ``wire`` at submit, ``iteration_ended`` and ``job_ended``
as tasks and jobs end; everything else here goes through the core's public verbs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .model import Dependency, Event, State

if TYPE_CHECKING:
    from .core import Core
    from .registry import Job


@dataclass
class Waiters:
    """Jobs waiting on one iteration of a job, and per iteration on every iteration of one, by the
    target's name (a whole-job dependency is on the target itself: ``Job.waiters``)."""

    on_iteration: dict[str, dict[int, list[Job]]] = field(default_factory=dict)
    per_iteration: dict[str, list[Job]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.on_iteration or self.per_iteration)


def wire(core: Core, job: Job, dep: Dependency, now: float) -> None:
    """A job just submitted depends on ``dep``: wait on it, or act on its end at once."""
    target = core.registry.jobs[dep.job]
    w = core.waiters
    if dep.per_iteration:
        job.iter_deps += 1
        if job.iter_sat is None:
            job.iter_sat = {}
        w.per_iteration.setdefault(target.name, []).append(job)
        it_range = job.tmpl.iterations
        assert it_range is not None
        for it in range(it_range.start, it_range.stop):
            ended = target.ended_state(it)
            if ended is not None:
                iteration_met(core, job, it, ended == State.SUCCEED, now)
            elif target.final:
                iteration_met(core, job, it, target.state == State.SUCCEED, now)
        return
    if dep.iteration is not None:
        ended = target.ended_state(dep.iteration)
        if ended is not None:
            if ended != State.SUCCEED:
                omit(core, job, f"dependency {dep} {ended.name}", now)
        elif target.final:
            omit(core, job, f"dependency {dep} did not run ({target.name} {target.state.name})", now)
        else:
            job.pending += 1
            w.on_iteration.setdefault(target.name, {}).setdefault(dep.iteration, []).append(job)
        return
    if target.final:
        if target.state != State.SUCCEED:
            omit(core, job, f"dependency {dep} {target.state.name}", now)
    else:
        job.pending += 1
        if target.waiters is None:
            target.waiters = []
        target.waiters.append(job)


def iteration_ended(core: Core, job: Job, it: int, state: State, now: float) -> None:
    """Iteration ``it`` of ``job`` ended in ``state``: tell what waits on it."""
    w = core.waiters
    ok = state == State.SUCCEED
    for waiter in w.per_iteration.get(job.name, ()):
        iteration_met(core, waiter, it, ok, now)
    waiting = w.on_iteration.get(job.name)
    if waiting and it in waiting:
        for waiter in waiting.pop(it):
            met(core, waiter, ok, f"{job.name}:{it} {state.name}", now)


def job_ended(core: Core, job: Job, now: float) -> None:
    """A job reached a final state: tell every job that waits on it."""
    ok = job.state == State.SUCCEED
    waiters, job.waiters = job.waiters or (), None
    for waiter in waiters:
        met(core, waiter, ok, f"{job.name} {job.state.name}", now)
    w = core.waiters
    if not w:
        return
    for waiter in w.per_iteration.pop(job.name, ()):
        if waiter.final or waiter.tmpl.iterations is None:
            continue
        for it in range(waiter.tmpl.iterations.start, waiter.tmpl.iterations.stop):
            # Not ended SUCCEED (never ran, or a failed attempt whose retry the job's end cancelled):
            # it never will. One that ended is already told (iteration_met ignores it again).
            if job.ended_state(it) != State.SUCCEED:
                iteration_met(core, waiter, it, False, now)
    for it, ws in w.on_iteration.pop(job.name, {}).items():
        it_ok = job.ended_state(it) == State.SUCCEED
        for waiter in ws:
            met(core, waiter, it_ok, f"{job.name}:{it}", now)


def iteration_met(core: Core, job: Job, it: int, ok: bool, now: float) -> None:
    """Iteration ``it`` of something ``job`` depends on per iteration has ended (``ok``: succeeded)."""
    if job.final or job.cancel_requested:
        return
    assert job.tmpl.iterations is not None
    if it not in job.tmpl.iterations or job.has_task(it):
        return
    assert job.iter_sat is not None  # made when the dependency was wired
    if not ok:
        task = core.new_task(job, it, now)
        job.iter_sat.pop(it, None)
        core.end_task(task, State.OMITTED, None, "a dependency of this iteration did not succeed", now)
        return
    n = job.iter_sat.get(it, 0) + 1
    if n >= job.iter_deps and job.iter_ready:
        job.iter_sat.pop(it, None)
        core.queue.push(job, it)
    else:
        job.iter_sat[it] = n


def met(core: Core, job: Job, ok: bool, what: str, now: float) -> None:
    """A whole-job or one-iteration dependency of ``job`` ended (``what`` names it and its state)."""
    if job.final:
        return
    if not ok:
        omit(core, job, f"dependency {what}", now)
        return
    job.pending -= 1
    if job.pending == 0 and not job.cancel_requested:
        core.unblock(job, now)


def omit(core: Core, job: Job, reason: str, now: float) -> None:
    """A dependency of ``job`` will never succeed: the job ends OMITTED, with what is left of it."""
    if job.final:
        return
    core.settle_unrun(job, job.total - job.done)
    core.move_job(job, Event.OMIT, now, reason)
    core.job_ended(job, now)
