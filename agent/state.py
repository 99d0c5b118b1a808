"""The agent's bookkeeping as a pure state machine (sans-I/O).

No grpc, asyncio, subprocess, os calls or clock here: the shell (runner.py)
feeds events with the current time (``now``, seconds since the epoch) and
carries out the actions returned, in order. Both sets are closed:

Events:  LaunchTask, Spawned, SpawnFailed, Exited, CancelTask, WithdrawTask, Shutdown,
         LinkLost, Tick
Actions: Spawn, Signal, ReportStarted, ReportExited, ReportWithdrawn, Drained, Warn

A task's life (the one table of legal moves is ``_MOVES``)::

    WAITING --start--> SPAWNING --spawned--> RUNNING --term--> TERMINATING --kill--> KILLING
       |                   |                    |                  |                    |
       +--drop--> (gone) <-+--spawn_failed      +------exited------+-------exited-------+

Held launches (the master's prefetch): a launch whose logical cores or GPUs overlap those of a
task alive here (until its end is handled), or of an earlier held launch, is WAITING: not
spawned, not reported. When a task ends, the held launches it was in the way of start, first
come first served per core/GPU, no overtaking (holds.py keeps the queues). A held task that is
canceled ends at once (exit -SIGTERM, said in its error); one that is withdrawn is reported in
ReportWithdrawn; a shutdown ends every held task like a cancel; LinkLost (the stream to the
master broke) drops them silently: the master queues again what the agent's Register does not
name. A withdraw of a task that is not held is ignored.

Cancel, walltime and shutdown all stop a task the same way: SIGTERM to its
process group, SIGKILL ``kill_grace`` seconds later if it still runs. Those
signals carry ``strays=True``: the shell also signals every process of the task
that left the group (setsid, double fork), found only then, never on the hot
path. When a task's main process ends, what it left behind in its process group
is killed (SIGKILL) so that the cores the master reuses are really free; when it
ends while being stopped, its strays are killed too (``leader_gone=True``: its
pid may no longer be walked).
"""

from __future__ import annotations

import enum
import heapq
import itertools
import signal
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from pj.common.durations import format_duration

from .holds import Holds

SIGTERM = int(signal.SIGTERM)
SIGKILL = int(signal.SIGKILL)

EXIT_CANNOT_START = 127  # like a shell: command not found / cannot start
EXIT_NOT_EXECUTABLE = 126  # like a shell: found but not executable
# The error of a held launch that ends without starting (its exit code is -SIGTERM).
CANCELED_WAITING = "canceled before it started (it was waiting for its cores)"
SHUTDOWN_WAITING = "the agent shut down before it started"


# ---------------------------------------------------------------- domain


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """One task to start on this node (from a Launch order). Paths are absolute."""

    task_id: int
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)  # laid over the agent's environment
    wd: str = ""  # "": the agent's working directory
    stdin: str = ""  # "": /dev/null
    stdout: str = ""
    stderr: str = ""
    cores: tuple[int, ...] = ()  # logical cores; (): not bound
    gpus: tuple[str, ...] = ()
    walltime_s: float = 0.0  # 0: no limit
    hostfile: str = ""  # node names, one line per rank; "": none (the launcher writes the file)
    slurm_hostfile: bool = False  # give the hostfile to srun too (SLURM_HOSTFILE)


# ---------------------------------------------------------------- events (in)


@dataclass(frozen=True, slots=True)
class LaunchTask:
    spec: TaskSpec


@dataclass(frozen=True, slots=True)
class Spawned:
    task_id: int
    pid: int  # also the process group id: each task leads its own group
    time: float = 0.0  # when it started, if known before this event is fed (a spawner thread's)


@dataclass(frozen=True, slots=True)
class SpawnFailed:
    task_id: int
    exit_code: int
    error: str


@dataclass(frozen=True, slots=True)
class Exited:
    pid: int
    exit_code: int  # >= 0: exit status; -N: killed by signal N
    cpu_user_s: float = 0.0
    cpu_system_s: float = 0.0
    max_rss_kb: int = 0


@dataclass(frozen=True, slots=True)
class CancelTask:
    task_id: int


@dataclass(frozen=True, slots=True)
class WithdrawTask:
    """The master takes back a launch: dropped if it still waits for its cores, else ignored."""

    task_id: int


@dataclass(frozen=True, slots=True)
class Shutdown:
    reason: str = ""


@dataclass(frozen=True, slots=True)
class LinkLost:
    """The stream to the master broke: held launches are dropped without a word (the tasks
    that run go on)."""


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passed: enforce walltimes and kill-grace deadlines due at ``now``."""


Event = LaunchTask | Spawned | SpawnFailed | Exited | CancelTask | WithdrawTask | Shutdown | LinkLost | Tick


# ---------------------------------------------------------------- actions (out)


@dataclass(frozen=True, slots=True)
class Spawn:
    spec: TaskSpec


@dataclass(frozen=True, slots=True)
class Signal:
    task_id: int
    pgid: int
    signum: int
    strays: bool = False  # also every descendant that left the group (a stop, not a normal end)
    leader_gone: bool = False  # the leader was reaped: find strays by the task's marker only


@dataclass(frozen=True, slots=True)
class ReportStarted:
    task_id: int
    pid: int
    time: float


@dataclass(frozen=True, slots=True)
class ReportExited:
    """A task ended. ``tail``: it ran and failed, so the shell attaches its stderr's last 4 KB
    (``stderr_tail``) before the report goes out; the rusage is wait4's."""

    task_id: int
    exit_code: int
    time: float
    error: str = ""
    cpu_user_s: float = 0.0
    cpu_system_s: float = 0.0
    max_rss_kb: int = 0
    tail: bool = False
    stderr_tail: str = ""


@dataclass(frozen=True, slots=True)
class ReportWithdrawn:
    """A held launch was withdrawn: it never started and never will."""

    task_id: int


@dataclass(frozen=True, slots=True)
class Drained:
    """Shutting down and no task is left: the shell may stop."""


@dataclass(frozen=True, slots=True)
class Warn:
    """Something the shell should log (the master sent a nonsensical order)."""

    message: str
    task_id: int = 0


Action = Spawn | Signal | ReportStarted | ReportExited | ReportWithdrawn | Drained | Warn


# ---------------------------------------------------------------- tasks


class Phase(enum.Enum):
    WAITING = "waiting"  # held: its cores or GPUs are still in use
    SPAWNING = "spawning"
    RUNNING = "running"
    TERMINATING = "terminating"  # SIGTERM sent
    KILLING = "killing"  # SIGKILL sent
    GONE = "gone"


class AgentInvariantError(AssertionError):
    """The agent's bookkeeping broke one of its invariants (``AgentState.check``): a bug."""


class IllegalTransition(RuntimeError):
    pass


_MOVES: dict[tuple[Phase, str], Phase] = {
    (Phase.WAITING, "start"): Phase.SPAWNING,
    (Phase.WAITING, "drop"): Phase.GONE,
    (Phase.SPAWNING, "spawned"): Phase.RUNNING,
    (Phase.SPAWNING, "spawn_failed"): Phase.GONE,
    (Phase.RUNNING, "term"): Phase.TERMINATING,
    (Phase.RUNNING, "exited"): Phase.GONE,
    (Phase.TERMINATING, "kill"): Phase.KILLING,
    (Phase.TERMINATING, "exited"): Phase.GONE,
    (Phase.KILLING, "exited"): Phase.GONE,
}


class StopReason(enum.Enum):
    CANCEL = "cancel"
    WALLTIME = "walltime"
    SHUTDOWN = "shutdown"


class _Task:
    __slots__ = ("deadline", "killed", "phase", "pid", "spec", "started", "stop_at", "stop_reason", "term_at")

    def __init__(self, spec: TaskSpec, phase: Phase = Phase.SPAWNING) -> None:
        self.spec = spec
        self.phase = phase
        self.pid = 0
        self.started = 0.0
        self.deadline: float | None = None  # walltime deadline
        self.stop_reason: StopReason | None = None
        self.stop_at: float | None = None  # when the stop was requested
        self.term_at: float | None = None  # when SIGTERM was sent
        self.killed = False  # SIGKILL sent after the grace

    def move(self, trigger: str) -> None:
        nxt = _MOVES.get((self.phase, trigger))
        if nxt is None:
            raise IllegalTransition(f"task {self.spec.task_id}: no move '{trigger}' from {self.phase.value}")
        self.phase = nxt


@dataclass(frozen=True, slots=True)
class TaskView:
    """A read-only look at one task (for logs, tests and a later reconnect)."""

    task_id: int
    phase: Phase
    pid: int
    started: float
    deadline: float | None
    stop_reason: StopReason | None
    stop_at: float | None
    term_at: float | None


_WALLTIME = 0
_KILL = 1


class AgentState:
    """Which tasks run on this node, and what to do about them.

    ``handle(event, now)`` returns the actions to carry out, in order.
    ``next_deadline()`` says when the shell should feed the next ``Tick``.
    """

    def __init__(self, kill_grace: float = 5.0) -> None:
        if kill_grace < 0:
            raise ValueError("kill_grace must be >= 0")
        self.kill_grace = kill_grace
        self._tasks: dict[int, _Task] = {}
        self._by_pid: dict[int, _Task] = {}
        self._timers: list[tuple[float, int, _Task, int]] = []
        self._holds = Holds()  # busy cores/GPUs and the held launches' queues
        self._seq = itertools.count()
        self.shutting_down = False
        self._drained_sent = False
        self._dispatch = {
            LaunchTask: self._launch,
            Spawned: self._spawned,
            SpawnFailed: self._spawn_failed,
            Exited: self._exited,
            CancelTask: self._cancel,
            WithdrawTask: self._withdraw,
            Shutdown: self._shutdown,
            LinkLost: self._link_lost,
            Tick: self._tick,
        }

    # ------------------------------------------------------------ queries

    def __len__(self) -> int:
        return len(self._tasks)

    def __contains__(self, task_id: int) -> bool:
        return task_id in self._tasks

    @property
    def waiting(self) -> int:
        """How many held launches wait for their cores or GPUs."""
        return len(self._holds)

    def running_ids(self) -> list[int]:
        """The tasks started here (being spawned, running, being stopped), not the held ones:
        what a returning agent's Register names."""
        return sorted(tid for tid, t in self._tasks.items() if t.phase is not Phase.WAITING)

    def has_pid(self, pid: int) -> bool:
        """Whether a task of this node runs as ``pid`` (its spawn was reported)."""
        return pid in self._by_pid

    def tasks(self) -> Iterator[TaskView]:
        for t in self._tasks.values():
            yield TaskView(
                t.spec.task_id, t.phase, t.pid, t.started, t.deadline, t.stop_reason, t.stop_at, t.term_at
            )

    def next_deadline(self) -> float | None:
        """The earliest pending walltime or kill deadline (stale ones are dropped)."""
        timers = self._timers
        while timers:
            _, _, task, kind = timers[0]
            if self._live_timer(task, kind):
                return timers[0][0]
            heapq.heappop(timers)
        return None

    # ------------------------------------------------------------ events

    def check(self) -> None:
        """Raise AgentInvariantError naming every invariant broken (tests run it after each event):
        a held task is WAITING and every WAITING task is held; the tasks not WAITING hold their
        cores and GPUs, none held twice, and nothing else is busy; pids map to live spawned tasks."""
        bad: list[str] = []
        held = set(self._holds.waiting())
        holding: Counter[object] = Counter()
        for tid, t in self._tasks.items():
            if t.spec.task_id != tid:
                bad.append(f"task {tid} is filed under {t.spec.task_id}")
            if (t.phase is Phase.WAITING) != (tid in held):
                bad.append(f"task {tid} is {t.phase.name} but {'' if tid in held else 'not '}held")
            if t.phase is not Phase.WAITING:
                holding.update(dict.fromkeys((*t.spec.cores, *t.spec.gpus), 1))
            if t.phase in (Phase.RUNNING, Phase.TERMINATING, Phase.KILLING) and self._by_pid.get(t.pid) is not t:
                bad.append(f"task {tid} is {t.phase.name} with pid {t.pid} not filed under it")
        for tid in held - set(self._tasks):
            bad.append(f"held launch {tid} is no task here")
        twice = sorted(map(str, (k for k, n in holding.items() if n > 1)))
        if twice:
            bad.append(f"resources held by two tasks at once: {', '.join(twice)}")
        if set(holding) != self._holds.busy:
            bad.append(f"busy {sorted(map(str, self._holds.busy))} != held by tasks {sorted(map(str, holding))}")
        for pid, t in self._by_pid.items():
            if t.pid != pid or self._tasks.get(t.spec.task_id) is not t:
                bad.append(f"pid {pid} names task {t.spec.task_id}, which is not here with that pid")
        if bad:
            raise AgentInvariantError("agent state invariants broken:\n  " + "\n  ".join(bad))

    def handle(self, event: Event, now: float) -> list[Action]:
        out: list[Action] = []
        try:
            fn = self._dispatch[type(event)]
        except KeyError:
            raise TypeError(f"not an agent event: {event!r}") from None
        fn(event, now, out)  # type: ignore[operator]
        if self.shutting_down and not self._tasks and not self._drained_sent:
            self._drained_sent = True
            out.append(Drained())
        return out

    def _launch(self, ev: LaunchTask, now: float, out: list[Action]) -> None:
        spec = ev.spec
        tid = spec.task_id
        if tid in self._tasks:
            out.append(Warn(f"task {tid} is already running here: launch order ignored", tid))
            return
        if self.shutting_down:
            out.append(ReportExited(tid, EXIT_CANNOT_START, now, "not started: the agent is shutting down"))
            return
        if self._holds.take(tid, spec.cores, spec.gpus):
            self._tasks[tid] = _Task(spec)
            out.append(Spawn(spec))
        else:  # its cores or GPUs are in use: it starts when they are free
            self._tasks[tid] = _Task(spec, Phase.WAITING)

    def _spawned(self, ev: Spawned, now: float, out: list[Action]) -> None:
        task = self._tasks[ev.task_id]
        task.move("spawned")
        task.pid = ev.pid
        started = ev.time if 0 < ev.time <= now else now
        task.started = started
        self._by_pid[ev.pid] = task
        out.append(ReportStarted(ev.task_id, ev.pid, started))
        if task.stop_reason is not None:  # canceled or shut down while it was being spawned
            self._term(task, now, out)
        elif task.spec.walltime_s > 0:
            task.deadline = started + task.spec.walltime_s
            self._arm(task.deadline, task, _WALLTIME)

    def _spawn_failed(self, ev: SpawnFailed, now: float, out: list[Action]) -> None:
        task = self._tasks.pop(ev.task_id)
        task.move("spawn_failed")
        out.append(ReportExited(ev.task_id, ev.exit_code, now, ev.error))
        self._start(self._holds.release(task.spec.cores, task.spec.gpus), out)

    def _exited(self, ev: Exited, now: float, out: list[Action]) -> None:
        task = self._by_pid.pop(ev.pid, None)
        if task is None:
            return  # not one of ours (or already accounted for)
        task.move("exited")
        tid = task.spec.task_id
        del self._tasks[tid]
        code, error = ev.exit_code, ""
        if task.stop_reason is StopReason.WALLTIME:
            error = self._walltime_reason(task, code)
            if code == 0:  # it caught SIGTERM and exited cleanly: still not a success
                code = -SIGTERM
        # A failed task's stderr tail is wanted (not a canceled one's: the master keeps none).
        tail = code != 0 and task.stop_reason is not StopReason.CANCEL and task.stop_reason is not StopReason.SHUTDOWN
        out.append(ReportExited(tid, code, now, error, ev.cpu_user_s, ev.cpu_system_s, ev.max_rss_kb, tail))
        # Whatever the task left in its group dies with it (harmless ESRCH when nothing is left);
        # a task being stopped loses what left the group as well.
        if task.stop_reason is None:
            out.append(Signal(tid, ev.pid, SIGKILL))
        else:
            out.append(Signal(tid, ev.pid, SIGKILL, strays=True, leader_gone=True))
        started = self._holds.release(task.spec.cores, task.spec.gpus)
        if started:
            self._start(started, out)

    def _walltime_reason(self, task: _Task, code: int) -> str:
        head = f"walltime {format_duration(task.spec.walltime_s)} exceeded"
        if task.killed and code == -SIGKILL:
            return f"{head}: killed (SIGTERM, then SIGKILL after {format_duration(self.kill_grace)})"
        if code == -SIGTERM:
            return f"{head}: killed (SIGTERM)"
        if code < 0:
            return f"{head}: SIGTERM sent, then it died of signal {-code}"
        return f"{head}: SIGTERM sent, then it exited with code {code}"

    def _cancel(self, ev: CancelTask, now: float, out: list[Action]) -> None:
        task = self._tasks.get(ev.task_id)
        if task is None:
            return
        if task.phase is Phase.WAITING:
            out.append(ReportExited(ev.task_id, -SIGTERM, now, CANCELED_WAITING))
            self._unhold(task, out)
        else:
            self._stop(task, StopReason.CANCEL, now, out)

    def _withdraw(self, ev: WithdrawTask, now: float, out: list[Action]) -> None:
        task = self._tasks.get(ev.task_id)
        if task is not None and task.phase is Phase.WAITING:  # one that started is left alone
            out.append(ReportWithdrawn(ev.task_id))
            self._unhold(task, out)

    def _shutdown(self, ev: Shutdown, now: float, out: list[Action]) -> None:
        if self.shutting_down:
            return
        self.shutting_down = True
        for tid in self._drop_held():
            out.append(ReportExited(tid, -SIGTERM, now, SHUTDOWN_WAITING))
        for task in list(self._tasks.values()):
            self._stop(task, StopReason.SHUTDOWN, now, out)

    def _link_lost(self, ev: LinkLost, now: float, out: list[Action]) -> None:
        self._drop_held()

    def _tick(self, ev: Tick, now: float, out: list[Action]) -> None:
        timers = self._timers
        while timers and timers[0][0] <= now:
            _, _, task, kind = heapq.heappop(timers)
            if not self._live_timer(task, kind):
                continue
            if kind == _WALLTIME:
                self._stop(task, StopReason.WALLTIME, now, out)
            else:
                task.move("kill")
                task.killed = True
                out.append(Signal(task.spec.task_id, task.pid, SIGKILL, strays=True))

    # ------------------------------------------------------------ helpers

    def _start(self, task_ids: list[int], out: list[Action]) -> None:
        """Held launches whose cores and GPUs are theirs now (``Holds`` marked them busy)."""
        for tid in task_ids:
            task = self._tasks[tid]
            task.move("start")
            out.append(Spawn(task.spec))

    def _unhold(self, task: _Task, out: list[Action]) -> None:
        """A held launch leaves (cancel, withdraw): those it went before may start now."""
        tid = task.spec.task_id
        task.move("drop")
        del self._tasks[tid]
        self._start(self._holds.drop(tid), out)

    def _drop_held(self) -> list[int]:
        """Drop every held launch (nothing starts instead); their ids, in arrival order."""
        ids = self._holds.clear()
        for tid in ids:
            self._tasks.pop(tid).move("drop")
        return ids

    def _stop(self, task: _Task, reason: StopReason, now: float, out: list[Action]) -> None:
        if task.stop_reason is not None:
            return  # already being stopped: the first reason stands
        task.stop_reason = reason
        task.stop_at = now
        if task.phase is Phase.RUNNING:
            self._term(task, now, out)
        # SPAWNING: SIGTERM goes out as soon as the pid is known (see _spawned).

    def _term(self, task: _Task, now: float, out: list[Action]) -> None:
        task.move("term")
        task.term_at = now
        out.append(Signal(task.spec.task_id, task.pid, SIGTERM, strays=True))
        self._arm(now + self.kill_grace, task, _KILL)

    def _arm(self, when: float, task: _Task, kind: int) -> None:
        heapq.heappush(self._timers, (when, next(self._seq), task, kind))

    def _live_timer(self, task: _Task, kind: int) -> bool:
        if self._tasks.get(task.spec.task_id) is not task:
            return False
        if kind == _WALLTIME:
            return task.phase is Phase.RUNNING and task.stop_reason is None
        return task.phase is Phase.TERMINATING
