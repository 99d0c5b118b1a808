"""The ready queue's compact per-shape line (scheduler.Line): entries come out in the order the
tuples of a deque gave them, front pushes first, across the compaction of what was taken."""

from __future__ import annotations

from collections import deque

from pj.master.registry import Job
from pj.master.scheduler import Line, ReadyQueue

from .coreharness import spec


def test_a_line_gives_back_what_a_deque_of_entries_gives_through_pushes_pops_and_compaction() -> None:
    jobs = [Job(spec(f"j{i}", it=3 if i % 3 == 0 else None), i, 0.0) for i in range(10)]
    line, want = Line(), deque[tuple[int, Job, int | None]]()
    seq, front = 0, 0
    for step in range(20_000):
        job = jobs[step % len(jobs)]
        it = step % 5 if job.tmpl.iterations is not None and step % 2 else None
        if step % 97 == 0:
            front -= 1
            line.appendleft(front, job, it)
            want.appendleft((front, job, it))
        elif step % 3 != 2:
            seq += 1
            line.append(seq, job, it)
            want.append((seq, job, it))
        elif want:
            assert line.first() == want[0] and line.first_seq() == want[0][0]
            line.popleft()
            want.popleft()
        assert len(line) == len(want) and bool(line) == bool(want)
    assert list(line) == list(want)
    while want:
        assert line.first() == want.popleft()
        line.popleft()
    assert not line and list(line) == [] and line.head == 0


def test_a_pass_takes_whole_jobs_and_ready_iterations_oldest_first() -> None:
    q = ReadyQueue()
    a, b = Job(spec("a", it=2), 0, 0.0), Job(spec("b"), 1, 0.0)
    q.push(a)
    q.push(b)
    q.push(a, 7, front=True)
    got: list[tuple[str, int | None]] = []
    placed = q.schedule(lambda req, wall: (), lambda job, it, alloc: got.append((job.name, it)), lambda: True, 0.0)
    assert placed == 4 and got == [("a", 7), ("a", 0), ("a", 1), ("b", None)] and not q.queues
