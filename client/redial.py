"""Waits and watches that outlive a master restart (``pj-master --resume``, perhaps on another port).

When a Watch breaks because the master went away (or a wait's Watch ends before its jobs did: a
master stopped midway), ``Client.wait``/``watch`` and ``AsyncClient``'s look for the master again
(DIR/master.json, the token, the certificate, when the client was made from a workdir) and reopen
the Watch, with back-off: 0.1 s doubling to 2 s. A reopened Watch starts with the present (the
resumed master still knows every job), so a wait goes on counting from there. A master that stays
away past ``reconnect_timeout`` (default 60 s; 0: no retry; None: no limit), or past the wait's
own timeout, ends it with a one-line ``MasterUnreachable``. Unary calls never retry.

A Watch the master dropped because its client fell too far behind (``WatchDropped``: gRPC
RESOURCE_EXHAUSTED, master/watchhub.py) is reopened at once, whatever ``reconnect_timeout`` (the
master is there; the new Watch starts with the present): only the wait's own timeout bounds it.

``Retry`` is the bookkeeping of one such wait or watch (no I/O; the clock can be given).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from pj.common.durations import format_duration

from .errors import MasterNotFound, MasterUnreachable, PJError, WatchDropped

BACKOFF_FIRST_S = 0.1
BACKOFF_MAX_S = 2.0
RECONNECT_TIMEOUT_S = 60.0


def backoff(attempt: int) -> float:
    """The pause before try ``attempt`` (0, 1, ...) to reach the master again."""
    return BACKOFF_MAX_S if attempt >= 16 else min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2**attempt)


def worth_retrying(error: PJError) -> bool:
    """The master went away or is not there yet: it may come back (a restart, a --resume); or it
    dropped a watch that fell behind: a new one starts with the present."""
    return isinstance(error, MasterUnreachable | MasterNotFound | WatchDropped)


class Retry:
    """One wait's or watch's tries to reach the master again.

    ``limit``: how long the master may stay away (None: no limit, 0: no retry), counted from the
    first failure since the master was last heard; ``timeout``: the wait's own (None: none), from
    now; ``limit_name`` names the limit in the final error (``reconnect_timeout``,
    ``--reconnect-timeout``).
    """

    def __init__(
        self,
        limit: float | None,
        timeout: float | None = None,
        limit_name: str = "reconnect_timeout",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.limit_name = limit_name
        self.clock = clock
        self.deadline = None if timeout is None else clock() + timeout
        self.timeout = timeout
        self.attempt = 0
        self.away_since: float | None = None  # the first failure since the master was last heard

    def heard(self) -> None:
        """The master answered: a later break starts a new count."""
        self.attempt = 0
        self.away_since = None

    def call_timeout(self) -> float | None:
        """The time left for the wait (None: no timeout)."""
        return None if self.deadline is None else max(self.deadline - self.clock(), 0.0)

    def after(self, error: PJError) -> float:
        """The pause before the next try, after ``error``. Raises ``error`` when it is not worth
        another try, or a MasterUnreachable that says so when the limit or the wait's timeout has
        passed (or would before the next try)."""
        if isinstance(error, WatchDropped):  # the master is there: watch again now
            if self.deadline is not None and self.clock() >= self.deadline:
                raise error
            return 0.0
        if not worth_retrying(error) or self.limit == 0:
            raise error
        now = self.clock()
        if self.away_since is None:
            self.away_since = now
        delay = backoff(self.attempt)
        self.attempt += 1
        if self.deadline is not None and now + delay >= self.deadline:
            raise self._gave_up(error, now, f"the wait's timeout of {format_duration(self.timeout or 0)}")
        if self.limit is not None:
            left = self.away_since + self.limit - now
            if left <= 0:
                raise self._gave_up(error, now, f"{self.limit_name} {format_duration(self.limit)}")
            delay = min(delay, left)
        return delay

    def _gave_up(self, error: PJError, now: float, why: str) -> MasterUnreachable:
        assert self.away_since is not None
        waited = format_duration(max(round(now - self.away_since, 1), 0.1))
        return MasterUnreachable(f"{error}; no master came back within {waited} ({why})")
