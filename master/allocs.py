"""Allocations on demand: the pure manager behind `pj alloc` (no I/O, no clock).

A user's ``pj alloc add`` makes an *alloc queue* (``AllocQueue``): how to ask Slurm for an
allocation (nodes, time, partition, account, extra sbatch arguments), how many may live at once
(``max_allocs``) and how long its agents may stay idle (``idle_s``). The manager is fed with what
the shell saw (an sbatch's answer, Slurm's view of a job, an agent that joined or left) and, on
``step(now, demand, idle)``, hands back commands: submit an allocation, cancel one, release the
nodes of one. The shell (allocshell.py) runs them with sbatch/scancel and the agents' streams.

Each allocation moves by ``MOVES[(state, event)]``; a move not in the table raises
``IllegalMove``. Submissions back off after a refused sbatch or a failed allocation (5 s doubling
to 10 min) and never loop; an allocation whose nodes never join within ``join_timeout_s`` of its
start is failed and cancelled.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

BACKOFF_FIRST_S = 5.0
BACKOFF_MAX_S = 600.0
JOIN_TIMEOUT_S = 120.0  # from Slurm's start of an allocation to its first agent's Register
IDLE_DEFAULT_S = 60.0


class AllocState(enum.Enum):
    QUEUED = "QUEUED"  # sbatch sent, no answer yet
    PENDING = "PENDING"  # Slurm job id known, not started
    STARTING = "STARTING"  # Slurm runs it; no agent has joined yet
    RUNNING = "RUNNING"  # its agents joined
    RELEASING = "RELEASING"  # idle: its agents were told to leave
    ENDED = "ENDED"  # the Slurm job ended after its agents joined
    FAILED = "FAILED"  # ended, or gave up on, before any agent joined
    CANCELLED = "CANCELLED"  # cancelled by the master (no longer needed, or `pj alloc remove`)
    REFUSED = "REFUSED"  # sbatch refused it

    @property
    def final(self) -> bool:
        return self in FINAL


FINAL = frozenset({AllocState.ENDED, AllocState.FAILED, AllocState.CANCELLED, AllocState.REFUSED})
WAITING = frozenset({AllocState.QUEUED, AllocState.PENDING, AllocState.STARTING})  # nodes to come


class AllocEvent(enum.Enum):
    SUBMITTED = "submitted"  # sbatch answered a job id
    REFUSE = "refuse"  # sbatch failed
    START = "start"  # Slurm says it runs
    JOIN = "join"  # an agent of it registered
    IDLE = "idle"  # every node of it idle for idle_s: released
    GONE = "gone"  # Slurm no longer runs it
    NEVER_JOINED = "never_joined"  # started join_timeout_s ago, no agent came
    CANCEL = "cancel"  # not needed any more, or removed


S, E = AllocState, AllocEvent
MOVES: dict[tuple[AllocState, AllocEvent], AllocState] = {
    (S.QUEUED, E.SUBMITTED): S.PENDING,
    (S.QUEUED, E.REFUSE): S.REFUSED,
    (S.QUEUED, E.CANCEL): S.CANCELLED,  # its job id, when it comes, is cancelled at once
    (S.CANCELLED, E.SUBMITTED): S.CANCELLED,
    (S.CANCELLED, E.REFUSE): S.CANCELLED,
    (S.PENDING, E.START): S.STARTING,
    (S.PENDING, E.JOIN): S.RUNNING,
    (S.PENDING, E.GONE): S.FAILED,
    (S.PENDING, E.CANCEL): S.CANCELLED,
    (S.STARTING, E.START): S.STARTING,
    (S.STARTING, E.JOIN): S.RUNNING,
    (S.STARTING, E.GONE): S.FAILED,
    (S.STARTING, E.NEVER_JOINED): S.FAILED,
    (S.STARTING, E.CANCEL): S.CANCELLED,
    (S.RUNNING, E.START): S.RUNNING,
    (S.RUNNING, E.JOIN): S.RUNNING,
    (S.RUNNING, E.IDLE): S.RELEASING,
    (S.RUNNING, E.GONE): S.ENDED,
    (S.RUNNING, E.CANCEL): S.CANCELLED,
    (S.RELEASING, E.START): S.RELEASING,
    (S.RELEASING, E.JOIN): S.RELEASING,  # a late agent: told to leave too
    (S.RELEASING, E.GONE): S.ENDED,
    (S.RELEASING, E.CANCEL): S.CANCELLED,
}
del S, E


class IllegalMove(RuntimeError):
    """An allocation was sent an event its state has no move for: a bug in the manager's caller."""


@dataclass
class AllocQueue:
    """One `pj alloc add`: how to ask for allocations, and how its submissions fare."""

    id: int
    nodes: int
    time_s: float
    max_allocs: int = 1
    idle_s: float = IDLE_DEFAULT_S
    partition: str = ""
    account: str = ""
    extra: tuple[str, ...] = ()
    removed: bool = False
    fails: int = 0  # refused or failed allocations in a row (backoff)
    next_try_at: float = 0.0  # no submission before this (backoff); 0: none
    problem: str = ""  # the last refusal or failure, until an allocation of it joins
    cores: int = 0  # cores per node its agents registered (0: none joined yet)

    def check(self) -> None:
        """Raise ValueError naming the option and the fix."""
        if self.nodes < 1:
            raise ValueError(f"--nodes: at least 1, got {self.nodes}")
        if not self.time_s >= 60:
            raise ValueError(f"--time: at least 1 minute (Slurm's unit), got {self.time_s:g} s")
        if self.max_allocs < 1:
            raise ValueError(f"--max-allocations: at least 1, got {self.max_allocs}")
        if not self.idle_s > 0:
            raise ValueError(f"--idle-timeout: more than 0 s, got {self.idle_s:g}")

    def fits(self, shape: tuple[int, int, int, int, float]) -> bool:
        """Whether work of ``shape`` (nodes, cores, GPUs, memory, walltime s) could run in one of its
        allocations: few enough nodes, cores per node when known, a walltime its time holds."""
        nodes, cores, _gpus, _memory, walltime = shape
        if nodes > self.nodes or (self.cores and cores > self.cores):
            return False
        return not walltime or walltime <= self.time_s - start_margin(self.time_s)


def _holds(a: Alloc, shape: tuple[int, int, int, int, float], now: float) -> bool:
    """Whether work of ``shape`` placed now would end before the allocation does."""
    walltime = shape[4]
    return not walltime or not a.ends_at or now + walltime <= a.ends_at


def start_margin(time_s: float) -> float:
    """What an allocation's time loses before its agents take work: a task's walltime must leave this."""
    return min(60.0, time_s / 10)


@dataclass
class Alloc:
    id: int
    queue: int
    state: AllocState = AllocState.QUEUED
    job_id: str = ""  # Slurm's
    submitted_at: float = 0.0
    started_at: float = 0.0  # Slurm's start (0: not yet)
    ended_at: float = 0.0
    why: str = ""  # why it ended (final states)
    nodes: set[str] = field(default_factory=set)  # agents of it that joined and have not left
    joined: int = 0  # agents of it that ever joined
    ends_at: float = 0.0  # when Slurm ends it, as its agents said (0: unknown)

    def move(self, event: AllocEvent) -> AllocState:
        new = MOVES.get((self.state, event))
        if new is None:
            raise IllegalMove(f"allocation {self.id}: no move for {event.value} in state {self.state.value}")
        self.state = new
        return new


@dataclass(frozen=True)
class Submit:
    alloc: int
    queue: AllocQueue


@dataclass(frozen=True)
class Cancel:
    alloc: int
    job_id: str


@dataclass(frozen=True)
class Release:
    alloc: int
    nodes: tuple[str, ...]


Command = Submit | Cancel | Release


def backoff(fails: int) -> float:
    """Seconds before the next submission after ``fails`` refused or failed ones in a row."""
    return min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** max(0, fails - 1))


class Manager:
    """Every alloc queue and allocation; commands out of ``step`` (and of the events that need one)."""

    def __init__(self, join_timeout_s: float = JOIN_TIMEOUT_S) -> None:
        self.queues: dict[int, AllocQueue] = {}
        self.allocs: dict[int, Alloc] = {}
        self.by_job: dict[str, int] = {}  # Slurm job id -> allocation id
        self.by_node: dict[str, int] = {}  # node -> the allocation its agent came with
        self.idle_since: dict[str, float] = {}  # node -> since when it holds nothing
        self.join_timeout_s = join_timeout_s
        self._next_queue = 1
        self._next_alloc = 1
        self.out: list[Command] = []

    # ------------------------------------------------------------------ user verbs

    def add_queue(self, nodes: int, time_s: float, max_allocs: int = 1, idle_s: float = IDLE_DEFAULT_S,
                  partition: str = "", account: str = "", extra: Iterable[str] = ()) -> AllocQueue:
        q = AllocQueue(self._next_queue, nodes, time_s, max_allocs, idle_s, partition, account, tuple(extra))
        q.check()
        self._next_queue += 1
        self.queues[q.id] = q
        return q

    def remove_queue(self, queue_id: int, now: float) -> AllocQueue:
        """Stop submitting for it and cancel its live allocations (their tasks are queued again)."""
        q = self.queues.get(queue_id)
        if q is None or q.removed:
            raise KeyError(queue_id)
        q.removed = True
        for a in self.of(q):
            if not a.state.final:
                self._cancel(a, now, "removed by `pj alloc remove`")
        return q

    def of(self, q: AllocQueue) -> list[Alloc]:
        return [a for a in self.allocs.values() if a.queue == q.id]

    def live(self) -> list[Alloc]:
        """Allocations Slurm knows and that are not final: the shell polls these."""
        return [a for a in self.allocs.values() if a.job_id and not a.state.final]

    # ------------------------------------------------------------------ what the shell saw

    def submitted(self, alloc_id: int, job_id: str, now: float) -> None:
        a = self.allocs[alloc_id]
        was = a.state
        a.move(AllocEvent.SUBMITTED)
        a.job_id = job_id
        self.by_job[job_id] = a.id
        if was is AllocState.CANCELLED:
            self.out.append(Cancel(a.id, job_id))

    def refused(self, alloc_id: int, error: str, now: float) -> None:
        a = self.allocs[alloc_id]
        if a.move(AllocEvent.REFUSE) is AllocState.REFUSED:
            self._end(a, now, f"sbatch refused it: {error}")
            self._failed(self.queues[a.queue], a, now)

    def started(self, job_id: str, at: float) -> None:
        a = self._by_job(job_id)
        if a is not None and (a.state, AllocEvent.START) in MOVES:
            a.move(AllocEvent.START)
            a.started_at = a.started_at or at

    def gone(self, job_id: str, why: str, now: float) -> None:
        """Slurm no longer runs the job (``why``: its end state and reason, as Slurm says)."""
        a = self._by_job(job_id)
        if a is None or a.state.final:
            return
        was = a.state
        a.move(AllocEvent.GONE)
        if a.state is AllocState.FAILED:
            self._end(a, now, f"ended before any agent joined ({why or 'gone from squeue'})")
            self._failed(self.queues[a.queue], a, now)
        else:
            self._end(a, now, "idle: released" if was is AllocState.RELEASING else (why or "ended"))

    def node_joined(self, node: str, job_id: str, cores: int, now: float, ends_at: float = 0.0) -> bool:
        """An agent registered with its Slurm job id. False: it came with an allocation that is
        over (cancelled, failed): the shell tells it to leave."""
        a = self._by_job(job_id)
        if a is None:
            return True  # started by hand: not ours to manage
        self.by_node[node] = a.id
        self.idle_since.pop(node, None)
        if a.state.final:
            return False
        a.move(AllocEvent.JOIN)
        a.nodes.add(node)
        a.joined += 1
        a.ends_at = max(a.ends_at, ends_at)
        q = self.queues[a.queue]
        q.cores = cores if not q.cores else min(q.cores, cores)
        q.fails, q.next_try_at, q.problem = 0, 0.0, ""
        if a.state is AllocState.RELEASING:
            self.out.append(Release(a.id, (node,)))
        return True

    def node_left(self, node: str) -> None:
        aid = self.by_node.pop(node, None)
        self.idle_since.pop(node, None)
        if aid is not None:
            self.allocs[aid].nodes.discard(node)

    # ------------------------------------------------------------------ decisions

    def step(self, now: float, demand: Mapping[tuple[int, int, int, int, float], int],
             idle: Iterable[str]) -> list[Command]:
        """Decide. ``demand``: ready tasks that wait (none can start now), by shape; ``idle``: nodes
        that hold nothing now."""
        idle_now = set(idle)
        for node in list(self.idle_since):
            if node not in idle_now:
                del self.idle_since[node]
        for node in idle_now:
            if node in self.by_node:
                self.idle_since.setdefault(node, now)
        for a in self.allocs.values():
            if a.state is AllocState.STARTING and a.started_at and now - a.started_at > self.join_timeout_s:
                a.move(AllocEvent.NEVER_JOINED)
                self._end(a, now, f"nodes never joined within {self.join_timeout_s:g} s of its start")
                self.out.append(Cancel(a.id, a.job_id))
                self._failed(self.queues[a.queue], a, now)
        for q in self.queues.values():
            if not q.removed:
                self._decide(q, now, demand)
        out, self.out = self.out, []
        return out

    def _decide(self, q: AllocQueue, now: float, demand: Mapping[tuple[int, int, int, int, float], int]) -> None:
        mine = [a for a in self.of(q) if not a.state.final]
        fitting = [s for s in demand if q.fits(s)]
        wanted = sum(demand[s] * s[0] * s[1] for s in fitting)  # cores' worth of waiting work
        waiting = [a for a in mine if a.state in WAITING]
        for a in mine:  # idle, with nothing waiting that it could still run before its end: released
            if a.state is AllocState.RUNNING and a.nodes and not any(_holds(a, s, now) for s in fitting) and all(
                n in self.idle_since and now - self.idle_since[n] >= q.idle_s for n in a.nodes
            ):
                a.move(AllocEvent.IDLE)
                self.out.append(Release(a.id, tuple(sorted(a.nodes))))
        if not wanted:
            for a in waiting:
                if a.state is not AllocState.QUEUED:  # a QUEUED one is cancelled once its sbatch answers
                    self._cancel(a, now, "not needed: no work waits")
            return
        if now < q.next_try_at:
            return
        # How many allocations the waiting work fills: unknown node size counts one at a time.
        per = q.nodes * q.cores
        need = math.ceil(wanted / per) if per else 1
        if len(waiting) < need and len(mine) < q.max_allocs:
            a = Alloc(self._next_alloc, q.id, submitted_at=now)
            self._next_alloc += 1
            self.allocs[a.id] = a
            self.out.append(Submit(a.id, q))

    def _cancel(self, a: Alloc, now: float, why: str) -> None:
        a.move(AllocEvent.CANCEL)
        self._end(a, now, why)
        if a.job_id:
            self.out.append(Cancel(a.id, a.job_id))
        if a.nodes:
            self.out.append(Release(a.id, tuple(sorted(a.nodes))))

    @staticmethod
    def _end(a: Alloc, now: float, why: str) -> None:
        a.ended_at = now
        a.why = why

    @staticmethod
    def _failed(q: AllocQueue, a: Alloc, now: float) -> None:
        q.fails += 1
        wait = backoff(q.fails)
        q.next_try_at = now + wait
        q.problem = f"allocation {a.id}: {a.why}"

    def _by_job(self, job_id: str) -> Alloc | None:
        aid = self.by_job.get(job_id)
        return None if aid is None else self.allocs[aid]

    # ------------------------------------------------------------------ reports

    def problems(self, now: float) -> list[str]:
        """One line per alloc queue whose last allocation was refused or failed (`pj status`)."""
        return [
            f"alloc queue {q.id}: {q.problem}; "
            + (f"backing off, next try in {q.next_try_at - now:.0f} s" if q.next_try_at > now else "tries again as work waits")
            for q in self.queues.values() if q.problem and not q.removed
        ]
