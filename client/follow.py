"""Following a campaign's jobs for `pj run`: one counts-only Watch pumped by a thread into a queue,
folded into a ``Tracker`` and drawn by ``Progress`` until every job has ended.

The thread is structured: ``close()`` cancels the stream, which ends the thread's iteration, and
joins it, so no thread is left running once the follower is closed (``Campaign`` closes it on
every path out of a run).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from .convert import WatchEvent
from .errors import PJError, one_line
from .procs import CampaignError
from .progress import Progress, Tracker

if TYPE_CHECKING:  # api pulls in grpc
    from .api import Client, WatchStream

END = object()  # the stream ended (put after its last event)
_JOIN_S = 30.0  # a canceled stream ends the pump's iteration at once; this only bounds a stuck one


class Follower:
    """The Watch of one campaign: ``start``, then ``follow`` (or ``drain``), then ``close``."""

    def __init__(self, tracker: Tracker, err: TextIO, say: Callable[[str], None], *, quiet: bool, tick: float) -> None:
        self.tracker = tracker
        self.err = err
        self.say = say
        self.quiet = quiet
        self.tick = tick
        self.stream: WatchStream | None = None
        self.events: queue.Queue[Any] = queue.Queue()
        self.progress: Progress | None = None
        self._thread: threading.Thread | None = None

    def start(self, client: Client) -> None:
        self.stream = client.watch(counts_only=True)  # counts, and the jobs that ended badly
        self._thread = threading.Thread(target=self._pump, args=(self.stream,), name="pj-watch", daemon=True)
        self._thread.start()
        self.progress = Progress(self.tracker, self.err, quiet=self.quiet)

    def close(self) -> None:
        """Cancel the stream and join the pump thread (idempotent)."""
        if self.stream is not None:
            self.stream.cancel()
        if self._thread is not None:
            self._thread.join(_JOIN_S)
            self._thread = None

    def _pump(self, stream: WatchStream) -> None:
        try:
            for ev in stream:
                self.events.put(ev)
            self.events.put(END)
        except PJError as e:
            self.events.put(e)
        except Exception as e:  # never lose the reason in a background thread
            self.events.put(PJError(f"the watch stream failed: {e!r}"))

    def next_event(self) -> Any:
        try:
            return self.events.get(timeout=self.tick)
        except queue.Empty:
            return None

    def follow(self, master_gone: Callable[[float], None], check_children: Callable[[], None]) -> None:
        """Until every job has ended. Raises CampaignError when the stream ends first (after
        ``master_gone(2.0)`` had the chance to say how the master died); ``check_children`` runs
        every tick (it raises when the master or every agent is gone)."""
        heard = False  # the first event: the master's counts of every job per state
        while True:
            item = self.next_event()
            if isinstance(item, Exception) or item is END:
                master_gone(2.0)
                if item is END:
                    raise CampaignError("the master closed the watch stream before every job had ended")
                raise CampaignError(f"lost the master: {item}")
            if item is not None:
                self.apply(item)
                heard = True
            assert self.progress is not None
            self.progress.tick()
            if heard and self.tracker.all_finished:
                self.progress.close()
                return
            check_children()

    def apply(self, ev: WatchEvent) -> None:
        self.tracker.apply(ev)
        for notice in ev.notices:  # run-level news: a node that never came, one that was lost...
            self.say(f"warning: {one_line(notice)}")

    def drain(self, timeout: float, master_exited: Callable[[], bool]) -> None:
        """Fold in the last events (the cancellations) until the stream ends or the master exits."""
        if self.stream is None:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            item = self.next_event()
            if item is END or isinstance(item, Exception):
                return
            if item is not None:
                self.apply(item)
            elif master_exited():
                return
