"""Launches that wait for their cores and GPUs: the per-resource wait queues of state.py (pure).

The master may send a task's Launch before the cores it names are free (its prefetch: the next
task for a core is placed on the cores of a task still running there). A resource is a logical
core (an int) or a GPU id (a str). ``busy`` holds those of the tasks alive on the node (spawning,
running, being stopped: until their end is handled). A launch that names a busy resource, or one
an earlier held launch still waits for, is *held*: it joins the queue of each of its resources.

A held launch starts when each of its resources is free and it heads that resource's queue:
first come, first served per resource, and no overtaking on a shared resource (a task waiting
for cores 0 and 1 is not passed on core 1 by a later one that only needs core 1). The queue of
the oldest held launch is never blocked by another held one, so every held launch starts once
the tasks before it end.

Costs: a launch with nothing held is two ``isdisjoint`` and one ``update`` of a set; an end frees
its resources and looks only at the heads of their queues, so it costs what waits on what it
freed, never the number of held launches. A dropped launch (cancel, withdraw) leaves its queue
entries behind as stale ids, skipped when they come to a queue's head; every queue in
``_queues`` has a live head.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence

Key = int | str  # a logical core or a GPU id


class Holds:
    """Which resources are busy, and the held launches waiting for them (by task id)."""

    __slots__ = ("_held", "_queues", "_seq", "busy")

    def __init__(self) -> None:
        self.busy: set[Key] = set()
        self._queues: dict[Key, deque[int]] = {}  # only resources some held launch waits for
        self._held: dict[int, tuple[int, tuple[Key, ...]]] = {}  # task id -> (arrival, resources)
        self._seq = 0

    def __len__(self) -> int:
        return len(self._held)

    def __contains__(self, task_id: int) -> bool:
        return task_id in self._held

    def waiting(self) -> list[int]:
        """The held task ids, in arrival order."""
        return list(self._held)

    def take(self, task_id: int, cores: Sequence[int], gpus: Sequence[str]) -> bool:
        """A launch arrives: True if it may start now (its resources are busy from now on),
        False if it is held (it starts when ``release`` or ``drop`` names it)."""
        busy = self.busy
        queues = self._queues
        if (
            busy.isdisjoint(cores)
            and (not gpus or busy.isdisjoint(gpus))
            and (not queues or (queues.keys().isdisjoint(cores) and queues.keys().isdisjoint(gpus)))
        ):
            busy.update(cores)
            if gpus:
                busy.update(gpus)
            return True
        keys: tuple[Key, ...] = tuple(dict.fromkeys((*cores, *gpus)))
        self._seq += 1
        self._held[task_id] = (self._seq, keys)
        for k in keys:
            q = queues.get(k)
            if q is None:
                queues[k] = deque((task_id,))
            else:
                q.append(task_id)
        return False

    def release(self, cores: Sequence[int], gpus: Sequence[str]) -> list[int]:
        """A task that held these resources ended: the held task ids that start now, in arrival
        order (their resources are busy from now on)."""
        busy = self.busy
        busy.difference_update(cores)
        if gpus:
            busy.difference_update(gpus)
        if not self._queues:
            return []
        return self._wake((*cores, *gpus))

    def drop(self, task_id: int) -> list[int]:
        """A held launch leaves (canceled, withdrawn): the held task ids that start now because it
        no longer goes first. Unknown ids: nothing."""
        entry = self._held.pop(task_id, None)
        if entry is None:
            return []
        keys = entry[1]
        queues = self._queues
        for k in keys:
            self._clean(k, queues[k])
        return self._wake(keys)

    def clear(self) -> list[int]:
        """Drop every held launch (shutdown, stream lost): their ids, in arrival order. Nothing
        starts; the busy resources stay busy."""
        ids = list(self._held)
        self._held.clear()
        self._queues.clear()
        return ids

    # ------------------------------------------------------------ helpers

    def _wake(self, keys: Iterable[Key]) -> list[int]:
        """Start the heads of these resources' queues that have all they wait for."""
        queues = self._queues
        heads = {queues[k][0] for k in keys if k in queues}
        if not heads:
            return []
        held = self._held
        busy = self.busy
        started: list[int] = []
        for tid in sorted(heads, key=lambda t: held[t][0]) if len(heads) > 1 else heads:
            mine = held[tid][1]
            if all(k not in busy and queues[k][0] == tid for k in mine):
                del held[tid]
                busy.update(mine)
                for k in mine:
                    q = queues[k]
                    q.popleft()
                    self._clean(k, q)
                started.append(tid)
        return started

    def _clean(self, key: Key, q: deque[int]) -> None:
        """Pop the stale ids at the head of ``key``'s queue; forget the queue once empty."""
        held = self._held
        while q and q[0] not in held:
            q.popleft()
        if not q:
            del self._queues[key]
