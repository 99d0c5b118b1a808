"""What `pj alloc` reads and sends: alloc queues and allocations as plain dataclasses (pj.v1 <-> these)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pj.v1 import pj_pb2

IDLE_DEFAULT_S = 60.0  # as the master's (master/allocs.py)


@dataclass(frozen=True)
class AllocQueue:
    id: int
    nodes: int
    time_s: float
    max_allocations: int
    idle_timeout_s: float
    partition: str
    account: str
    extra_args: tuple[str, ...]
    removed: bool
    problem: str  # the last refusal or failure while submissions back off
    next_try_at: float  # no submission before this (epoch s); 0: none
    script_dir: str


@dataclass(frozen=True)
class Allocation:
    id: int
    queue: int
    job_id: str  # Slurm's ("" before sbatch answered)
    state: str
    nodes: tuple[str, ...]
    submitted_at: float
    started_at: float
    ended_at: float
    why: str  # why it ended
    ends_at: float  # when Slurm ends it; 0: unknown


@dataclass(frozen=True)
class AllocList:
    queues: tuple[AllocQueue, ...]
    allocations: tuple[Allocation, ...]


def spec_pb(nodes: int, time_s: float, max_allocations: int = 1, idle_timeout_s: float = IDLE_DEFAULT_S,
            partition: str = "", account: str = "", extra_args: Sequence[str] = ()) -> pj_pb2.AllocQueueSpec:
    return pj_pb2.AllocQueueSpec(nodes=nodes, time_s=time_s, max_allocations=max_allocations,
                                 idle_timeout_s=idle_timeout_s, partition=partition, account=account,
                                 extra_args=list(extra_args))


def alloc_list(m: pj_pb2.AllocListReply) -> AllocList:
    queues = tuple(
        AllocQueue(q.id, q.spec.nodes, q.spec.time_s, q.spec.max_allocations, q.spec.idle_timeout_s, q.spec.partition,
                   q.spec.account, tuple(q.spec.extra_args), q.removed, q.problem, q.next_try_at, q.script_dir)
        for q in m.queues
    )
    allocs = tuple(
        Allocation(a.id, a.queue, a.job_id, a.state, tuple(a.nodes), a.submitted_at, a.started_at, a.ended_at, a.why,
                   a.ends_at)
        for a in m.allocations
    )
    return AllocList(queues, allocs)


