"""FIFO with backfill over ready work, at a cost that grows with what is placed, not with the queue.

Ready work is queued per resource *shape* (min nodes, min cores, GPUs, walltime: nodes whose
allocation ends soon hold short tasks only, pool.py): entries of one shape either all fit now or none does, so one failed attempt blocks the whole shape for
the rest of the pass. A pass walks the heads of the shape queues in submission order
(a heap), places what fits, and stops when the pool is full or every shape is blocked:
100 000 queued jobs of one shape cost one attempt, not 100 000.

An entry is either a whole job (its iterations are taken lazily, one by one, from the
job's cursor) or one iteration made ready by a per-iteration dependency or by a retry.

The same walk serves the prefetch pass (``hold``): there ``allocate`` hands out the share of a
running task for a standby to wait on. A shape whose head has got nothing since ``blocked`` says
(neither a place nor a share) is skipped like in backfill for a while; once it has waited since
``hold`` or before, the pass ends there, so that standbys stop taking every core that frees and
the older work gets its turn.
"""

from __future__ import annotations

import heapq
from array import array
from collections.abc import Callable, Iterator, Sequence

from .model import Allocation, Request
from .registry import Job

Shape = tuple[int, int, int, int, float]  # nodes, cores, GPUs, memory (Request.shape), walltime s
Entry = tuple[int, Job, int | None]  # (sequence, job, iteration or None = the job's cursor)
Place = Callable[[Job, int | None, Allocation], object]
Allocate = Callable[[Request, float], Allocation | None]  # (request, walltime s; 0: none)


def shape_of(job: Job) -> Shape:
    """The queue a job's work waits in: its request's shape and its walltime."""
    return (*job.tmpl.request.shape, job.tmpl.walltime_s)


class Line:
    """The queue of one shape, compact: a million queued jobs keep a pointer and a packed sequence
    number each (a tuple and an int object each were ~100 bytes a job). Entries pushed to the front
    (work taken back, sequence numbers counting down, each ahead of all before it) wait on a small
    stack of (sequence, job, iteration); the rest in ``items``/``seqs`` from ``head`` on, an item
    being the job (its cursor) or (job, iteration)."""

    __slots__ = ("front", "head", "items", "seqs")

    def __init__(self) -> None:
        self.front: list[Entry] = []  # the head is the last
        self.items: list[Job | tuple[Job, int] | None] = []
        self.seqs = array("q")
        self.head = 0  # items before it were taken (None)

    def append(self, seq: int, job: Job, iteration: int | None) -> None:
        self.items.append(job if iteration is None else (job, iteration))
        self.seqs.append(seq)

    def extend(self, first: int, jobs: Sequence[Job]) -> None:
        """Append whole jobs, numbered from ``first`` on."""
        self.items.extend(jobs)
        self.seqs.extend(range(first, first + len(jobs)))

    def appendleft(self, seq: int, job: Job, iteration: int | None) -> None:
        self.front.append((seq, job, iteration))

    def __len__(self) -> int:
        return len(self.front) + len(self.items) - self.head

    def __bool__(self) -> bool:
        return bool(self.front) or self.head < len(self.items)

    def first(self) -> Entry:
        """The head entry (the line is not empty)."""
        if self.front:
            return self.front[-1]
        item = self.items[self.head]
        seq = self.seqs[self.head]
        return (seq, item, None) if type(item) is Job else (seq, *item)  # type: ignore[misc]

    def first_seq(self) -> int:
        return self.front[-1][0] if self.front else self.seqs[self.head]

    def popleft(self) -> None:
        if self.front:
            self.front.pop()
            return
        items = self.items
        items[self.head] = None
        self.head += 1
        if self.head == len(items):
            items.clear()
            del self.seqs[:]
            self.head = 0
        elif self.head >= 4096 and 2 * self.head >= len(items):  # drop what was taken, now and then
            del items[: self.head]
            del self.seqs[: self.head]
            self.head = 0

    def __iter__(self) -> Iterator[Entry]:
        yield from reversed(self.front)
        items, seqs = self.items, self.seqs
        for k in range(self.head, len(items)):
            item = items[k]
            yield (seqs[k], item, None) if type(item) is Job else (seqs[k], *item)  # type: ignore[misc]


class ReadyQueue:
    def __init__(self) -> None:
        self.queues: dict[Shape, Line] = {}
        self._seq = 0
        self._front = 0  # sequence numbers of entries pushed to the front count down from here
        self.blocked: dict[Shape, float] = {}  # shape -> since when its head got nothing

    def push(self, job: Job, iteration: int | None = None, front: bool = False) -> None:
        """Queue a whole job (iteration None) or one ready iteration of it; ``front``: ahead of
        everything queued (work taken back that was already due to run)."""
        shape = shape_of(job)
        q = self.queues.get(shape)
        if q is None:
            q = self.queues[shape] = Line()
        if front:
            self._front -= 1
            q.appendleft(self._front, job, iteration)
        else:
            self._seq += 1
            q.append(self._seq, job, iteration)

    def push_jobs(self, jobs: Sequence[Job]) -> None:
        """``push(job)`` for each of ``jobs`` in order, the runs sharing a template at once (a
        Submit's jobs: one shape looked up per run, not per job)."""
        at = 0
        n = len(jobs)
        while at < n:
            tmpl = jobs[at].tmpl
            end = at + 1
            while end < n and jobs[end].tmpl is tmpl:
                end += 1
            shape = shape_of(jobs[at])
            q = self.queues.get(shape)
            if q is None:
                q = self.queues[shape] = Line()
            q.extend(self._seq + 1, jobs[at:end])
            self._seq += end - at
            at = end

    def __len__(self) -> int:
        return sum(len(q) for q in self.queues.values())

    @property
    def pushes(self) -> int:
        """How many entries were ever pushed. With a shape's queue length it tells whether that
        queue changed (a pass only takes from a queue's head): for reports (why.py)."""
        return self._seq - self._front

    def line(self, shape: Shape) -> tuple[dict[Job, int], dict[Job, int]]:
        """The jobs queued for ``shape`` in the order passes take them: each job's place (how many
        jobs are ahead of it), and how many entries the jobs with more than one have. Jobs canceled
        or ended meanwhile are left out (a pass drops them as it meets them). One pass over that
        shape's queue; read-only: for reports (why.py), never on a pass."""
        place: dict[Job, int] = {}
        more: dict[Job, int] = {}
        for _, job, _ in self.queues.get(shape, ()):
            if job in place:
                more[job] = more.get(job, 1) + 1
            elif not job.cancel_requested and job.state._value_ < 4:  # not final (inlined: a pass per entry)
                place[job] = len(place)
        return place, more

    def waiting(self, limit: int = 10_000) -> dict[Shape, int]:
        """Tasks queued per shape (a whole job counts its iterations not yet taken), looking at no
        more than ``limit`` entries in all: read-only, for the allocation manager (allocs.py)."""
        out: dict[Shape, int] = {}
        seen = 0
        for shape, q in self.queues.items():
            n = 0
            for _, job, it in q:
                seen += 1
                if seen > limit:
                    break
                if job.cancel_requested or job.state.final:
                    continue
                iters = job.tmpl.iterations
                n += 1 if it is not None or iters is None else max(0, iters.stop - job.next_it)
            if n:
                out[shape] = n
            if seen > limit:
                break
        return out

    def schedule(self, allocate: Allocate, place: Place, room: Callable[[], bool], now: float,
                 hold: float | None = None) -> int:
        """One pass: place whatever ``allocate`` gives room for, oldest first, while ``room()``;
        returns how many tasks were placed. A shape that gets nothing is skipped for the pass
        (backfill); with ``hold``, the pass ends at a shape that got nothing since ``hold`` or before."""
        blocked = self.blocked
        heap = [(q.first_seq(), shape) for shape, q in self.queues.items() if q]
        heapq.heapify(heap)
        placed = 0
        while heap and room():
            _, shape = heapq.heappop(heap)
            q = self.queues[shape]
            while q:
                _, job, it = q.first()
                if job.cancel_requested or job.state.final:
                    q.popleft()
                    continue
                live = job.live
                if live and (it is not None or job.tmpl.iterations is None):
                    held = live.get(it)
                    if held is not None and not held.state.final:  # runs already (adopted on --resume)
                        q.popleft()
                        continue
                if it is None and (live or job.rows is not None) and job.tmpl.iterations is not None:
                    # Skip iterations that already have a task (restored from the journal on --resume).
                    stop = job.tmpl.iterations.stop
                    while job.next_it < stop and job.has_task(job.next_it):
                        job.next_it += 1
                    if job.next_it >= stop:
                        q.popleft()
                        continue
                allocation = allocate(job.tmpl.request, job.tmpl.walltime_s)
                if allocation is None:
                    since = blocked.setdefault(shape, now)
                    if hold is not None and since <= hold:
                        return placed
                    break  # nothing of this shape fits until something ends
                if blocked:
                    blocked.pop(shape, None)
                if it is None:
                    if job.tmpl.iterations is None:
                        q.popleft()
                    else:
                        it = job.next_it
                        job.next_it += 1
                        if job.next_it >= job.tmpl.iterations.stop:
                            q.popleft()
                    job.started += 1
                else:
                    job.started += 1
                    q.popleft()
                place(job, it, allocation)
                placed += 1
                if not room():
                    break  # the outer loop ends too
                if q and heap and q.first_seq() > heap[0][0]:
                    heapq.heappush(heap, (q.first_seq(), shape))  # an older shape's turn
                    break
            if not q:
                del self.queues[shape]
                blocked.pop(shape, None)
        return placed
