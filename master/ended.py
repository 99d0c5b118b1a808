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

A row never changes once written. ``fields(row)`` gives it back whole (``registry.Task.ended``
makes a ``Task`` of it on demand: a copy, changing it changes nothing here); ``state(row)`` and
``task_id(row)`` read one column.
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Hashable, Iterator, Sequence
from typing import TYPE_CHECKING, Generic, NamedTuple, TypeVar

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
_PAD = [(0.0,) * n for n in range(TIMES + 1)]

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


def _last(shape: tuple[State, ...], state: State) -> int:
    """The index of ``state``'s last entry in ``shape``; -1 if none."""
    for k in range(len(shape) - 1, -1, -1):
        if shape[k] == state:
            return k
    return -1


class Fields(NamedTuple):
    """One ended task's fields, as a row gives them back."""

    id: int
    job: Job
    iteration: int | None
    state: State
    history: list[tuple[State, float]]
    allocation: Allocation
    exit_code: int | None
    reason: str
    usage: bytes
    stderr_tail: str


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
        self._job_rows = array("q")  # a one-task job's row + 1 by its seq, 0 for none

    def job_row(self, seq: int) -> int | None:
        """The row of the one-task job ``seq``'s ended task, or None."""
        rows = self._job_rows
        r = rows[seq] if seq < len(rows) else 0
        return r - 1 if r else None

    def set_job_row(self, seq: int, row: int | None) -> None:
        rows = self._job_rows
        if seq >= len(rows):
            if row is None:
                return
            rows.frombytes(bytes(8 * (seq + 1 - len(rows) + len(rows) // 8)))
        rows[seq] = 0 if row is None else row + 1

    def __len__(self) -> int:
        return len(self.states)

    def add(self, task: Task) -> int:
        """Keep an ended task; its row."""
        return self.add_fields(task.job, task.iteration, task.id, task.state, task.exit_code, task.history,
                               task.allocation, task.reason, task.usage, task.stderr_tail)

    def add_fields(
        self,
        job: Job,
        it: int | None,
        task_id: int,
        state: State,
        code: int | None,
        history: Sequence[tuple[State, float]],
        allocation: Allocation,
        reason: str,
        used: bytes,
        tail: str,
    ) -> int:
        """Keep an ended task given by its fields (``add``; a restore needs no ``Task``); its row."""
        row = len(self.states)
        self.jobs.append(job)
        self.its.append(_NO_IT if it is None else it)
        self.ids.append(task_id)
        self.states.append(state._value_)
        self.codes.append(_NO_CODE if code is None else max(_NO_CODE + 1, min(code, 2**31 - 1)))
        times = self.times
        n = len(history)
        sid: int | None = None
        if n <= TIMES:
            shape = tuple([s for s, _ in history])
            shapes = self._shapes
            sid = shapes.ids.get(shape)
            if sid is None and len(shapes.values) < _LONG:
                sid = shapes.id(shape)
        if sid is None:
            self.shapes.append(_LONG)
            self.long[row] = list(history)
            times.extend(_PAD[TIMES])
        else:
            self.shapes.append(sid)
            times.extend([t for _, t in history])
            if n < TIMES:
                times.extend(_PAD[TIMES - n])
        allocs = self._allocs
        aid = allocs.ids.get(allocation)
        self.allocs.append(aid if aid is not None else allocs.id(allocation))
        reasons = self._reasons
        rid = reasons.ids.get(reason)
        self.reasons.append(rid if rid is not None else reasons.id(reason))
        self.usage += used if len(used) == _USAGE else _ZERO_USAGE
        if tail:
            self.tails[row] = tail
        return row

    def job(self, row: int) -> Job:
        return self.jobs[row]

    def iteration(self, row: int) -> int | None:
        it = self.its[row]
        return None if it == _NO_IT else it

    def reason(self, row: int) -> str:
        return self._reasons.values[self.reasons[row]]

    def state_counts(self) -> Counter[State]:
        """How many rows end in each state."""
        return Counter({_STATES[v]: n for v, n in Counter(self.states).items()})

    def state(self, row: int) -> State:
        return _STATES[self.states[row]]

    def task_id(self, row: int) -> int:
        return self.ids[row]

    def settled(self, first: int, last: int) -> Iterator[tuple[Job, int | None, State, str, float, float, float]]:
        """For rows first..last-1 in order: (job, iteration, state, reason, when it was scheduled, when
        it began executing, when it ended), a missing time being its end: what a restore settles."""
        jobs, its, states, reasons, shapes = self.jobs, self.its, self.states, self.reasons, self.shapes
        reason_of, shape_of, times = self._reasons.values, self._shapes.values, self.times
        # Per shape: the index of its end, of its last SCHEDULED and of its last EXECUTING entry.
        marks = [(len(s) - 1, _last(s, State.SCHEDULED), _last(s, State.EXECUTING)) for s in shape_of]
        for row in range(first, last):
            sid = shapes[row]
            if sid == _LONG:
                history = self.long[row]
                end = history[-1][1]
                sched = next((t for s, t in reversed(history) if s == State.SCHEDULED), end)
                execd = next((t for s, t in reversed(history) if s == State.EXECUTING), end)
            else:
                base = row * TIMES
                e, s_, x = marks[sid]
                end = times[base + e]
                sched = times[base + s_] if s_ >= 0 else end
                execd = times[base + x] if x >= 0 else end
            it = its[row]
            yield (jobs[row], None if it == _NO_IT else it, _STATES[states[row]], reason_of[reasons[row]],
                   sched, execd, end)

    def history(self, row: int) -> list[tuple[State, float]]:
        sid = self.shapes[row]
        if sid == _LONG:
            return list(self.long[row])
        shape = self._shapes.values[sid]
        base = row * TIMES
        return list(zip(shape, self.times[base:base + len(shape)], strict=True))

    def fields(self, row: int) -> Fields:
        """What ``row`` keeps of its task (``registry.Task.ended`` makes a ``Task`` of it)."""
        it = self.its[row]
        code = self.codes[row]
        used = bytes(self.usage[row * _USAGE:(row + 1) * _USAGE])
        return Fields(
            self.ids[row], self.jobs[row], None if it == _NO_IT else it, _STATES[self.states[row]],
            self.history(row), self._allocs.values[self.allocs[row]], None if code == _NO_CODE else code,
            self._reasons.values[self.reasons[row]], b"" if used == _ZERO_USAGE else used, self.tails.get(row, ""),
        )
