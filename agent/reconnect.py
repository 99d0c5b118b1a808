"""Pure helpers for an agent that outlives its master (no I/O, no clock: callers pass ``now``).

- ``backoff_delay``: how long to wait before reconnect attempt N (0.2 s doubling to 5 s, jittered).
- ``SentExits``: the exit reports sent on a stream during a recent window. When the stream breaks
  the agent cannot know which of them arrived, so a reconnect's Register resends them (the master
  ignores duplicates); the window is bounded in age and in count, and the stderr tails it keeps
  in bytes (RESEND_TAIL_BYTES: past that, a report is kept without its tail).
"""

from __future__ import annotations

import dataclasses
import random
from collections import deque
from collections.abc import Iterable

from .state import ReportExited

BACKOFF_FIRST_S = 0.2
BACKOFF_MAX_S = 5.0
BACKOFF_JITTER = 0.25  # a delay is shortened by up to this fraction, at random
RESEND_WINDOW_S = 120.0
RESEND_MAX = 100_000
RESEND_TAIL_BYTES = 4 << 20  # stderr tails kept for a resend, in all (about 1000 failed tasks' worth)


def backoff_delay(
    attempt: int,
    rand: float | None = None,
    *,
    first: float = BACKOFF_FIRST_S,
    cap: float = BACKOFF_MAX_S,
    jitter: float = BACKOFF_JITTER,
) -> float:
    """The wait before reconnect attempt ``attempt`` (0, 1, ...): ``first`` doubling up to ``cap``,
    times (1 - jitter * rand) so that agents cut off together do not come back in lockstep.
    ``rand`` in [0, 1): None draws one."""
    if rand is None:
        rand = random.random()
    base = cap if attempt >= 64 else min(cap, first * 2**attempt)
    return base * (1.0 - jitter * rand)


class SentExits:
    """Exit reports sent in the last ``max_age_s`` seconds, at most ``max_count`` (oldest dropped)."""

    def __init__(self, max_age_s: float = RESEND_WINDOW_S, max_count: int = RESEND_MAX,
                 max_tail_bytes: int = RESEND_TAIL_BYTES) -> None:
        self.max_age_s = max_age_s
        self.max_count = max_count
        self.max_tail_bytes = max_tail_bytes
        self._items: deque[tuple[float, ReportExited]] = deque()
        self.tail_bytes = 0  # the length of the stderr tails held (characters, as a bound)

    def __len__(self) -> int:
        return len(self._items)

    def add(self, reports: Iterable[ReportExited], now: float) -> None:
        items = self._items
        for r in reports:
            if r.stderr_tail:
                if self.tail_bytes + len(r.stderr_tail) > self.max_tail_bytes:
                    r = dataclasses.replace(r, stderr_tail="")  # the exit matters; its tail may go
                else:
                    self.tail_bytes += len(r.stderr_tail)
            items.append((now, r))
        excess = len(items) - self.max_count
        if excess > 0:
            if excess >= len(items):
                items.clear()
                self.tail_bytes = 0
            else:
                for _ in range(excess):
                    self._forget(items.popleft()[1])

    def recent(self, now: float) -> list[ReportExited]:
        """What was sent within the window, oldest first (older entries are forgotten)."""
        items = self._items
        horizon = now - self.max_age_s
        while items and items[0][0] < horizon:
            self._forget(items.popleft()[1])
        return [r for _, r in items]

    def _forget(self, r: ReportExited) -> None:
        if r.stderr_tail:
            self.tail_bytes -= len(r.stderr_tail)
