"""The master's domain model: job specs, resource requests, states and the one transition table.

Plain data, no I/O. Specs arrive here from protobuf through ``convert.py`` and are
never protobuf themselves.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import NamedTuple

from pj.common.sizes import format_size


class State(enum.IntEnum):
    """States of jobs and of tasks (one task per iteration). Numbers match pj.v1.JobState."""

    QUEUED = 1
    SCHEDULED = 2
    EXECUTING = 3
    SUCCEED = 4
    FAILED = 5
    CANCELED = 6
    OMITTED = 7

    @property
    def final(self) -> bool:
        return self._value_ >= 4  # SUCCEED and after (a plain int compare: this is called per task)


FINAL_STATES = frozenset(s for s in State if s.final)

class Event(enum.Enum):
    """What moves a job or a task from one state to the next (the tables below)."""

    PLACE = "place"  # put on nodes (a job: its first task)
    UNPLACE = "unplace"  # a job whose only placed task was a standby its agent gave back unstarted
    START = "start"  # its agent started it (a job: its first task)
    SUCCEED = "succeed"  # it exited 0 (a job: every task did)
    FAIL = "fail"  # it failed: exit code, signal, lost node, walltime; a job: can never fit, or a task failed
    CANCEL = "cancel"  # a user's cancel, or a finish without drain
    OMIT = "omit"  # a dependency did not succeed


Q, S, X = State.QUEUED, State.SCHEDULED, State.EXECUTING
# The legal moves, (state, event) -> next state; anything else is a bug (IllegalTransition).
JOB_MOVES: dict[tuple[State, Event], State] = {
    (Q, Event.PLACE): S, (S, Event.UNPLACE): Q, (S, Event.START): X, (X, Event.SUCCEED): State.SUCCEED,
    (Q, Event.FAIL): State.FAILED, (S, Event.FAIL): State.FAILED, (X, Event.FAIL): State.FAILED,
    (Q, Event.CANCEL): State.CANCELED, (S, Event.CANCEL): State.CANCELED, (X, Event.CANCEL): State.CANCELED,
    (Q, Event.OMIT): State.OMITTED,
}
TASK_MOVES: dict[tuple[State, Event], State] = {
    (Q, Event.PLACE): S, (S, Event.START): X, (X, Event.SUCCEED): State.SUCCEED,
    (S, Event.FAIL): State.FAILED, (X, Event.FAIL): State.FAILED,
    (S, Event.CANCEL): State.CANCELED, (X, Event.CANCEL): State.CANCELED,
    (Q, Event.OMIT): State.OMITTED,
}
del Q, S, X
# The event that ends a job or a task in each final state.
END_EVENTS: dict[State, Event] = {
    State.SUCCEED: Event.SUCCEED, State.FAILED: Event.FAIL, State.CANCELED: Event.CANCEL, State.OMITTED: Event.OMIT,
}


def _reachable(moves: dict[tuple[State, Event], State]) -> dict[State, frozenset[State]]:
    return {s: frozenset(new for (old, _), new in moves.items() if old == s) for s in State}


# Which states follow which, for jobs (reports and checks that name states, not events).
TRANSITIONS: dict[State, frozenset[State]] = _reachable(JOB_MOVES)
TASK_TRANSITIONS: dict[State, frozenset[State]] = _reachable(TASK_MOVES)


class Placement(enum.Enum):
    """Where a task stands with its nodes (``Core.placement``), beside its state."""

    NONE = "none"  # not placed: queued, or ended
    RUNNING = "running"  # holds its share: its agent starts it at once, or runs it
    STANDBY = "standby"  # waits at its agent on a running task's share (prefetch.py)
    WITHDRAWING = "withdrawing"  # a standby its agent was asked to give back
    ORPHAN = "orphan"  # placed before a master restart; its node has not registered since
    CUT_OFF = "cut off"  # on a node whose agent's stream broke (it may come back)


class IllegalTransition(RuntimeError):
    """A state change the tables forbid: always a bug in PJ, never a user error."""


def move(moves: dict[tuple[State, Event], State], what: str, old: State, event: Event) -> State:
    """The state ``event`` moves ``old`` to; raises IllegalTransition naming ``what``."""
    new = moves.get((old, event))
    if new is None:
        raise IllegalTransition(f"{what}: {old.name} --{event.value}--> is not a legal move")
    return new


def event_to(moves: dict[tuple[State, Event], State], what: str, old: State, new: State) -> Event:
    """The event that moves ``old`` to ``new``; raises IllegalTransition naming ``what``."""
    for (s, event), target in moves.items():
        if s == old and target == new:
            return event
    raise IllegalTransition(f"{what}: {old.name} -> {new.name} is not a legal transition")


def check_transition(what: str, old: State, new: State) -> None:
    event_to(JOB_MOVES, what, old, new)


@dataclass(frozen=True, slots=True)
class Range:
    """An amount from ``min`` to ``max``; ``max`` None means as many as fit."""

    min: int
    max: int | None

    @property
    def exact(self) -> bool:
        return self.max == self.min

    def cap(self, available: int) -> int:
        """The most this range takes out of ``available`` (assumes available >= min)."""
        return available if self.max is None else min(self.max, available)


ONE = Range(1, 1)


@dataclass(frozen=True, slots=True)
class Iterations:
    start: int
    stop: int
    values: tuple[str, ...] | None = None

    @property
    def count(self) -> int:
        return self.stop - self.start

    def __contains__(self, it: int) -> bool:
        return self.start <= it < self.stop

    def value(self, it: int) -> str:
        return self.values[it - self.start] if self.values is not None else str(it)


@dataclass(frozen=True, slots=True)
class Dependency:
    """``job`` (the whole job), ``job:${it}`` (per_iteration) or ``job:N`` (iteration N)."""

    job: str
    iteration: int | None = None
    per_iteration: bool = False

    def __str__(self) -> str:
        if self.per_iteration:
            return f"{self.job}:${{it}}"
        return self.job if self.iteration is None else f"{self.job}:{self.iteration}"


class Sizing(NamedTuple):
    """A QCG-PilotJob iteration scheduler on ``cores`` or ``nodes``: once the run's resources are
    known the master replaces that range with one exact count for every iteration (itersize.py)."""

    field: str  # "cores" | "nodes"
    name: str  # "split-into" | "maximum-iters"
    parts: int = 0  # split-into: how many parts (0: one per iteration)


@dataclass(frozen=True, slots=True)
class Request:
    """What one task needs: ``nodes`` nodes, each with ``cores`` cores and ``gpus`` GPUs.
    ``sizing``: not placeable yet; the core first turns it into an exact request (itersize.py)."""

    cores: Range = ONE
    nodes: Range = ONE
    gpus: int = 0
    sizing: Sizing | None = None
    memory: int = 0  # bytes per node; 0: none asked (fits on memory anywhere)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """Tasks of one shape fit, or do not fit, together: the scheduler queues by shape."""
        return (self.nodes.min, self.cores.min, self.gpus, self.memory)

    def describe(self) -> str:
        def r(x: Range) -> str:
            return str(x.min) if x.exact else f"{x.min}..{'' if x.max is None else x.max}"

        parts = [f"{r(self.cores)} core(s)"]
        if self.gpus:
            parts.append(f"{self.gpus} GPU(s)")
        if self.memory:
            parts.append(f"{format_size(self.memory)} memory")
        per = " per node" if self.nodes != ONE else ""
        return f"{' and '.join(parts)}{per} on {r(self.nodes)} node(s)"


class JobSpec(NamedTuple):
    """A job as submitted. A NamedTuple, not a dataclass: a Submit makes one per job (100 000 at
    once), and a tuple is built in one step where a frozen dataclass sets each of its 18 fields."""

    name: str
    exec: str = ""
    script: str = ""
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    wd: str = ""
    stdin: str = ""
    stdout: str = ""
    stderr: str = ""
    request: Request = Request()
    iterations: Iterations | None = None
    after: tuple[Dependency, ...] = ()
    model: str = "default"
    modules: tuple[str, ...] = ()
    venv: str = ""
    walltime_s: float = 0.0
    retries: int = 0
    base_dir: str = "/"
    mpirun: str = ""  # openmpi, intelmpi: the mpirun to call ("": mpirun)
    model_args: tuple[str, ...] = ()  # more launcher options before the command


class NodeShare(NamedTuple):
    """The part of one node a task holds (one per task placed: a tuple is cheap to make)."""

    node: str
    cores: tuple[int, ...]
    gpus: tuple[str, ...] = ()
    memory: int = 0  # bytes held on the node (the job's memory per node)


Allocation = tuple[NodeShare, ...]


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """What an agent told the master about its node."""

    name: str
    cores: int
    gpus: tuple[str, ...] = ()
    memory_bytes: int = 0
    hostname: str = ""
    ends_at: float = 0.0  # when the node's allocation ends (epoch s); 0: unknown or never
