"""Signals (SIGCHLD, SIGTERM, SIGINT) turned into event-loop callbacks: coalesced, never lost, quiet.

Why not ``loop.add_signal_handler``: asyncio learns which signal came from the
bytes its C-level handler writes to a self-pipe. A burst of task exits (one
SIGCHLD each) fills that pipe; the bytes that do not fit are dropped (with an
"Exception ignored ... BlockingIOError" on stderr for each), and a SIGTERM whose
byte is dropped is never seen. Here the byte only wakes the loop; which signal
came is known from Python-level handlers, whose per-signal flags cannot
overflow, and each signal has at most one callback queued at a time.
"""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import Callable
from types import FrameType
from typing import Any


class SignalHub:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._callbacks: dict[int, Callable[[], None]] = {}
        self._previous: dict[int, Any] = {}
        self._pending: set[int] = set()
        self._r, self._w = socket.socketpair()
        self._r.setblocking(False)
        self._w.setblocking(False)
        # Must be called from the main thread (as add_signal_handler must).
        self._old_wakeup = signal.set_wakeup_fd(self._w.fileno(), warn_on_full_buffer=False)
        loop.add_reader(self._r.fileno(), self._drain)

    def watch(self, signum: int, callback: Callable[[], None]) -> None:
        """Call ``callback()`` on the loop after ``signum`` arrives (once per burst)."""
        self._callbacks[signum] = callback
        self._previous[signum] = signal.signal(signum, self._on_signal)
        signal.siginterrupt(signum, False)  # restart interrupted system calls

    def close(self) -> None:
        """Put back the previous handlers and wakeup fd."""
        for signum, old in self._previous.items():
            signal.signal(signum, old if old is not None else signal.SIG_DFL)
        self._previous.clear()
        self._callbacks.clear()
        self._loop.remove_reader(self._r.fileno())
        signal.set_wakeup_fd(self._old_wakeup)
        self._r.close()
        self._w.close()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Runs in the main thread between two bytecodes: only flag and schedule.
        if signum not in self._pending and signum in self._callbacks:
            self._pending.add(signum)
            self._loop.call_soon_threadsafe(self._dispatch, signum)

    def _dispatch(self, signum: int) -> None:
        self._pending.discard(signum)
        cb = self._callbacks.get(signum)
        if cb is not None:
            cb()

    def _drain(self) -> None:
        try:
            while self._r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass
