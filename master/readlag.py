"""How far behind the master reads its agents' streams. Pure (no clock: callers pass the times).

A heartbeat says when its agent sent it (``Heartbeat.time``, the agent's clock). Read at ``read``
(the master's clock), ``read - sent`` is the clocks' skew plus the way; its smallest value for an
agent (``base``) is that skew plus the way when nothing waits, so ``read - sent - base`` is how
long that heartbeat waited to be read: on the wire, in the master's transport, in its loop. A
base older than ``REBASE`` windows is taken again from the next heartbeat (any smaller value
replaces it at once), so an agent whose clock stepped back raises the allowance for that long only.

The heartbeat watch (``Dispatcher.watch_agents``) adds the recent read lag to the timeout: a
master that reads every stream 20 s late (8,192 agents on a loaded host: the heartbeats waited in
the master's process while its loop ran, so ``credit_stall`` saw no stall) would otherwise find
many agents silent at once. The lag of a period is the longest wait read in it: the wait falls on
some streams, not all (8,192 agents: the 90th percentile said 0.3 s when some heartbeats waited
50 s, and 1,509 live agents were declared lost), and the allowance is the largest of the periods
of the last ``window`` seconds (a backlog grows between the reads that show it). A hung agent sends
nothing: it adds no wait, and the others' keep the allowance near 0 when the master keeps up. A
master that reads no heartbeat at all measures no wait either: with ``DEAF_MIN_AGENTS`` agents or
more, the time since it read any heartbeat, less the interval, is allowed too, up to the timeout
(an agent is then lost after twice the timeout at most, should all fall silent at once).
"""

from __future__ import annotations

from collections import deque

DEAF_MIN_AGENTS = 8  # with fewer, all silent at once is as likely as a master that reads nothing
REBASE = 4.0  # an agent's base is taken again after this many windows (a clock that stepped back)


class ReadLag:
    def __init__(self, window: float) -> None:
        self.window = window  # seconds of periods the allowance looks back over
        self.base: dict[str, tuple[float, float]] = {}  # node -> (its smallest read - sent, since when)
        self._waits: list[float] = []  # waits read since the last period
        self._periods: deque[tuple[float, float]] = deque()  # (when, the period's lag)
        self.last_read: float | None = None  # when the latest heartbeat of any agent was read (ours)

    def heard(self, node: str, sent: float, read: float) -> None:
        """A heartbeat of ``node`` sent at ``sent`` (its clock; 0: not said, not counted) was read at
        ``read`` (ours)."""
        if sent <= 0:
            return
        self.last_read = read if self.last_read is None else max(self.last_read, read)
        d = read - sent
        got = self.base.get(node)
        if got is None or d < got[0] or read - got[1] > REBASE * self.window:
            got = self.base[node] = (d, read)
        self._waits.append(d - got[0])

    def deaf(self, now: float, interval: float, cap: float) -> float:
        """How long the master has read no heartbeat of anyone past the ``interval`` they are sent
        at (``now``: our clock), at most ``cap``: with many agents, all silent at once is less
        likely than a master that does not read (the waits say nothing then: none is read)."""
        if self.last_read is None:
            return 0.0
        return max(0.0, min(now - self.last_read - interval, cap))

    def forget(self, node: str) -> None:
        """Its stream ended (a new one may come from another host, another clock)."""
        self.base.pop(node, None)

    def period(self, now: float) -> float:
        """Close a period at ``now`` (any monotonic clock) and return the allowance: the largest
        lag of the periods within ``window`` s; none read since: the last lag measured stands (a
        master that reads nothing at all does not catch up by it)."""
        waits, self._waits = self._waits, []
        if waits:
            self._periods.append((now, max(waits)))
        periods = self._periods
        while len(periods) > 1 and periods[0][0] < now - self.window:
            periods.popleft()
        return max((lag for _, lag in periods), default=0.0)


class SentClock:
    """Another host's clock, seen through the times it stamps on what it sends (a relay's
    ``RelayUp.time``). ``base``, the smallest read - sent, is the clocks' skew plus the way when
    nothing waits, so ``ours`` puts a time of theirs on our clock never earlier than it truly was
    (a node's grace is never cut short), and no later than when we read it. A base older than
    ``rebase`` seconds is taken again from the next message (a clock that stepped back)."""

    def __init__(self, rebase: float = 60.0) -> None:
        self.rebase = rebase
        self.base: float | None = None
        self._since = 0.0  # when the base was taken (ours)

    def heard(self, sent: float, read: float) -> None:
        """A message stamped ``sent`` (their clock; 0: not stamped) was read at ``read`` (ours)."""
        if sent <= 0:
            return
        d = read - sent
        if self.base is None or d < self.base or read - self._since > self.rebase:
            self.base, self._since = d, read

    def ours(self, t: float, read: float) -> float:
        """Their time ``t`` (0: not said) on our clock, for something read at ``read``."""
        if t <= 0 or self.base is None:
            return read
        return min(read, t + self.base)
