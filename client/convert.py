"""What the client API returns: plain frozen dataclasses, converted from protobuf here and only here.

States are strings without the enum prefix ("QUEUED", "SUCCEED", ...). Counts per state are
dicts ``{"SUCCEED": 10, "FAILED": 1}`` holding only the states that occur.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from pj.v1 import pj_pb2

_PREFIX = "JOB_STATE_"

# Display order: the life of a job, then how it ended.
STATES: tuple[str, ...] = ("QUEUED", "SCHEDULED", "EXECUTING", "SUCCEED", "FAILED", "CANCELED", "OMITTED")
FINAL_STATES: frozenset[str] = frozenset({"SUCCEED", "FAILED", "CANCELED", "OMITTED"})
BAD_STATES: tuple[str, ...] = ("FAILED", "OMITTED", "CANCELED")


# What each kind of reason in ``Status.waiting`` means, as `pj status` says it (master/why.py).
WAITING: dict[str, str] = {
    "dependencies": "for dependencies",
    "free cores": "for free cores",
    "retry": "held for a retry",
    "too big": "too big for any node",
    "nodes": "for nodes to join",
    "standby": "on standby behind a running task",
    "agent": "for a cut-off agent",
    "starting": "being started",
    "canceling": "being canceled",
}

_STATE_NAMES: dict[int, str] = {}  # value -> name, filled on first use (a Watch names every job)


def state_name(value: int) -> str:
    """``pj_pb2.JOB_STATE_FAILED`` -> ``"FAILED"``; an unknown number -> ``"STATE_<n>"``."""
    name = _STATE_NAMES.get(value)
    if name is None:
        try:
            name = pj_pb2.JobState.Name(value).removeprefix(_PREFIX)  # type: ignore[arg-type]
        except ValueError:
            return f"STATE_{value}"
        _STATE_NAMES[value] = name
    return name


def state_value(name: str) -> pj_pb2.JobState.ValueType:
    """``"failed"``, ``"FAILED"`` or ``"JOB_STATE_FAILED"`` -> the enum value; ValueError otherwise."""
    key = name.strip().upper()
    if not key.startswith(_PREFIX):
        key = _PREFIX + key
    if key == _PREFIX + "UNSPECIFIED":
        raise ValueError(f"unknown job state {name!r} (one of {', '.join(STATES)})")
    try:
        return pj_pb2.JobState.Value(key)
    except ValueError:
        raise ValueError(f"unknown job state {name!r} (one of {', '.join(STATES)})") from None


def counts(items: Iterable[pj_pb2.StateCount]) -> dict[str, int]:
    """Repeated StateCount -> {state: count}, in display order, zeros left out."""
    raw: dict[str, int] = {}
    for c in items:
        if c.count:
            name = state_name(c.state)
            raw[name] = raw.get(name, 0) + int(c.count)
    return sort_counts(raw)


def sort_counts(raw: dict[str, int]) -> dict[str, int]:
    order = {s: i for i, s in enumerate(STATES)}
    return dict(sorted(raw.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))


@dataclass(frozen=True)
class StateChange:
    state: str
    time: float  # seconds since the epoch


@dataclass(frozen=True)
class JobSummary:
    name: str
    state: str
    reason: str = ""
    iterations: int = 0  # 0: a job without iterations
    iterations_done: int = 0
    iterations_failed: int = 0

    @property
    def finished(self) -> bool:
        return self.state in FINAL_STATES


@dataclass(frozen=True)
class NodeShare:
    node: str
    cores: tuple[int, ...] = ()
    gpus: tuple[str, ...] = ()


@dataclass(frozen=True)
class TaskInfo:
    name: str  # "job" or "job:it"
    iteration: int | None
    state: str
    exit_code: int | None = None
    reason: str = ""
    shares: tuple[NodeShare, ...] = ()
    history: tuple[StateChange, ...] = ()
    # What it used, as its agent measured it at its end (0 until then, or when nothing was measured).
    cpu_user_s: float = 0.0
    cpu_system_s: float = 0.0
    max_rss_kb: int = 0
    stderr_tail: str = ""  # a FAILED task's last 4 KB of stderr


@dataclass(frozen=True)
class JobInfo:
    summary: JobSummary
    history: tuple[StateChange, ...] = ()
    tasks: tuple[TaskInfo, ...] = ()

    @property
    def name(self) -> str:
        return self.summary.name

    @property
    def state(self) -> str:
        return self.summary.state

    @property
    def reason(self) -> str:
        return self.summary.reason


@dataclass(frozen=True)
class Status:
    jobs: dict[str, int]  # jobs per state
    tasks: dict[str, int]  # started tasks (iterations included) per state
    jobs_total: int
    jobs_unfinished: int
    nodes: int
    cores_total: int
    cores_used: int
    started_at: float
    finishing: bool
    address: str
    notices: tuple[str, ...] = ()  # run-level notices so far, oldest first (a node that never came...)
    # unfinished jobs that do not (all) run, by the kind of reason (``WAITING``), as the master orders them
    waiting: dict[str, int] = field(default_factory=dict)
    alloc_problems: tuple[str, ...] = ()  # one line per alloc queue whose submissions back off (`pj alloc`)


@dataclass(frozen=True)
class CancelResult:
    canceled: tuple[str, ...]  # stopped or dequeued
    already_finished: tuple[str, ...]


@dataclass(frozen=True)
class WatchEvent:
    """The first event of a watch describes the present; later ones carry what changed."""

    changed: tuple[JobSummary, ...]
    watched_total: int
    watched_unfinished: int
    tasks: dict[str, int] = field(default_factory=dict)  # every task, per state
    master_finishing: bool = False
    notices: tuple[str, ...] = ()  # run-level news since the last event
    jobs: dict[str, int] | None = None  # a counts-only watch: the watched jobs per state


@dataclass(frozen=True)
class NodeResources:
    name: str
    cores: int
    cores_free: int
    gpus: tuple[str, ...]
    gpus_free: int
    memory_bytes: int
    online: bool
    ends_at: float = 0.0  # when the node's allocation ends (epoch s); 0: unknown or none
    memory_free_bytes: int = 0  # memory_bytes less what the tasks placed there asked for (job field memory)


@dataclass(frozen=True)
class Resources:
    nodes: tuple[NodeResources, ...]
    nodes_expected: int  # 0: not known
    nodes_missing: tuple[str, ...] = ()  # expected by name, not (or no longer) registered


# ---------------------------------------------------------------- protobuf -> dataclasses


def state_change(m: pj_pb2.StateChange) -> StateChange:
    return StateChange(state=state_name(m.state), time=m.time)


def job_summary(m: pj_pb2.JobSummary) -> JobSummary:
    return JobSummary(
        name=m.name,
        state=state_name(m.state),
        reason=m.reason,
        iterations=int(m.iterations),
        iterations_done=int(m.iterations_done),
        iterations_failed=int(m.iterations_failed),
    )


def node_share(m: pj_pb2.NodeShare) -> NodeShare:
    return NodeShare(node=m.node, cores=tuple(int(c) for c in m.cores), gpus=tuple(m.gpus))


def task_info(m: pj_pb2.TaskInfo) -> TaskInfo:
    return TaskInfo(
        name=m.name,
        iteration=int(m.iteration) if m.has_iteration else None,
        state=state_name(m.state),
        exit_code=int(m.exit_code) if m.HasField("exit_code") else None,
        reason=m.reason,
        shares=tuple(node_share(s) for s in m.shares),
        history=tuple(state_change(h) for h in m.history),
        cpu_user_s=m.cpu_user_s,
        cpu_system_s=m.cpu_system_s,
        max_rss_kb=int(m.max_rss_kb),
        stderr_tail=m.stderr_tail,
    )


def job_info(m: pj_pb2.JobInfo) -> JobInfo:
    return JobInfo(
        summary=job_summary(m.summary),
        history=tuple(state_change(h) for h in m.history),
        tasks=tuple(task_info(t) for t in m.tasks),
    )


def status(m: pj_pb2.StatusReply) -> Status:
    return Status(
        jobs=counts(m.jobs),
        tasks=counts(m.tasks),
        jobs_total=int(m.jobs_total),
        jobs_unfinished=int(m.jobs_unfinished),
        nodes=int(m.nodes),
        cores_total=int(m.cores_total),
        cores_used=int(m.cores_used),
        started_at=m.started_at,
        finishing=m.finishing,
        address=m.address,
        notices=tuple(m.notices),
        waiting={r.kind: int(r.count) for r in m.waiting if r.count},
        alloc_problems=tuple(m.alloc_problems),
    )


def cancel_result(m: pj_pb2.CancelReply) -> CancelResult:
    return CancelResult(canceled=tuple(m.canceled), already_finished=tuple(m.already_finished))


def watch_event(m: pj_pb2.WatchEvent) -> WatchEvent:
    return WatchEvent(
        changed=tuple(job_summary(j) for j in m.changed),
        watched_total=int(m.watched_total),
        watched_unfinished=int(m.watched_unfinished),
        tasks=counts(m.tasks),
        master_finishing=m.master_finishing,
        notices=tuple(m.notices),
        jobs=counts(m.jobs) if m.jobs else None,
    )


def node_resources(m: pj_pb2.NodeResources) -> NodeResources:
    return NodeResources(
        name=m.name,
        cores=int(m.cores),
        cores_free=int(m.cores_free),
        gpus=tuple(m.gpus),
        gpus_free=int(m.gpus_free),
        memory_bytes=int(m.memory_bytes),
        online=m.online,
        ends_at=float(m.ends_at),
        memory_free_bytes=int(m.memory_free_bytes),
    )


def resources(m: pj_pb2.ResourcesReply) -> Resources:
    return Resources(
        nodes=tuple(node_resources(n) for n in m.nodes),
        nodes_expected=int(m.nodes_expected),
        nodes_missing=tuple(m.nodes_missing),
    )
