"""A batch of jobs held compactly: jobs alike but for their names share one spec message.

Campaigns are mostly runs of such jobs (``sim-0`` ... ``sim-99999``, one program, one core). A
client's reader notes them as it reads (``pj.client.jobfile``); a Submit carries each run as one
spec and its copies' names (``SubmitRequest.copies`` / ``copy_names``); the master checks a copy
by its name only and converts it by renaming (``pj.master.convert``). 1M jobs: the client no
longer builds 1M messages, nor the master reads them.

``SpecBatch.specs[i]`` is job i's spec message: for a copy, the very message of the job it copies,
whose own ``name`` is that job's, so ``names[i]`` is the name to use. Nothing here changes a
message it is given.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from pj.v1 import pj_pb2

__all__ = ["BatchError", "SpecBatch", "chunk_bounds", "request_jobs"]


class BatchError(ValueError):
    """A Submit whose copies do not add up: ``field`` and ``reason`` say which and why."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"field {field!r}: {reason}")


@dataclass
class SpecBatch:
    """Jobs in order. ``copy_of[i]``: the earlier job whose spec job i is but for its name (-1:
    none); then ``specs[i] is specs[copy_of[i]]``."""

    specs: list[pj_pb2.JobSpec] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    copy_of: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.names)

    @classmethod
    def of(cls, specs: Sequence[pj_pb2.JobSpec]) -> SpecBatch:
        """Specs each of its own (none a copy)."""
        listed = list(specs)
        return cls(listed, [s.name for s in listed], [-1] * len(listed))

    def add(self, spec: pj_pb2.JobSpec) -> None:
        """Append a job of its own."""
        self.specs.append(spec)
        self.names.append(spec.name)
        self.copy_of.append(-1)

    def add_copy(self, of: int, name: str) -> None:
        """Append a job that is job ``of`` but for its name."""
        self.specs.append(self.specs[of])
        self.names.append(name)
        self.copy_of.append(of)

    def extend(self, other: SpecBatch) -> None:
        """Append ``other``'s jobs (its copies then point into this batch)."""
        at = len(self.names)
        self.specs.extend(other.specs)
        self.names.extend(other.names)
        self.copy_of.extend(k + at if k >= 0 else -1 for k in other.copy_of)

    def only(self, keep: Callable[[str], bool]) -> SpecBatch:
        """The jobs whose names ``keep`` keeps, in order (a kept copy of a job left out is kept
        whole, and the next copies are its)."""
        out = SpecBatch()
        where: dict[int, int] = {}  # a job's original -> its first kept job in out
        for i, name in enumerate(self.names):
            if not keep(name):
                continue
            k = self.copy_of[i]
            at = where.get(i if k < 0 else k)
            if at is None:
                where[i if k < 0 else k] = len(out.names)
                out.add(self.job(i))
            else:
                out.add_copy(at, name)
        return out

    @property
    def renamed(self) -> list[bool]:
        return [k >= 0 for k in self.copy_of]

    def job(self, i: int) -> pj_pb2.JobSpec:
        """Job i's spec as a message of its own (its name set)."""
        spec = self.specs[i]
        if self.copy_of[i] < 0:
            return spec
        out = pj_pb2.JobSpec()
        out.CopyFrom(spec)
        out.name = self.names[i]
        return out

    def expand(self) -> list[pj_pb2.JobSpec]:
        """Every job's spec as a message of its own."""
        return [self.job(i) for i in range(len(self.names))]

    # ------------------------------------------------------------------ the wire

    @classmethod
    def from_request(cls, req: pj_pb2.SubmitRequest) -> SpecBatch:
        """The jobs of a Submit in order, copies spelled out. Raises BatchError when ``copies`` and
        ``copy_names`` do not match."""
        jobs = req.jobs
        counts = req.copies
        if not counts and not req.copy_names:
            return cls.of(jobs)
        if len(counts) > len(jobs):
            raise BatchError("copies", f"{len(counts)} entries for {len(jobs)} jobs; give at most one per job")
        total = sum(counts)
        if total != len(req.copy_names):
            raise BatchError("copy_names", f"{len(req.copy_names)} names for {total} copies; give one per copy")
        out = cls()
        given = iter(req.copy_names)
        for i, m in enumerate(jobs):
            at = len(out.names)
            out.add(m)
            n = counts[i] if i < len(counts) else 0
            if n:
                out.specs.extend(itertools.repeat(m, n))
                out.names.extend(itertools.islice(given, n))
                out.copy_of.extend(itertools.repeat(at, n))
        return out

    def request(self, a: int, b: int, base_dir: str) -> pj_pb2.SubmitRequest:
        """A Submit of jobs [a, b): each run of copies of one job right after it goes as names."""
        req = pj_pb2.SubmitRequest(base_dir=base_dir)
        add = req.jobs.add
        counts: list[int] = []
        copy_names: list[str] = []
        specs, names, copy_of = self.specs, self.names, self.copy_of
        head = -2  # the job the last message sent stands for (-2: none yet)
        for i in range(a, b):
            k = copy_of[i]
            if k >= 0 and (k == head or (head >= 0 and copy_of[head] == k)) and i > a:
                counts[-1] += 1
                copy_names.append(names[i])
                continue
            msg = add()
            msg.CopyFrom(specs[i])
            if k >= 0:
                msg.name = names[i]
            counts.append(0)
            head = i
        if copy_names:
            while counts and not counts[-1]:
                counts.pop()
            req.copies.extend(counts)
            req.copy_names.extend(copy_names)
        return req


def request_jobs(req: pj_pb2.SubmitRequest) -> int:
    """How many jobs a Submit holds, copies counted."""
    return len(req.jobs) + len(req.copy_names)


def chunk_bounds(batch: SpecBatch, chunk: int, a: int = 0, b: int | None = None) -> Iterator[tuple[int, int]]:
    """Slices [x, y) of jobs [a, b) of ``batch`` (b None: to the end), of ``chunk`` jobs, made
    longer where a job waits (``after``) for a later one: a slice never ends between a job and a
    later job it waits for."""
    end = len(batch) if b is None else b
    reach: dict[int, int] = {}  # the last position job i waits for, where it waits for a later one
    where: dict[str, int] | None = None
    copy_of = batch.copy_of
    for i in range(a, end):
        k = copy_of[i]
        if k >= a:  # a copy waits for what its original waits for
            if k in reach:
                reach[i] = reach[k]
            continue
        spec = batch.specs[i]
        if spec.after:
            if where is None:
                where = {batch.names[x]: x for x in range(a, end)}
            far = max((where.get(e.partition(":")[0], -1) for e in spec.after), default=-1)
            if far > i:
                reach[i] = far
    x = a
    far = -1  # the furthest position waited for by a job of the slice so far
    for i in range(a, end):
        far = max(far, reach.get(i, -1))
        if i + 1 - x >= chunk and far <= i:
            yield x, i + 1
            x = i + 1
    if x < end:
        yield x, end
