"""The nodes a run expects, how long it waits for them, and what it says about those that never came.

Pure bookkeeping, no clock: the core passes ``now``. A run expects nodes by name (a Slurm host
list such as ``n[1-4]``) or by count. Its capacity is *known* (a job too big for it may fail)
once every expected node has registered, or once the deadline has passed; at the deadline the
nodes still missing are named in a notice, and the run goes on with what came or, with the
``fail`` policy, gives up.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from pj.common import hostlist

DEFAULT_TIMEOUT_S = 60.0
POLICIES = ("continue", "fail")
_LISTED = 10  # more names than this are shown as a Slurm host list


@dataclass(frozen=True, slots=True)
class Expectation:
    """What ``pj-master --expect-nodes X --node-timeout T --missing-nodes P`` asks for.

    ``names`` empty means by count; otherwise ``count == len(names)``.
    """

    count: int
    names: tuple[str, ...] = ()
    timeout_s: float = DEFAULT_TIMEOUT_S
    policy: str = "continue"

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"--expect-nodes: at least 1 node is needed, got {self.count}")
        if self.names and len(self.names) != self.count:
            raise ValueError("--expect-nodes: count and names disagree")
        if not self.timeout_s > 0:
            raise ValueError(f"--node-timeout: must be more than 0 s, got {self.timeout_s:g}")
        if self.policy not in POLICIES:
            raise ValueError(f"--missing-nodes: {self.policy!r} is not one of {', '.join(POLICIES)}")

    @classmethod
    def parse(cls, text: str, timeout_s: float = DEFAULT_TIMEOUT_S, policy: str = "continue") -> Expectation:
        """``"4"`` (a count) or a Slurm host list (``"n[1-4]"``, ``"a,b"``).

        Raises ValueError (HostlistError included) saying what is wrong with the text.
        """
        text = text.strip()
        if text.isdigit():
            return cls(int(text), (), timeout_s, policy)
        try:
            names = hostlist.expand(text)
        except hostlist.HostlistError as e:
            raise ValueError(f"--expect-nodes: {e}; give a count (4) or a Slurm host list (n[1-4])") from e
        if not names:
            raise ValueError("--expect-nodes: no node named; give a count (4) or a Slurm host list (n[1-4])")
        dup = sorted(n for n, k in Counter(names).items() if k > 1)
        if dup:
            raise ValueError(f"--expect-nodes: {', '.join(dup)} named more than once in {text!r}")
        return cls(len(names), tuple(names), timeout_s, policy)

    def describe(self) -> str:
        return show(self.names) if self.names else f"{self.count} node(s)"


def show(names: list[str] | tuple[str, ...]) -> str:
    """Names for a message: listed when few, as a Slurm host list when many."""
    if len(names) <= _LISTED:
        return ", ".join(names)
    return hostlist.compress(names)


class Arrivals:
    """Which expected nodes came, and whether the run still waits for some (the core owns one)."""

    def __init__(self, expect: Expectation | None, now: float) -> None:
        self.expect = expect
        self.deadline: float | None = now + expect.timeout_s if expect is not None else None
        self._wanted = frozenset(expect.names) if expect is not None else frozenset()
        self.joined: list[str] = []  # expected (or, by count, any) nodes that registered, in order
        self._joined_set: set[str] = set()
        self.complete = False  # every expected node registered (before or after the deadline)
        self.expired = False  # the deadline passed with some missing

    @property
    def waiting(self) -> bool:
        """The run still waits for nodes: the deadline is ahead and some are missing."""
        return self.expect is not None and not self.complete and not self.expired

    @property
    def wake_at(self) -> float | None:
        return self.deadline if self.waiting else None

    def join(self, name: str, cores: int) -> str | None:
        """A node registered; returns a notice when it is one to tell the user about."""
        e = self.expect
        if e is None:
            return None
        if e.names and name not in self._wanted:
            return (
                f"node {name} registered but is not one of the expected nodes ({show(e.names)}); "
                f"its {cores} core(s) join the run"
            )
        if name in self._joined_set:
            return None  # a node coming back after it was lost
        self._joined_set.add(name)
        self.joined.append(name)
        was_expired = self.expired
        if len(self.joined) >= e.count:
            self.complete = True
        if was_expired:
            return f"node {name} registered after the {e.timeout_s:g} s wait for nodes; its {cores} core(s) join the run"
        return None

    def missing(self) -> list[str]:
        """Expected names that never registered (empty when expected by count)."""
        if self.expect is None:
            return []
        return [n for n in self.expect.names if n not in self._joined_set]

    def due(self, now: float) -> bool:
        return self.waiting and self.deadline is not None and now >= self.deadline

    def expire(self, online: list[str]) -> str:
        """The deadline has passed with nodes missing: mark it and return the notice."""
        e = self.expect
        assert e is not None
        self.expired = True
        if e.names:
            what = f"node(s) {show(self.missing())} did not register"
        else:
            what = f"{e.count - len(self.joined)} of {e.count} expected node(s) did not register"
        head = f"{what} within {e.timeout_s:g} s"
        if e.policy == "fail":
            return f"{head}; giving up (--missing-nodes fail): every job is canceled"
        came = f" ({show(online)})" if online else ""
        return f"{head}; going on with {len(online)} of {e.count} nodes{came}"
