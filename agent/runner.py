"""The thin asyncio shell around the pure core: carries out its actions.

It owns the core (state.AgentState), the launcher and the outbox of reports.
Orders come in through ``launch``/``cancel``/``shutdown``; ``on_sigchld`` (wired
to SIGCHLD by main through signals.SignalHub) feeds exits;
one timer feeds ``Tick`` at the core's next deadline. Reports pile up in the
``Outbox`` until the link sends them; the outbox outlives a link session, so
a later reconnect can deliver what ended while the master was away.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable

import structlog

from .launcher import Launcher, SpawnError
from .state import (
    EXIT_CANNOT_START,
    AgentState,
    CancelTask,
    Drained,
    Event,
    LaunchTask,
    ReportExited,
    ReportStarted,
    Shutdown,
    Signal,
    Spawn,
    Spawned,
    SpawnFailed,
    TaskSpec,
    Tick,
    Warn,
)

log = structlog.get_logger("pj.agent")

_TIMER_SLACK_S = 0.001


class Outbox:
    """Reports waiting to go up the stream; ``ready`` is set while any wait."""

    def __init__(self) -> None:
        self.started: list[ReportStarted] = []
        self.exited: list[ReportExited] = []
        self.ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self.started) + len(self.exited)

    def take(self, limit: int = 100_000) -> tuple[list[ReportStarted], list[ReportExited]]:
        """Up to ``limit`` reports of each kind, oldest first; ``ready`` stays set if more wait."""
        if len(self.started) <= limit:
            started, self.started = self.started, []
        else:
            started, self.started = self.started[:limit], self.started[limit:]
        if len(self.exited) <= limit:
            exited, self.exited = self.exited, []
        else:
            exited, self.exited = self.exited[:limit], self.exited[limit:]
        if not self.started and not self.exited:
            self.ready.clear()
        return started, exited


class Runner:
    def __init__(
        self,
        state: AgentState,
        launcher: Launcher,
        outbox: Outbox | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.state = state
        self.launcher = launcher
        self.outbox = outbox if outbox is not None else Outbox()
        self.drained = asyncio.Event()
        self._clock = clock
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._sweeps: list[tuple[int, int, int, bool]] = []  # stop signals, sent together per feed

    # ------------------------------------------------------------ life cycle

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Use this loop for timers; collect any child that ended already."""
        self._loop = loop
        self.on_sigchld()

    def detach(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # ------------------------------------------------------------ inputs

    def launch(self, specs: Iterable[TaskSpec]) -> None:
        # Spawn a batch grouped by cores: the launcher re-binds the agent's thread only when the
        # set changes, and moving a thread between CPUs is the dearest part of a spawn.
        try:
            self.feed(LaunchTask(s) for s in sorted(specs, key=lambda s: s.cores))
        finally:
            self.launcher.unbind()
        if self.launcher.immediate_exits:  # --dry-run: no SIGCHLD will come
            self.on_sigchld()

    def cancel(self, task_ids: Iterable[int]) -> None:
        self.feed(CancelTask(t) for t in task_ids)

    def shutdown(self, reason: str = "") -> None:
        self.feed((Shutdown(reason),))

    async def wait_drained(self) -> None:
        await self.drained.wait()

    def feed(self, events: Iterable[Event]) -> None:
        before = len(self.outbox)
        for ev in events:
            self._step(ev, self._clock())
        if self._sweeps:
            self._sweep()
        if len(self.outbox) != before:
            self.outbox.ready.set()
        self._rearm()

    # ------------------------------------------------------------ actions

    def _step(self, ev: Event, now: float) -> None:
        for a in self.state.handle(ev, now):
            t = type(a)
            if t is Spawn:
                self._spawn(a.spec)  # type: ignore[union-attr]
            elif t is ReportExited:
                self.outbox.exited.append(a)  # type: ignore[arg-type]
            elif t is ReportStarted:
                self.outbox.started.append(a)  # type: ignore[arg-type]
            elif t is Signal:
                self._signal(a)  # type: ignore[arg-type]
            elif t is Drained:
                self.drained.set()
                self.outbox.ready.set()  # the writer may close now
            elif t is Warn:
                log.warning(a.message, task_id=a.task_id)  # type: ignore[union-attr]
            else:  # pragma: no cover - the set is closed
                raise TypeError(f"unknown action {a!r}")

    def _spawn(self, spec: TaskSpec) -> None:
        follow: Event
        try:
            pid = self.launcher.spawn(spec)
        except SpawnError as e:
            log.debug("spawn failed", task_id=spec.task_id, error=e.message)
            follow = SpawnFailed(spec.task_id, e.exit_code, e.message)
        except Exception as e:  # never let one task take the agent down
            log.exception("spawn crashed", task_id=spec.task_id)
            follow = SpawnFailed(spec.task_id, EXIT_CANNOT_START, f"cannot start: {e}")
        else:
            follow = Spawned(spec.task_id, pid)
        self._step(follow, self._clock())

    def _signal(self, a: Signal) -> None:
        if a.strays:  # a stop: gathered, so that one pass over /proc serves the whole batch
            self._sweeps.append((a.task_id, a.pgid, a.signum, a.leader_gone))
            return
        try:
            self.launcher.signal(a.pgid, a.signum)
        except OSError as e:
            log.warning("cannot signal a task", task_id=a.task_id, pgid=a.pgid, signal=a.signum, error=str(e))

    def _sweep(self) -> None:
        sweeps, self._sweeps = self._sweeps, []
        try:
            self.launcher.sweep(sweeps)
        except Exception:  # never let a stop take the agent down: signal the groups at least
            log.exception("cannot look for the processes that left their task's group")
            for task_id, pgid, signum, _ in sweeps:
                self._signal(Signal(task_id, pgid, signum))

    def on_sigchld(self) -> None:
        """Reap every ended child (call on SIGCHLD; extra calls are harmless)."""
        exits = self.launcher.reap()
        if exits:
            self.feed(exits)

    # ------------------------------------------------------------ timer

    def _rearm(self) -> None:
        when = self.state.next_deadline()
        if when is None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            return
        if self._timer is not None:
            if self._timer_at <= when:
                return
            self._timer.cancel()
        loop = self._loop or asyncio.get_running_loop()
        self._timer_at = when
        self._timer = loop.call_later(max(0.0, when - self._clock()) + _TIMER_SLACK_S, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.feed((Tick(),))
