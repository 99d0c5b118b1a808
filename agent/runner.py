"""The thin asyncio shell around the pure core: carries out its actions.

It owns the core (state.AgentState), the launcher and the outbox of reports.
Orders come in through ``launch``/``cancel``/``withdraw``/``shutdown`` (``link_lost`` when the
stream to the master breaks); ``on_sigchld`` (wired
to SIGCHLD by main through signals.SignalHub) feeds exits;
one timer feeds ``Tick`` at the core's next deadline. Reports pile up in the
``Outbox`` until the link sends them; the outbox outlives a link session, so
a later reconnect can deliver what ended while the master was away.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import time
from collections.abc import Callable, Iterable

import structlog

from .launcher import Launcher, SpawnError
from .pyworkers import TOKEN_PID0, PyWorkers
from .spawn import Request
from .state import (
    EXIT_CANNOT_START,
    AgentState,
    CancelTask,
    Drained,
    Event,
    Exited,
    LaunchTask,
    LinkLost,
    ReportExited,
    ReportStarted,
    ReportWithdrawn,
    Shutdown,
    Signal,
    Spawn,
    Spawned,
    SpawnFailed,
    TaskSpec,
    Tick,
    Warn,
    WithdrawTask,
)
from .tails import TRIM_INTERVAL_S

log = structlog.get_logger("pj.agent")

_TIMER_SLACK_S = 0.001
STARTED_DELAY_S = 0.02  # how long a started report may wait for exits to go with it
# How long an exit may wait for others while launches wait here for their cores (the master's
# prefetch). 2-3 ms: 3.5% faster for 10k /bin/true on 8 cores, 16% fewer CPU-s; 5 ms starves cores.
EXIT_DELAY_S = 0.002
# The same for function calls on warm workers (pyworkers.py), which end every ~100 us: 4 ms lets
# twice as many exits share a message (issue 15: ~10% more calls/s on 2 cores than 2 ms).
CALL_EXIT_DELAY_S = 0.004


def _spawn_failed(task_id: int, e: Exception) -> SpawnFailed:
    """A SpawnError says why the task could not start; anything else is a bug, logged in full."""
    if isinstance(e, SpawnError):
        log.debug("spawn failed", task_id=task_id, error=e.message)
        return SpawnFailed(task_id, e.exit_code, e.message)
    log.exception("spawn crashed", task_id=task_id)
    return SpawnFailed(task_id, EXIT_CANNOT_START, f"cannot start: {e}")


class Outbox:
    """Reports waiting to go up the stream; ``ready`` is set while any wait."""

    def __init__(self) -> None:
        self.started: list[ReportStarted] = []
        self.exited: list[ReportExited] = []
        self.withdrawn: list[int] = []  # held launches dropped on the master's withdraw
        self.ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self.started) + len(self.exited) + len(self.withdrawn)

    def take(self, limit: int = 100_000) -> tuple[list[ReportStarted], list[ReportExited], list[int]]:
        """Up to ``limit`` reports of each kind, oldest first; ``ready`` stays set if more wait."""
        if len(self.started) <= limit:
            started, self.started = self.started, []
        else:
            started, self.started = self.started[:limit], self.started[limit:]
        if len(self.exited) <= limit:
            exited, self.exited = self.exited, []
        else:
            exited, self.exited = self.exited[:limit], self.exited[limit:]
        if len(self.withdrawn) <= limit:
            withdrawn, self.withdrawn = self.withdrawn, []
        else:
            withdrawn, self.withdrawn = self.withdrawn[:limit], self.withdrawn[limit:]
        if not self.started and not self.exited and not self.withdrawn:
            self.ready.clear()
        return started, exited, withdrawn


class Runner:
    def __init__(
        self,
        state: AgentState,
        launcher: Launcher,
        outbox: Outbox | None = None,
        clock: Callable[[], float] = time.time,
        pyworkers: PyWorkers | None = None,
    ) -> None:
        self.state = state
        self.launcher = launcher
        self.pyworkers = pyworkers  # function calls go to warm workers (pyworkers.py)
        self.outbox = outbox if outbox is not None else Outbox()
        self.drained = asyncio.Event()
        self._clock = clock
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._sweeps: list[tuple[int, int, int, bool]] = []  # stop signals, sent together per feed
        self._exit_flush: asyncio.TimerHandle | None = None  # exits held back, see EXIT_DELAY_S
        self._spawns: list[TaskSpec] = []  # Spawn actions of a feed, carried out at its end
        # With spawner threads (launcher.spawner): requests prepared during a feed go to the
        # threads together at its end; exits of pids whose spawn result has not been taken yet
        # (the child ended before the loop heard it started) wait here for it.
        self._requests: list[Request] = []
        self._flush: asyncio.TimerHandle | None = None  # sends started reports that waited too long
        self._early: dict[int, Exited] = {}
        self._trim_timer: asyncio.TimerHandle | None = None  # bounds the stderr capture files

    # ------------------------------------------------------------ life cycle

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Use this loop for timers and spawn results; collect any child that ended already."""
        self._loop = loop
        if self.launcher.spawner is not None:
            self.launcher.spawner.set_wake(functools.partial(loop.call_soon_threadsafe, self.on_spawned))
        if self.launcher.captures.directory:
            self._trim_timer = loop.call_later(TRIM_INTERVAL_S, self._trim_captures)
        if self.pyworkers is not None:
            self.pyworkers.attach(loop, self.feed)
        self.on_sigchld()

    def detach(self) -> None:
        if self.pyworkers is not None:
            self.pyworkers.close()
        if self._trim_timer is not None:
            self._trim_timer.cancel()
            self._trim_timer = None
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        if self._exit_flush is not None:
            self._exit_flush.cancel()
            self._exit_flush = None
        if self.launcher.spawner is not None:
            self.launcher.spawner.set_wake(None)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # ------------------------------------------------------------ inputs

    def launch(self, specs: Iterable[TaskSpec]) -> None:
        # In the master's order: launches held for the same cores start in that order. The
        # spawns themselves are grouped by CPUs at the feed's end (see _spawn_batch).
        self.feed(LaunchTask(s) for s in specs)
        self._dry_reap()

    def cancel(self, task_ids: Iterable[int]) -> None:
        self.feed(CancelTask(t) for t in task_ids)
        self._dry_reap()  # a held task that leaves may let another start

    def withdraw(self, events: Iterable[WithdrawTask]) -> None:
        self.feed(events)
        self._dry_reap()

    def _dry_reap(self) -> None:
        if self.launcher.immediate_exits:  # --dry-run: tasks end as they start; no SIGCHLD comes
            self.on_sigchld()

    def link_lost(self) -> None:
        """The stream to the master broke: held launches are dropped (never started, never
        reported), and so are withdrawn reports not sent yet: the Register of a reconnect names
        neither, and the master queues again what it does not name."""
        held = self.state.waiting
        self.feed((LinkLost(),))
        self.outbox.withdrawn.clear()
        if held:
            log.info("lost the master: dropped the launches waiting for their cores", tasks=held)

    def shutdown(self, reason: str = "") -> None:
        self.feed((Shutdown(reason),))

    async def wait_drained(self) -> None:
        await self.drained.wait()

    def feed(self, events: Iterable[Event]) -> None:
        exited_before = len(self.outbox.exited)
        started_before = len(self.outbox.started)
        held_before = self.state.waiting
        for ev in events:
            self._step(ev, self._clock())
        if self._sweeps:  # before the spawns: what a stopped task left dies before cores are reused
            self._sweep()
        if self._spawns:
            self._spawn_batch()
            if self._sweeps:  # tasks stopped while they were being spawned
                self._sweep()
        if self._requests:
            requests, self._requests = self._requests, []
            self.launcher.spawner.submit(requests)  # type: ignore[union-attr]
        if self.outbox.withdrawn or (len(self.outbox.exited) != exited_before and not held_before
                                     and not (self.pyworkers is not None and self.pyworkers.busy)):
            self.outbox.ready.set()
        elif len(self.outbox.exited) != exited_before:
            # The master was ahead of us (launches waited here for their cores): what ends now
            # does not hold up the next task, so exits wait a little for others to travel with them
            # (fewer, fuller messages through every process on the way), at most EXIT_DELAY_S.
            # Without launches waiting (a dependency chain, no prefetch) they go at once.
            if self._exit_flush is None and not self.outbox.ready.is_set():
                loop = self._loop or asyncio.get_running_loop()
                calls = self.pyworkers is not None and self.pyworkers.busy
                self._exit_flush = loop.call_later(CALL_EXIT_DELAY_S if calls else EXIT_DELAY_S, self._flush_exits)
        elif len(self.outbox.started) != started_before and not self.outbox.ready.is_set():
            # Started reports alone are not urgent: they wait a little for exits to travel with
            # them (one message instead of two, through every process on the way), at most
            # STARTED_DELAY_S.
            if self._flush is None:
                loop = self._loop or asyncio.get_running_loop()
                self._flush = loop.call_later(STARTED_DELAY_S, self._flush_started)
        self._rearm()

    # ------------------------------------------------------------ actions

    def _step(self, ev: Event, now: float) -> None:
        for a in self.state.handle(ev, now):
            t = type(a)
            if t is Spawn:
                self._spawns.append(a.spec)  # type: ignore[union-attr]
            elif t is ReportExited:
                # Every exit drops the task's stderr capture; a failed one's tail goes with it.
                r: ReportExited = a  # type: ignore[assignment]
                text = self.launcher.ended(r.task_id, r.tail)
                if self.pyworkers is not None and not text:
                    text = self.pyworkers.ended(r.task_id)
                if text:
                    r = dataclasses.replace(r, stderr_tail=text)
                self.outbox.exited.append(r)
            elif t is ReportStarted:
                self.outbox.started.append(a)  # type: ignore[arg-type]
            elif t is Signal:
                self._signal(a)  # type: ignore[arg-type]
            elif t is Drained:
                self.drained.set()
                self.outbox.ready.set()  # the writer may close now
            elif t is ReportWithdrawn:
                self.outbox.withdrawn.append(a.task_id)  # type: ignore[union-attr]
            elif t is Warn:
                log.warning(a.message, task_id=a.task_id)  # type: ignore[union-attr]
            else:  # pragma: no cover - the set is closed
                raise TypeError(f"unknown action {a!r}")

    def _spawn_batch(self) -> None:
        """Start the feed's tasks grouped by the real CPUs they bind to: a spawning thread is
        re-bound only when the set changes, and moving a thread to another CPU costs about as much
        as the spawn (logical cores that share a CPU, as with --cores beyond the machine's, group).
        A failed spawn frees its cores, so held tasks may join the batch while it runs."""
        try:
            while self._spawns:
                spawns, self._spawns = self._spawns, []
                if len(spawns) > 1:
                    spawns.sort(key=self.launcher.bind_key)
                for spec in spawns:
                    self._spawn(spec)
        finally:
            self.launcher.unbind()

    def _spawn(self, spec: TaskSpec) -> None:
        follow: Event
        try:
            if self.pyworkers is not None and self.pyworkers.is_call(spec):
                pid = self.pyworkers.start(spec)
            elif self.launcher.spawner is not None:
                self._requests.append(self.launcher.prepare(spec))  # started at the feed's end
                return
            else:
                pid = self.launcher.spawn(spec)
        except Exception as e:  # never let one task take the agent down
            follow = _spawn_failed(spec.task_id, e)
        else:
            follow = Spawned(spec.task_id, pid)
        self._step(follow, self._clock())

    def _signal(self, a: Signal) -> None:
        if a.pgid >= TOKEN_PID0 and self.pyworkers is not None:  # a call: its worker, if it still runs it
            self.pyworkers.signal(a.pgid, a.signum)
            return
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
        spawner = self.launcher.spawner
        if spawner is not None:
            self.on_spawned()  # first learn every pid started so far
        exits = self.launcher.reap()
        if exits and self.pyworkers is not None:  # workers are children too: a call may end with one
            exits = self.pyworkers.reaped(exits)
        if spawner is not None and exits and spawner.in_flight:
            # A child may end before its spawner thread has handed in its pid: keep its exit.
            known = self.state.has_pid
            mine = [e for e in exits if known(e.pid)]
            for e in exits:
                if not known(e.pid):
                    self._early[e.pid] = e
            exits = mine
        if exits:
            self.feed(exits)
            # --dry-run: held tasks that those ends let start have "ended" too; no SIGCHLD comes.
            while self.launcher.immediate_exits and (exits := self.launcher.reap()):
                self.feed(exits)

    def on_spawned(self) -> None:
        """Take the spawner threads' results (called in the loop through call_soon_threadsafe)."""
        spawner = self.launcher.spawner
        if spawner is None:
            return
        results = spawner.take()
        if not results and not self._early:
            return
        events: list[Event] = []
        early = self._early
        for r in results:
            tid = r.request.task_id
            try:
                pid = self.launcher.finish(r)
            except Exception as e:  # never let one task take the agent down
                events.append(_spawn_failed(tid, e))
            else:
                events.append(Spawned(tid, pid, r.time))
                if early:
                    ended = early.pop(pid, None)
                    if ended is not None:
                        events.append(ended)
        if early and not spawner.in_flight:
            log.debug("exits of processes that were not tasks", pids=sorted(early))
            early.clear()
        if events:
            self.feed(events)

    def _trim_captures(self) -> None:
        """Every TRIM_INTERVAL_S: what tasks wrote to their stderr capture beyond its tail is
        punched out (tails.py), so a task writing gigabytes there costs no disk or memory."""
        loop = self._loop or asyncio.get_running_loop()
        self._trim_timer = loop.call_later(TRIM_INTERVAL_S, self._trim_captures)
        if len(self.launcher.captures):
            trimmed = self.launcher.captures.trim()
            if trimmed:
                log.debug("trimmed stderr captures", files=trimmed)

    def _flush_exits(self) -> None:
        self._exit_flush = None
        if self.outbox.exited:
            self.outbox.ready.set()

    def _flush_started(self) -> None:
        self._flush = None
        if self.outbox.started:
            self.outbox.ready.set()

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
