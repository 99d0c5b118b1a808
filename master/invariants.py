"""What must hold of a master core between any two events (``Core.check``). Pure, read-only.

Tests call ``Core.check()`` after every event (tests/master/conftest.py wraps the event methods), and
a hypothesis state machine drives the core with random events (tests/master/test_core_machine.py).
Each broken invariant is one line of the ``InvariantError``: a bug in the core, never a user error.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from .model import State

if TYPE_CHECKING:
    from .allocs import Manager
    from .core import Core
    from .registry import Job


class InvariantError(AssertionError):
    """The core broke one of its invariants (the message lists each)."""


def problems(core: Core) -> list[str]:
    """Every broken invariant, one line each (empty: all hold)."""
    out: list[str] = []
    jobs = list(core.registry)
    _counts(core, jobs, out)
    _jobs(core, jobs, out)
    _running(core, out)
    _pool(core, out)
    _standbys(core, out)
    return out


def check(core: Core) -> None:
    bad = problems(core)
    if bad:
        raise InvariantError("core invariants broken:\n  " + "\n  ".join(bad))


def _counts(core: Core, jobs: list[Job], out: list[str]) -> None:
    want = Counter(j.state for j in jobs)
    have = +core.job_counts  # unary plus drops the zero counts
    if have != want:
        out.append(f"job_counts {dict(have)} != jobs by state {dict(want)}")
    unfinished = sum(1 for j in jobs if not j.final)
    if core.unfinished != unfinished:
        out.append(f"unfinished {core.unfinished} != {unfinished} jobs not final")
    # Exact for the states a task holds only once: placed (live) and ended without a retry (rows).
    live = Counter(t.state for j in jobs for t in (j.live or {}).values())
    rows = core.registry.ended.state_counts()
    for s in (State.SCHEDULED, State.EXECUTING):
        if core.task_counts[s] != live[s]:
            out.append(f"task_counts[{s.name}] {core.task_counts[s]} != {live[s]} live tasks {s.name}")
    for s in (State.SUCCEED, State.CANCELED, State.OMITTED):
        if core.task_counts[s] != rows[s]:
            out.append(f"task_counts[{s.name}] {core.task_counts[s]} != {rows[s]} ended tasks {s.name}")


def _jobs(core: Core, jobs: list[Job], out: list[str]) -> None:
    for j in jobs:
        if j.succeeded + j.failed != j.done or not 0 <= j.done <= j.total:
            out.append(f"job {j.name}: done {j.done}, succeeded {j.succeeded}, failed {j.failed}, total {j.total}")
        placed = [t for t in (j.live or {}).values() if t.id in core.running]
        if j.final:
            if j.done != j.total:
                out.append(f"job {j.name} is {j.state.name} with {j.done} of {j.total} tasks done")
            if placed:
                out.append(f"job {j.name} is {j.state.name} but tasks {[t.id for t in placed]} are placed")
        for it, t in (j.live or {}).items():
            if t.iteration != it or t.job is not j:
                out.append(f"job {j.name}: live[{it}] is task {t.id} of {t.job.name}:{t.iteration}")
            if t.state.final and t.state != State.FAILED:
                out.append(f"task {t.id} of {j.name} is {t.state.name} but still live")
            if j.row(it) is not None:
                out.append(f"job {j.name}: iteration {it} is both live and ended")


def _running(core: Core, out: list[str]) -> None:
    for tid, t in core.running.items():
        if t.id != tid:
            out.append(f"running[{tid}] is task {t.id}")
        if t.state not in (State.SCHEDULED, State.EXECUTING):
            out.append(f"running task {tid} is {t.state.name}")
        if (t.job.live or {}).get(t.iteration) is not t:
            out.append(f"running task {tid} is not its job's live task for iteration {t.iteration}")
        if not t.allocation:
            out.append(f"running task {tid} holds no allocation")


def _pool(core: Core, out: list[str]) -> None:
    """Per online node: what running tasks hold and what is free are disjoint and make up the node
    (a standby holds nothing: it waits on a share; an orphan's unclaimed share is not held)."""
    pool, sb, unheld = core.pool, core.standbys, core.recon.unheld
    held_cores: dict[str, Counter[int]] = {}
    held_gpus: dict[str, Counter[str]] = {}
    held_memory: Counter[str] = Counter()
    for t in core.running.values():
        if t.id in sb.behind:
            continue
        for share in t.allocation:
            if t.id in unheld.get(share.node, {}):
                continue
            held_cores.setdefault(share.node, Counter()).update(share.cores)
            held_gpus.setdefault(share.node, Counter()).update(share.gpus)
            held_memory[share.node] += share.memory
            if share.memory != t.job.tmpl.request.memory:
                out.append(f"task {t.id} holds {share.memory} bytes on {share.node}, "
                           f"its job asks for {t.job.tmpl.request.memory}")
    free_total = total = 0
    for node in pool.nodes:
        if not node.online:
            continue
        total += node.total_cores
        if not node.paused:
            free_total += len(node.free_cores)
        cores = held_cores.get(node.name, Counter())
        free = Counter(node.free_cores)
        both = cores + free
        twice = sorted(c for c, n in both.items() if n > 1)
        if twice:
            out.append(f"node {node.name}: cores {twice} held twice (or held and free)")
        if set(both) != set(range(node.total_cores)):
            lost = sorted(set(range(node.total_cores)) - set(both))
            extra = sorted(set(both) - set(range(node.total_cores)))
            out.append(f"node {node.name}: cores neither held nor free {lost}, unknown cores {extra}")
        gboth = held_gpus.get(node.name, Counter()) + Counter(node.free_gpus)
        if any(n > 1 for n in gboth.values()) or set(gboth) != set(node.gpus):
            out.append(f"node {node.name}: GPUs held + free {dict(gboth)} != the node's {node.gpus}")
        if node.free_memory < 0 or node.free_memory + held_memory[node.name] != node.info.memory_bytes:
            out.append(f"node {node.name}: free memory {node.free_memory} + held {held_memory[node.name]} "
                       f"!= the registered {node.info.memory_bytes} (or free is negative)")
    early = [n.name for n in pool.nodes[: pool.first_open] if n.free_cores]
    if early:
        out.append(f"nodes {early} have free cores but come before pool.first_open {pool.first_open}")
    if pool.free_cores != free_total:
        out.append(f"pool.free_cores {pool.free_cores} != {free_total} free on online, unpaused nodes")
    if pool.total_cores != total:
        out.append(f"pool.total_cores {pool.total_cores} != {total} on online nodes")


def _standbys(core: Core, out: list[str]) -> None:
    sb = core.standbys
    for tid in sb.withdrawing - set(sb.behind):
        out.append(f"task {tid} is being withdrawn but is no standby")
    cores = sum(len(core.running[t].allocation[0].cores) for t in sb.withdrawing if t in core.running)
    if sb.withdrawing_cores != cores:
        out.append(f"standbys.withdrawing_cores {sb.withdrawing_cores} != {cores}, the cores of those withdrawn")
    for node, parked in sb.parked.items():
        for tid in parked:
            if tid not in core.running:
                out.append(f"task {tid} is parked on {node} but does not run")
            elif tid in sb.ahead:
                out.append(f"task {tid} is parked on {node} but has a standby behind it")
    if len(sb.behind) > sb.limit:
        out.append(f"{len(sb.behind)} standbys, more than their limit {sb.limit}")
    for tid in core.recon.orphans:
        if tid not in core.running:
            out.append(f"orphan {tid} is not a running task")
        elif tid in sb.behind:
            out.append(f"orphan {tid} is also a standby")
    for sid, before in sb.behind.items():
        if sb.ahead.get(before.id) is None or sb.ahead[before.id].id != sid:
            out.append(f"standby {sid} waits on task {before.id}, which does not have it ahead")
        t = core.running.get(sid)
        if t is None or t.state != State.SCHEDULED:
            out.append(f"standby {sid} is not a running SCHEDULED task")
        if before.id not in core.running:
            out.append(f"standby {sid} waits on task {before.id}, which is not running")
    for tid, standby in sb.ahead.items():
        if sb.behind.get(standby.id) is None or sb.behind[standby.id].id != tid:
            out.append(f"task {tid} has standby {standby.id} ahead, which does not wait on it")


def alloc_problems(m: Manager) -> list[str]:
    """Every broken invariant of the allocation manager (allocs.py), one line each."""
    from .allocs import WAITING, AllocState

    out: list[str] = []
    for q in m.queues.values():
        mine = m.of(q)
        live = [a for a in mine if not a.state.final]
        if len(live) > q.max_allocs:
            out.append(f"alloc queue {q.id}: {len(live)} live allocations, more than --max-allocations {q.max_allocs}")
        if q.removed and live:
            out.append(f"alloc queue {q.id}: removed, yet allocations {[a.id for a in live]} live")
        if (q.fails > 0) != (q.next_try_at > 0):
            out.append(f"alloc queue {q.id}: fails {q.fails} but next try at {q.next_try_at}")
        if sum(1 for a in live if a.state in WAITING) > max(1, q.max_allocs):
            out.append(f"alloc queue {q.id}: more waiting allocations than it may have")
    for a in m.allocs.values():
        if a.queue not in m.queues:
            out.append(f"allocation {a.id}: of unknown alloc queue {a.queue}")
        if a.state is AllocState.QUEUED and a.job_id:
            out.append(f"allocation {a.id}: QUEUED with a Slurm job id {a.job_id}")
        if a.state in (AllocState.PENDING, AllocState.STARTING, AllocState.RUNNING, AllocState.RELEASING) \
                and not a.job_id:
            out.append(f"allocation {a.id}: {a.state.value} without a Slurm job id")
        if a.state.final and not a.why:
            out.append(f"allocation {a.id}: {a.state.value} without a reason")
        if not a.state.final and a.why:
            out.append(f"allocation {a.id}: {a.state.value} with an end reason {a.why!r}")
        if a.nodes and a.state not in (AllocState.RUNNING, AllocState.RELEASING) and not a.state.final:
            out.append(f"allocation {a.id}: {a.state.value} with nodes {sorted(a.nodes)}")
        if a.job_id and m.by_job.get(a.job_id) != a.id:
            out.append(f"allocation {a.id}: job {a.job_id} not mapped to it")
        for n in a.nodes:
            if m.by_node.get(n) != a.id:
                out.append(f"allocation {a.id}: node {n} not mapped to it")
    for n in m.idle_since:
        if n not in m.by_node:
            out.append(f"node {n}: idle-tracked but of no allocation")
    return out


def check_allocs(m: Manager) -> None:
    bad = alloc_problems(m)
    if bad:
        raise InvariantError("allocation manager invariants broken:\n  " + "\n  ".join(bad))
