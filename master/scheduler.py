"""FIFO with backfill over ready work, at a cost that grows with what is placed, not with the queue.

Ready work is queued per resource *shape* (min nodes, min cores, GPUs): entries of one
shape either all fit now or none does, so one failed attempt blocks the whole shape for
the rest of the pass. A pass walks the heads of the shape queues in submission order
(a heap), places what fits, and stops when the pool is full or every shape is blocked:
100 000 queued jobs of one shape cost one attempt, not 100 000.

An entry is either a whole job (its iterations are taken lazily, one by one, from the
job's cursor) or one iteration made ready by a per-iteration dependency or by a retry.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable

from .model import Allocation
from .pool import Pool
from .registry import Job

Shape = tuple[int, int, int]
Entry = tuple[int, Job, int | None]  # (sequence, job, iteration or None = the job's cursor)
Place = Callable[[Job, int | None, Allocation], None]


class ReadyQueue:
    def __init__(self) -> None:
        self.queues: dict[Shape, deque[Entry]] = {}
        self._seq = 0

    def push(self, job: Job, iteration: int | None = None) -> None:
        """Queue a whole job (iteration None) or one ready iteration of it."""
        self._seq += 1
        shape = job.spec.request.shape
        q = self.queues.get(shape)
        if q is None:
            q = self.queues[shape] = deque()
        q.append((self._seq, job, iteration))

    def __len__(self) -> int:
        return sum(len(q) for q in self.queues.values())

    def schedule(self, pool: Pool, place: Place) -> int:
        """One pass: place whatever fits, oldest first; returns how many tasks were placed."""
        heap = [(q[0][0], shape) for shape, q in self.queues.items() if q]
        heapq.heapify(heap)
        placed = 0
        while heap and pool.free_cores > 0:
            _, shape = heapq.heappop(heap)
            q = self.queues[shape]
            while q:
                _, job, it = q[0]
                if job.cancel_requested or job.state.final:
                    q.popleft()
                    continue
                if job.tasks and (it is not None or job.spec.iterations is None):
                    held = job.tasks.get(it)
                    if held is not None and not held.state.final:  # runs already (adopted on --resume)
                        q.popleft()
                        continue
                if it is None and job.tasks and job.spec.iterations is not None:
                    # Skip iterations that already have a task (restored from the journal on --resume).
                    stop = job.spec.iterations.stop
                    while job.next_it < stop and job.next_it in job.tasks:
                        job.next_it += 1
                    if job.next_it >= stop:
                        q.popleft()
                        continue
                allocation = pool.allocate(job.spec.request)
                if allocation is None:
                    break  # nothing of this shape fits until something ends
                if it is None:
                    if job.spec.iterations is None:
                        q.popleft()
                    else:
                        it = job.next_it
                        job.next_it += 1
                        if job.next_it >= job.spec.iterations.stop:
                            q.popleft()
                    job.started += 1
                else:
                    job.started += 1
                    q.popleft()
                place(job, it, allocation)
                placed += 1
                if q and heap and q[0][0] > heap[0][0]:
                    heapq.heappush(heap, (q[0][0], shape))  # an older shape's turn
                    break
            if not q:
                del self.queues[shape]
        return placed
