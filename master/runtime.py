"""The master's asyncio shell around the core: it feeds events in, and carries the Outbox out.

One dispatcher task (``Dispatcher.run``) runs a scheduling pass whenever something was poked
and routes the commands: launches and cancels to each agent's outgoing batch, changed
jobs and run-level notices to the watchers. Events that arrive while a pass or a write is
under way pile up and travel together: batching comes from the loop, not from timers. The
one timer is the core's own ``wake_at`` (the deadline for the expected nodes); besides it only
a watch of every job is paced (``WatchHub``, watchhub.py: at most one message per
``WATCH_EVERY_S``, built once for every such watcher, the last one at once) and housekeeping: the
heap trim shortly after a big Submit (``trim_soon``), which nothing waits for.
``shutdown_agents`` waits for ``AgentTable.emptied``, not by looking.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

import structlog

from pj.v1 import pj_pb2 as pb

from . import convert, peers
from .core import Core, Outbox
from .journal import Journal
from .readlag import DEAF_MIN_AGENTS, ReadLag
from .registry import Job
from .watchhub import WatchHub
from .writefault import WRITE_ERRORS, Stall

log = structlog.get_logger("pj.master")

HEARTBEAT_S = 10.0  # the longest heartbeat interval agents are told to keep
HEARTBEAT_TIMEOUT_S = 30.0  # default: an agent silent this long is lost

TRIM_AFTER_JOBS = 10_000  # a Submit this big is followed by giving freed heap memory back
TRIM_DELAY_S = 0.2  # ... this long after its reply, once gRPC has let go of the request
# A Submit this big holds the passes for a moment: a client sending a big list in parts
# (client/calls.py, 50,000 jobs each) has the next part on its way at once, and a pass between
# parts would launch (and take the reports of) the jobs so far while the rest waits: with
# thousands of agents taking every job at once, that made a 1M-job submit 3x longer.
SUBMIT_HOLD_S = 0.25
# A part that says more follow (SubmitRequest.parts_after) holds them until the next is in, or this
# long: a gap longer than SUBMIT_HOLD_S between parts (the client's garbage collector, a busy
# host) let the dispatch start in the middle of a 1M submit, and the rest of it took 5x longer.
SUBMIT_MORE_HOLD_S = 5.0
SUBMIT_HOLD_MAX_S = 30.0  # passes are never held longer in a row than this (a client that never stops)


def _libc_trim() -> None:
    """Hand the heap's free memory back to the OS (glibc's malloc_trim; elsewhere nothing).

    A big Submit parses its whole request (tens of MB for 100 000 jobs) and frees it after the
    reply; glibc keeps such memory in the process unless told, so the master's RSS would stay at
    its peak for the rest of the campaign."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Any:
    try:
        return getattr(ctypes.CDLL(None), "malloc_trim", None)
    except OSError:
        return None


class WakeGroup:
    """The agent connections one writer serves (a relay's links, relaylink.py): one ``ready`` event
    for all, and which of them have something to write (``dirty``), so that a wake costs the
    writer only those, not every link."""

    def __init__(self) -> None:
        self.ready = asyncio.Event()
        self.dirty: set[AgentConn] = set()


class AgentConn:
    """What is waiting to be written down one agent's stream."""

    def __init__(self, node: str, pid: int = 0, hostname: str = "", group: WakeGroup | None = None) -> None:
        self.node = node
        self.pid = pid  # the agent process on the other end (Register.pid, .hostname)
        self.hostname = hostname
        self.replaced = False  # the same agent came back on a new stream: this one is to end
        self.closed = asyncio.Event()  # its handler has finished (the node is no longer connected)
        self._message: pb.MasterMessage | None = None  # the Orders being gathered, None: none
        self.shutdown = ""
        # Set when there is something to write (``wake``): its own, or its relay's (``WakeGroup``).
        self.ready = asyncio.Event() if group is None else group.ready
        self._dirty = None if group is None else group.dirty
        self.last_seen = time.monotonic()  # when it last said anything (a heartbeat counts)
        self.lost = asyncio.Event()  # set when it was silent too long: its stream is to end
        self.goodbye = False  # it closed its side of the stream (a stopped or a killed agent)

    def orders(self) -> pb.Orders:
        """The Orders going down with the next message: launches are built in place (a Launch made
        apart and then put in would be copied)."""
        if self._message is None:
            self._message = pb.MasterMessage()
        return self._message.orders

    def wake(self) -> None:
        """Something is to go down this stream (orders, the Shutdown, its end): wake its writer."""
        if self._dirty is not None:
            self._dirty.add(self)
        self.ready.set()

    def end_stream(self) -> None:
        """The master ends this stream (the node was silent too long, or its agent is back on a new
        one): ``lost`` is set and whoever writes to it woken."""
        self.lost.set()
        self.wake()

    def take(self) -> pb.MasterMessage | None:
        msg, self._message = self._message, None
        return msg


class AgentTable(dict[str, AgentConn]):
    """The connected agents by node; ``emptied`` is set whenever the last one leaves (what
    ``shutdown_agents`` waits for, instead of looking every few ms)."""

    def __init__(self) -> None:
        super().__init__()
        self.emptied = asyncio.Event()
        self.emptied.set()

    def __setitem__(self, node: str, conn: AgentConn) -> None:
        super().__setitem__(node, conn)
        self.emptied.clear()

    def __delitem__(self, node: str) -> None:
        super().__delitem__(node)
        if not self:
            self.emptied.set()

    def pop(self, node: str, *default: Any) -> Any:  # type: ignore[override]
        value = super().pop(node, *default)
        if not self:
            self.emptied.set()
        return value


SETTLE_WAIT_S = 2.0  # how long a read waits for the journal (Dispatcher.settled)


class Dispatcher:
    def __init__(self, core: Core, address: str = "", journal: Journal | None = None) -> None:
        self.core = core
        self.journal = journal  # None: nothing is journaled (tests of the shell alone)
        self.address = address
        self.started_at = time.time()
        self.agents = AgentTable()
        self.hub = WatchHub(self.event)  # every Watch stream (watchhub.py)
        self.notices: list[str] = []  # every run-level notice so far, oldest first
        self._wake = asyncio.Event()
        self.stopping = False
        self._stopped = asyncio.Event()
        self.shutdown_reason = ""  # set once the agents are told to stop
        self.heartbeat_timeout = HEARTBEAT_TIMEOUT_S  # an agent silent this long is lost
        self.read_lag = ReadLag(HEARTBEAT_TIMEOUT_S)  # how late heartbeats are read (readlag.py)
        self._trim_pending = False
        self._hold_until = 0.0  # the loop's time until which passes wait for more of a big submit
        self._hold_since: float | None = None  # when the hold began (None: no hold)
        self._hold_moved = asyncio.Event()  # the hold was set again (the last part shortens it)
        self.stall = Stall()  # dispatch paused by a journal write that failed (writefault.py)
        # Reads wait for the journal (``settled``): pokes so far, and pokes a journaled pass covers.
        self._poked = 0
        self._passed = 0
        self._pass_done = asyncio.Event()

    @staticmethod
    def now() -> float:
        return time.time()

    # ------------------------------------------------------------------ agent sessions (policy)

    def may_replace(self, old: AgentConn, pid: int, hostname: str, campaign: str) -> bool:
        """A Register for a node that is connected: True when it is the same agent process (pid and
        host) back for this campaign, so its old stream is dead though unnoticed (a network cut
        leaves no reset) and is to be replaced; anyone else is refused."""
        return bool(campaign) and campaign == self.core.campaign and (pid, hostname) == (old.pid, old.hostname)

    def agent_reports(self, node: str, started: Iterable[tuple[int, float]],
                      exited: Iterable[tuple[int, int, str, float, bytes, str]], withdrawn: Iterable[int]) -> None:
        """An agent's batch of reports: starts (task id, its time), exits (task id, exit code, error,
        time, usage, stderr tail), standbys given back. The agent's own times count (when it spawned
        and reaped), never after now. Only reports on this node's own tasks count (peers.py): the
        others are logged and ignored."""
        core, now = self.core, self.now()
        ours, bad = peers.reports_on, []
        for tid, t in started:
            if ours(core, node, tid):
                core.task_started(tid, t if 0 < t < now else now)
            else:
                bad.append(tid)
        for tid, code, error, t, used, tail in exited:
            if ours(core, node, tid):
                core.task_exited(tid, code, error, t if 0 < t < now else now, used, tail)
            else:
                bad.append(tid)
        for tid in withdrawn:
            if ours(core, node, tid):
                core.task_withdrawn(tid, now)
            else:
                bad.append(tid)
        if bad:
            log.warning(peers.warning(node, bad))
        self.poke()

    def agent_gone(self, node: str, goodbye: bool, at: float | None = None) -> bool:
        """A node's agent stream ended. An agent that stops reports its tasks' ends, then closes its
        side (``goodbye``): it left. A killed one's stream also ends cleanly, but with tasks still
        running: it is given the grace (from ``at``, when the stream was seen to end, if earlier than
        now), as an agent that may come back with them. True: it left."""
        core = self.core
        left = bool(self.shutdown_reason) or (goodbye and not core.runs_on(node))
        if left:
            core.node_left(node, self.now())
        else:
            now = self.now()
            core.node_disconnected(node, now if at is None else min(at, now))
        self.poke()
        return left

    def trim_soon(self) -> None:
        """Give the heap's free memory back shortly (after a big Submit: its request is freed
        once the reply is out). Housekeeping only: nothing waits for it."""
        if not self._trim_pending:
            self._trim_pending = True
            asyncio.get_running_loop().call_later(TRIM_DELAY_S, self._trim)

    def submitted(self, jobs: int, more: int = 0) -> None:
        """A Submit of ``jobs`` was taken, its client about to send ``more`` parts: run a pass soon;
        after a big one or one with more to come, once no further part came for SUBMIT_HOLD_S
        (SUBMIT_MORE_HOLD_S while more are announced; at most SUBMIT_HOLD_MAX_S after the first),
        and trim the heap after a big one."""
        if jobs >= TRIM_AFTER_JOBS:
            self.trim_soon()
        if jobs >= TRIM_AFTER_JOBS or more:
            now = asyncio.get_running_loop().time()
            if self._hold_since is None:
                self._hold_since = now
            if now - self._hold_since < SUBMIT_HOLD_MAX_S:
                self._hold_until = now + (SUBMIT_MORE_HOLD_S if more else SUBMIT_HOLD_S)
                self._hold_moved.set()
        self.poke()

    async def _held(self) -> None:
        """Wait out a hold after big Submits (``submitted``)."""
        # Woken when the hold moves: the last part of a big submit cuts the SUBMIT_MORE_HOLD_S its
        # first part set to SUBMIT_HOLD_S (a plain sleep of what was left held every big
        # submit's first pass 5 s).
        loop = asyncio.get_running_loop()
        while (left := self._hold_until - loop.time()) > 0:
            self._hold_moved.clear()
            try:
                await asyncio.wait_for(self._hold_moved.wait(), left)
            except TimeoutError:
                pass
        self._hold_since = None

    def _trim(self) -> None:
        self._trim_pending = False
        _libc_trim()

    def poke(self) -> None:
        """Something changed: run a pass soon (once, however many pokes)."""
        self._poked += 1
        self._wake.set()

    async def settled(self, timeout: float = SETTLE_WAIT_S) -> None:
        """Wait until the passes that cover every change so far are journaled, so that what a
        client reads next (Status, Info, List) survives a kill -9 of the master: a task it saw
        SUCCEED never runs again after --resume. At most ``timeout`` (a pass held by a full disk
        must not stall reads: they then show what is not journaled yet)."""
        target = self._poked
        if self._passed >= target or self.stopping:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._passed < target and not self.stopping:
            left = deadline - loop.time()
            if left <= 0:
                return
            try:
                await asyncio.wait_for(self._pass_done.wait(), left)
            except TimeoutError:
                return

    async def run(self) -> None:
        """The dispatcher: pass, route, repeat, until the core says every job ended after finish."""
        wake_at: float | None = None
        held: Outbox | None = None  # a pass whose journal write failed: written again, then routed
        while True:
            if held is not None:
                await asyncio.sleep(self.stall.retry_s)  # paused: no pass until it is written
            elif wake_at is None:
                await self._wake.wait()
            elif wake_at <= self.now():
                await asyncio.sleep(0)  # a pass at once (the last one placed its most): others first
            else:
                try:
                    await asyncio.wait_for(self._wake.wait(), max(0.0, wake_at - self.now()))
                except TimeoutError:
                    pass  # the core asked for a pass now
            if held is None:
                await self._held()
                self._wake.clear()
                covered = self._poked  # the changes this pass takes in
                out = self.core.step(self.now())
            else:
                out, held = held, None
            if self.journal is not None and not self._record(self.journal, out):
                held = out  # nothing of it goes out (no launch, no news) before it is journaled
                continue
            self._passed = covered
            self._pass_done.set()  # wakes every reader waiting now
            self._pass_done.clear()
            wake_at = out.wake_at
            self._route(out)
            if out.stop:
                break
        self.stopping = True
        self._stopped.set()
        self.hub.close()

    def _record(self, journal: Journal, out: Outbox) -> bool:
        """Journal one pass, one transaction, before any news; False if the write failed (then
        dispatch pauses, with a notice, until a later try succeeds: writefault.Stall)."""
        try:
            journal.record(out.ended, out.finished, out.placed, out.unplaced, out.attempts)
        except WRITE_ERRORS as e:
            notice = self.stall.failed(journal.path, e, self.now())
            if notice is not None:
                self.tell([notice])
            return False
        if self.stall.paused:
            self.tell([self.stall.written(journal.path, self.now()) or ""])
        return True

    def tell(self, notices: list[str]) -> None:
        """Run-level news: master.log, `pj status` and every watcher."""
        for notice in notices:
            log.warning(notice)
        self.notices.extend(notices)
        self.hub.tell(notices)

    @property
    def heartbeat_s(self) -> float:
        """The interval agents are told to send heartbeats at: a third of the timeout, at most 10 s."""
        return min(HEARTBEAT_S, self.heartbeat_timeout / 3)

    async def watch_agents(self) -> None:
        """Declare lost every agent silent for longer than ``heartbeat_timeout`` plus how late the
        master reads heartbeats now (readlag.py) (its Connect handler then ends the stream: the node
        is disconnected, and lost unless it registers again within ``heartbeat_timeout``). Ends when
        ``run`` does."""
        timeout = self.heartbeat_timeout
        self.read_lag.window = timeout
        period = min(1.0, timeout / 4)
        last = time.monotonic()
        while not self.stopping:
            try:
                await asyncio.wait_for(self._stopped.wait(), period)
            except TimeoutError:
                pass
            now = time.monotonic()
            late, last = now - last - period, now
            if late > period:
                self.credit_stall(late, now)
            self.declare_silent(timeout, self.read_allowance(timeout, now), now)

    def read_allowance(self, timeout: float, now: float) -> float:
        """What the watch adds to the timeout for heartbeats read late (readlag.py)."""
        lag = self.read_lag.period(now)
        if len(self.agents) >= DEAF_MIN_AGENTS:
            lag = max(lag, self.read_lag.deaf(time.time(), self.heartbeat_s, timeout))
        return lag

    def declare_silent(self, timeout: float, read_lag: float, now: float) -> None:
        """Every agent silent for more than ``timeout`` + ``read_lag`` s is lost (``conn.lost``)."""
        for conn in list(self.agents.values()):
            silent = now - conn.last_seen
            if silent > timeout + read_lag and not conn.lost.is_set():
                log.warning(
                    f"node {conn.node} lost: its agent said nothing for {silent:.1f} s "
                    f"(--heartbeat-timeout {timeout:g} s, heartbeats read {read_lag:.1f} s late)",
                    node=conn.node, silent_s=round(silent, 1), read_lag_s=round(read_lag, 1),
                )
                conn.end_stream()

    def credit_stall(self, late: float, now: float) -> None:
        """The loop was busy for ``late`` s more than the watch allows (a long pass, a storm, a
        big Submit): meanwhile no agent's message could be read, so that time is not counted as
        their silence. Else every agent would look lost at once after a stall of the timeout's
        length, their heartbeats waiting unread in the sockets."""
        for conn in self.agents.values():
            conn.last_seen = min(now, conn.last_seen + late)

    def _route(self, out: Outbox) -> None:
        core = self.core
        for node, launches in out.launches.items():
            conn = self.agents.get(node)
            if conn is None and core.is_disconnected(node):
                continue  # its stream broke: reconciled when it comes back (they never ran: queued again)
            if conn is None:  # the agent left between the pass and now
                for t in launches:
                    core.task_exited(t.task_id, -1, f"node lost: {node}", self.now())
                self.poke()
                continue
            convert.add_launches(conn.orders().launch, launches)
            conn.wake()
        for node, ids in out.cancels.items():
            conn = self.agents.get(node)
            if conn is not None:
                conn.orders().cancel.extend(ids)
                conn.wake()
        for node, ids in out.withdraws.items():
            conn = self.agents.get(node)
            if conn is not None:  # else its stream broke: the agent drops what waits (reconciled)
                conn.orders().withdraw.extend(ids)
                conn.wake()
        if out.changed:
            self.hub.offer(out.changed, core.unfinished == 0)
        if out.notices:
            self.tell(out.notices)

    async def shutdown_agents(self, reason: str, timeout: float = 10.0) -> None:
        """Tell every agent to stop and wait (a while) for their streams to close.

        An agent that connects from now on is told to stop at once (``shutdown_reason``)."""
        self.shutdown_reason = reason
        for conn in self.agents.values():
            conn.shutdown = reason
            conn.wake()
        deadline = time.monotonic() + timeout
        while self.agents and (left := deadline - time.monotonic()) > 0:
            self.agents.emptied.clear()  # agents are here (however they were put in): wait for the last
            try:  # (an agent that connects meanwhile is told to stop at once, and waited for too)
                await asyncio.wait_for(self.agents.emptied.wait(), left)
            except TimeoutError:
                break
        if self.agents:
            log.warning("agents did not close their streams", nodes=sorted(self.agents))

    def event(self, names: set[str] | None, counts_only: bool, jobs: list[Job], notices: list[str]) -> pb.WatchEvent:
        """One Watch message: the jobs that changed, the watched jobs' totals (per state when
        ``counts_only``), every task per state, and the notices."""
        core = self.core
        ev = pb.WatchEvent(
            watched_total=len(names) if names is not None else len(core.registry),
            watched_unfinished=self.unfinished_of(names),
            tasks=convert.counts_to_pb(core.task_counts),
            master_finishing=core.finishing or self.stopping,
            notices=notices,
        )
        convert.add_summaries(ev.changed, jobs)
        if counts_only:
            if names is None:
                ev.jobs.extend(convert.counts_to_pb(core.job_counts))
            else:
                jobs_of = core.registry.jobs
                ev.jobs.extend(convert.counts_to_pb(Counter(jobs_of[n].state for n in names)))
        return ev

    def unfinished_of(self, names: Iterable[str] | None) -> int:
        if names is None:
            return self.core.unfinished
        reg = self.core.registry
        return sum(1 for n in names if (j := reg.get(n)) is not None and not j.final)
