"""The ended tasks of a registry, packed in columns: what history costs per task. Pure.

A campaign of 10^7 tasks keeps every ended one (Info, the report, dependencies, ``--resume``
all ask about them). As objects (a ``Task``, its history list, its allocation tuples, its dict
entry) that is about 570 bytes a task; here it is one row of typed columns, about 100 bytes:

- the job (a reference), the iteration and the task id (8 bytes each);
- the state (1), the exit code (4), the history's *shape* (1: the id of its state sequence,
  e.g. QUEUED, SCHEDULED, EXECUTING, SUCCEED) and up to ``TIMES`` times (8 each);
- the allocation and the reason, each an id (4) into a table of distinct values: tasks of one
  shape keep landing on the same few core sets, and reasons repeat;
- what the task used (usage.py's 24 packed bytes, zeros when nothing was measured);
- rarely: a FAILED task's stderr tail, a history longer than ``TIMES`` entries (side dicts).

A row never changes once written. ``task(row)`` makes a ``Task`` from it on demand (a copy:
changing it changes nothing here); ``state(row)`` and ``task_id(row)`` read one column.
"""

from __future__ import annotations

from array import array
from collections.abc import Hashable
from typing import TYPE_CHECKING, Generic, TypeVar

from .model import Allocation, State

if TYPE_CHECKING:
    from .registry import Job, Task

TIMES = 4  # history entries kept in columns; a longer history goes to a side dict
_NO_CODE = -(2**31)  # exit_code None
_NO_IT = -(2**63)  # iteration None
_USAGE = 24  # usage.py's packed size
_ZERO_USAGE = bytes(_USAGE)
_LONG = 255  # shape id of a history kept whole in ``long``
_STATES = {s._value_: s for s in State}

K = TypeVar("K", bound=Hashable)


class _Interned(Generic[K]):
    """Distinct values and their ids (4-byte column entries)."""

    __slots__ = ("ids", "values")

    def __init__(self) -> None:
        self.ids: dict[K, int] = {}
        self.values: list[K] = []

    def id(self, value: K) -> int:
        i = self.ids.get(value)
        if i is None:
            i = self.ids[value] = len(self.values)
            self.values.append(value)
        return i


class Ended:
    """Every ended task, one row each (see the module's docstring)."""

    def __init__(self) -> None:
        self.jobs: list[Job] = []
        self.its = array("q")
        self.ids = array("q")
        self.states = bytearray()
        self.codes = array("i")
        self.shapes = bytearray()
        self.times = array("d")  # TIMES per row
        self.allocs = array("I")
        self.reasons = array("I")
        self.usage = bytearray()  # _USAGE bytes per row
        self.tails: dict[int, str] = {}  # row -> stderr tail (FAILED tasks that had one)
        self.long: dict[int, list[tuple[State, float]]] = {}  # row -> a history of more than TIMES entries
        self._shapes: _Interned[tuple[State, ...]] = _Interned()
        self._allocs: _Interned[Allocation] = _Interned()
        self._reasons: _Interned[str] = _Interned()
        self._reasons.id("")
        self._allocs.id(())

    def __len__(self) -> int:
        return len(self.states)

    def add(self, task: Task) -> int:
        """Keep an ended task; its row."""
        row = len(self.states)
        self.jobs.append(task.job)
        it = task.iteration
        self.its.append(_NO_IT if it is None else it)
        self.ids.append(task.id)
        self.states.append(task.state._value_)
        code = task.exit_code
        self.codes.append(_NO_CODE if code is None else max(_NO_CODE + 1, min(code, 2**31 - 1)))
        history = task.history
        times = self.times
        if len(history) <= TIMES:
            shape = tuple([s for s, _ in history])
            sid = self._shapes.ids.get(shape)
            if sid is None and len(self._shapes.values) < _LONG:
                sid = self._shapes.id(shape)
        else:
            sid = None
        if sid is None:
            self.shapes.append(_LONG)
            self.long[row] = list(history)
            times.extend((0.0,) * TIMES)
        else:
            self.shapes.append(sid)
            times.extend([t for _, t in history])
            if len(history) < TIMES:
                times.extend((0.0,) * (TIMES - len(history)))
        allocs = self._allocs
        aid = allocs.ids.get(task.allocation)
        self.allocs.append(aid if aid is not None else allocs.id(task.allocation))
        reasons = self._reasons
        rid = reasons.ids.get(task.reason)
        self.reasons.append(rid if rid is not None else reasons.id(task.reason))
        self.usage += task.usage if len(task.usage) == _USAGE else _ZERO_USAGE
        if task.stderr_tail:
            self.tails[row] = task.stderr_tail
        return row

    def state(self, row: int) -> State:
        return _STATES[self.states[row]]

    def task_id(self, row: int) -> int:
        return self.ids[row]

    def history(self, row: int) -> list[tuple[State, float]]:
        sid = self.shapes[row]
        if sid == _LONG:
            return list(self.long[row])
        shape = self._shapes.values[sid]
        base = row * TIMES
        return list(zip(shape, self.times[base:base + len(shape)], strict=True))

    def task(self, row: int) -> Task:
        """The ended task of ``row``, as a ``Task`` (made now: a copy)."""
        from .registry import Task

        it = self.its[row]
        task = Task.__new__(Task)
        task.id = self.ids[row]
        task.job = self.jobs[row]
        task.iteration = None if it == _NO_IT else it
        task.state = _STATES[self.states[row]]
        task.history = self.history(row)
        task.allocation = self._allocs.values[self.allocs[row]]
        code = self.codes[row]
        task.exit_code = None if code == _NO_CODE else code
        task.reason = self._reasons.values[self.reasons[row]]
        used = bytes(self.usage[row * _USAGE:(row + 1) * _USAGE])
        task.usage = b"" if used == _ZERO_USAGE else used
        task.stderr_tail = self.tails.get(row, "")
        return task
