"""Watch streams: each message built once for every watcher that wants the same one, and a watcher
that cannot keep up dropped before it costs the master memory (issue 13, item 9).

A watch of every job (``pj wait``, ``Client.wait``/``watch``, ``pj run``'s and ``pj top``'s
counts-only watch) is *shared*: the ``WatchHub`` gathers the jobs changed by the dispatcher's
passes into *ticks*. A tick is the WatchEvent of each shared kind (every job in full, every job
counted) that somebody follows, built and serialized once; every shared watcher sends the same
bytes (``Tick.data``), in order, from a log they all read (one that joins starts at the next
tick). The log keeps the ticks some watcher has not sent yet. A tick of more than ``TICK_JOBS``
changed jobs (a big Submit's) is several messages, each with part of the jobs and the same counts:
gRPC copies what a stream writes, and a stream holds at most one such copy at a time. Ticks come at most once per
``WATCH_EVERY_S`` (at once after the pass that ended the last job, for notices and for the close),
and with more than 20 shared watchers at most once per (watchers / ``WATCH_WRITES_PER_S``) s: with
messages built once, their writes (some 40 us of the master's loop each) are what costs, and they
stay under ``WATCH_WRITES_PER_S`` however many watch.

A shared watcher's backlog is the bytes of its kind's ticks that it has not yet handed to gRPC (the
one being written included). One more than ``backlog`` bytes behind that has not finished a write
for ``stall`` seconds (it had something to send all that time: its client reads nothing), or that
has more than ``HARD_FACTOR`` times that queued after the message it is writing (it reads, far too
slowly), is *dropped*: its write is abandoned, it leaves the hub, and its stream ends with
RESOURCE_EXHAUSTED and ``Watcher.dropped`` (the client reconnects: a new Watch starts with the
present). So the log never holds much more than ``backlog`` bytes per kind, however many watchers
there are, and a reader that pauses briefly (a big tick, a busy client) is not dropped.

A watch of named jobs (``wait(names)``) follows every pass with its own message, filtered from the
pass's changes: what waits for it is at most one entry per name it follows (the latest state of
each), so it is never dropped.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from pj.v1 import pj_pb2 as pb

from .model import State
from .registry import Job

log = structlog.get_logger("pj.master")

WATCH_EVERY_S = 0.05  # a watch of every job hears at most one message this often ...
WATCH_WRITES_PER_S = 400  # ... or less often with many: the shared watchers' writes, all together
TICK_JOBS = 2000  # jobs per message of a tick (a big Submit's tick is several messages)
WATCH_BACKLOG_MB = 16.0  # a shared watcher this far behind ...
WATCH_STALL_S = 10.0  # ... that has finished no write for this long is dropped
HARD_FACTOR = 4  # ... as is one with this many times the backlog queued behind its tick, however it reads

FULL, COUNTS = 0, 1  # the shared kinds: every job in full, every job counted (counts_only)
KINDS = (FULL, COUNTS)

_BAD = frozenset((State.FAILED, State.CANCELED, State.OMITTED))

# What makes one WatchEvent: (names or None for every job, counts_only, changed jobs, notices).
Build = Callable[[set[str] | None, bool, list[Job], list[str]], pb.WatchEvent]


@dataclass(slots=True)
class Tick:
    """One message of every shared kind: its bytes (None: nobody of that kind followed, or its
    tick needed fewer messages of that kind), how many bytes of each kind the log has held up to
    and including it, and up to the end of the tick it is part of (a tick of more than
    ``TICK_JOBS`` changed jobs is several messages)."""

    seq: int
    data: tuple[bytes | None, bytes | None]
    ends: tuple[int, int]
    group_ends: tuple[int, int] = (0, 0)


def dropped_message(behind: int, stalled_s: float, backlog: int, stall_s: float) -> str:
    """What a dropped watcher's client reads (gRPC RESOURCE_EXHAUSTED's details)."""
    how = f"read nothing for {stalled_s:.0f} s" if stalled_s > stall_s else "read too slowly to catch up"
    return (f"watch dropped: the client fell {behind / 2**20:.1f} MB behind (the master keeps at most "
            f"{backlog / 2**20:g} MB for a watch) and {how}; watch again to resume from the present")


class Watcher:
    """One Watch stream: the jobs it follows and where it stands.

    Shared (``names`` None): ``cursor`` is the next tick it sends, ``sent`` the bytes of its kind
    written so far, ``since`` when it last finished a write or had nothing to send. Named: it gathers
    what changed for its jobs (each in its latest state) and the notices since its last message,
    woken every pass (``every`` paces it otherwise).
    """

    def __init__(self, names: set[str] | None, every: float = 0.0, counts_only: bool = False) -> None:
        self.names = names
        # Counts only (WatchRequest.counts_only: `pj run`): a change wakes it, but only the jobs
        # that ended badly are kept for the message; the rest travels as counts per state.
        self.counts_only = counts_only
        self.kind: int | None = None if names is not None else COUNTS if counts_only else FULL
        self.changed: dict[str, Job] = {}
        self.notices: list[str] = []
        self.ready = asyncio.Event()
        self.closed = False
        self.dropped = ""  # why the hub dropped it; "": it was not
        self.writing: asyncio.Timeout | None = None  # the write under way (a drop ends it)
        self.cursor = 0
        self.sent = 0
        self.since = time.monotonic()
        self.every = every
        self._woken_at = float("-inf")
        self._timer: asyncio.TimerHandle | None = None

    def offer(self, changed: dict[str, Job]) -> None:
        """Jobs changed in a pass (a watch of named jobs): keep those it follows."""
        names = self.names
        assert names is not None
        small, big = (names, changed) if len(names) < len(changed) else (changed, names)
        mine = [n for n in small if n in big]
        if not mine:
            return
        for name in mine:
            job = changed[name]
            if not self.counts_only or job.state in _BAD:
                self.changed[name] = job
        self._wake(at_once=False)

    def tell(self, notices: list[str]) -> None:
        """Run-level news: every watcher hears it, whatever jobs it follows."""
        self.notices.extend(notices)
        self._wake(at_once=True)

    def close(self) -> None:
        self.closed = True
        self._wake(at_once=True)

    def _wake(self, at_once: bool) -> None:
        if self.ready.is_set():
            return  # a message is on its way: what changed since goes with it
        wait = 0.0 if at_once else self._woken_at + self.every - time.monotonic()
        if wait <= 0:
            self._set()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(wait, self._set)

    def _set(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._woken_at = time.monotonic()
        self.ready.set()


class WatchHub:
    """Every Watch stream of the master, and the log of ticks the shared ones send (module doc)."""

    def __init__(self, build: Build, every: float = WATCH_EVERY_S, backlog_mb: float = WATCH_BACKLOG_MB,
                 stall_s: float = WATCH_STALL_S) -> None:
        self.build = build
        self.every = every
        self.backlog = int(backlog_mb * 2**20)
        self.stall_s = stall_s
        self.shared: set[Watcher] = set()
        self.named: set[Watcher] = set()
        self.log: deque[Tick] = deque()
        self.seq = 0  # the next tick's
        self.total = [0, 0]  # bytes of each kind the log has held so far
        self.wanted = [0, 0]  # shared watchers of each kind
        self.pending: dict[str, Job] = {}  # jobs changed since the last tick
        self.notices: list[str] = []  # notices since the last tick
        self.dropped = 0  # watchers dropped so far
        self._ticked_at = float("-inf")
        self._timer: asyncio.TimerHandle | None = None

    def add(self, w: Watcher) -> None:
        if w.kind is None:
            self.named.add(w)
            return
        self.shared.add(w)
        self.wanted[w.kind] += 1
        w.cursor, w.sent, w.since = self.seq, self.total[w.kind], time.monotonic()

    def discard(self, w: Watcher) -> None:
        if w.kind is None:
            self.named.discard(w)
        elif w in self.shared:
            self.shared.remove(w)
            self.wanted[w.kind] -= 1

    def next_tick(self, w: Watcher) -> Tick | None:
        """The next tick ``w`` sends; None when it has sent them all."""
        if w.cursor >= self.seq:
            return None
        return self.log[w.cursor - self.log[0].seq]

    def sent(self, w: Watcher, tick: Tick) -> None:
        """``w`` has handed ``tick`` to gRPC."""
        assert w.kind is not None
        w.cursor, w.sent, w.since = tick.seq + 1, tick.ends[w.kind], time.monotonic()

    # ------------------------------------------------------------ from the dispatcher

    def offer(self, changed: dict[str, Job], all_ended: bool = False) -> None:
        """Jobs changed in a pass; ``all_ended``: no job is left unfinished."""
        for w in self.named:
            w.offer(changed)
        if self.shared:
            self.pending.update(changed)
            self._due(at_once=all_ended)

    def tell(self, notices: list[str]) -> None:
        """Run-level news: every watcher hears it at once."""
        for w in self.named:
            w.tell(notices)
        if self.shared:
            self.notices.extend(notices)
            self._due(at_once=True)

    def close(self) -> None:
        """The master is done: what is pending goes in a last tick, then every stream ends."""
        if self.shared and (self.pending or self.notices):
            self.tick()
        for w in [*self.shared, *self.named]:
            w.close()

    def _due(self, at_once: bool) -> None:
        if self._timer is not None and not at_once:
            return  # a tick is coming: this goes with it
        every = max(self.every, len(self.shared) / WATCH_WRITES_PER_S)
        wait = 0.0 if at_once else self._ticked_at + every - time.monotonic()
        if wait <= 0:
            self.tick()
        else:
            self._timer = asyncio.get_running_loop().call_later(wait, self.tick)

    def tick(self) -> None:
        """Make one message of each kind somebody follows from what is pending, once for all."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        now = time.monotonic()
        self._ticked_at = now
        jobs, notices = list(self.pending.values()), self.notices
        self.pending, self.notices = {}, []
        full = self._parts(FULL, jobs, notices)
        counts = self._parts(COUNTS, [j for j in jobs if j.state in _BAD] if self.wanted[COUNTS] else [], notices)
        seq = self.seq  # the first of this tick's messages
        made: list[Tick] = []
        for k in range(max(len(full), len(counts), 1)):
            data = (full[k] if k < len(full) else None, counts[k] if k < len(counts) else None)
            for kind in KINDS:
                self.total[kind] += len(data[kind] or b"")
            made.append(Tick(self.seq, data, (self.total[FULL], self.total[COUNTS])))
            self.seq += 1
        for tick in made:
            tick.group_ends = made[-1].ends
        self.log.extend(made)
        oldest = self.seq
        for w in list(self.shared):
            if w.cursor == seq:  # it had sent everything: it has not been waiting
                w.since = now
            elif self._hopeless(w, now):
                self._drop(w, now)
                continue
            oldest = min(oldest, w.cursor)
            w.ready.set()
        while self.log and self.log[0].seq < oldest:
            self.log.popleft()

    def _parts(self, kind: int, jobs: list[Job], notices: list[str]) -> list[bytes]:
        """The messages of ``kind`` for these jobs (none when nobody follows it): one per
        ``TICK_JOBS`` jobs, so that a watcher's write, which gRPC copies, stays small."""
        if not self.wanted[kind]:
            return []
        return [self.build(None, kind == COUNTS, jobs[i:i + TICK_JOBS], notices if i == 0 else []).SerializeToString()
                for i in range(0, max(len(jobs), 1), TICK_JOBS)]

    def _hopeless(self, w: Watcher, now: float) -> bool:
        """More than ``backlog`` bytes behind, and no write finished for ``stall_s`` or more than
        ``HARD_FACTOR`` x ``backlog`` queued after the tick it is writing (one big tick alone,
        a big Submit's, never drops a watcher that reads)."""
        assert w.kind is not None
        total = self.total[w.kind]
        if total - w.sent <= self.backlog:
            return False
        writing = self.log[w.cursor - self.log[0].seq]
        return now - w.since > self.stall_s or total - writing.group_ends[w.kind] > HARD_FACTOR * self.backlog

    def _drop(self, w: Watcher, now: float) -> None:
        assert w.kind is not None
        behind = self.total[w.kind] - w.sent
        w.dropped = dropped_message(behind, now - w.since, self.backlog, self.stall_s)
        self.dropped += 1
        log.warning("watch dropped: its client fell behind and read nothing", behind_mb=round(behind / 2**20, 1),
                    stalled_s=round(now - w.since, 1), counts_only=w.counts_only, dropped_so_far=self.dropped)
        self.discard(w)
        if w.writing is not None:
            w.writing.reschedule(asyncio.get_running_loop().time())  # the write under way ends now
        w.ready.set()
