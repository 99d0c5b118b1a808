"""Ended tasks kept as rows of columns (master/ended.py): what comes back is what went in, and a
finished task costs at most 150 bytes (issue 13, item 9)."""

from __future__ import annotations

import gc
import tracemalloc

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pj.master import convert, usage
from pj.master.core import Core
from pj.master.ended import TIMES, Ended
from pj.master.model import NodeInfo, NodeShare, State
from pj.master.registry import Job, Registry, Task
from pj.v1 import pj_pb2 as pb

FINAL = [s for s in State if s.final]


def _job(name: str = "j", iterations: int | None = None) -> Job:
    msg = pb.JobSpec(name=name, exec="x")
    if iterations is not None:
        msg.iterations.CopyFrom(pb.Iterations(start=0, stop=iterations))
    job = Job(convert.spec_from_pb(msg, "/"), 0, 0.0)
    Registry().add(job)
    return job


def _fields(t: Task) -> tuple:
    return (t.id, t.job, t.iteration, t.state, list(t.history), t.allocation, t.exit_code, t.reason, t.usage,
            t.stderr_tail)


@given(
    states=st.lists(st.sampled_from(list(State)), min_size=0, max_size=7),
    final=st.sampled_from(FINAL),
    code=st.one_of(st.none(), st.integers(-64, 255)),
    reason=st.sampled_from(["", "exit code 3", "node lost: n1"]),
    alloc=st.sampled_from([(), (NodeShare("n0", (3,)),), (NodeShare("a", (0, 1), ("0",)), NodeShare("b", (2,)))]),
    used=st.sampled_from([b"", usage.pack(1.5, 0.25, 2048)]),
    tail=st.sampled_from(["", "Traceback ...\nValueError: x\n"]),
    it=st.one_of(st.none(), st.integers(0, 9)),
)
def test_a_row_gives_back_the_task_that_went_in(states, final, code, reason, alloc, used, tail, it) -> None:
    job = _job("k", None if it is None else 10)
    t = Task(12345678901, job, it, 1.0)
    t.history = [(State.QUEUED, 1.0)] + [(s, 2.0 + i / 3) for i, s in enumerate(states)] + [(final, 9.5)]
    t.state, t.exit_code, t.reason, t.allocation, t.usage, t.stderr_tail = final, code, reason, alloc, used, tail
    table = Ended()
    table.add(Task(1, job, it, 0.0))  # another row first: rows are not all row 0
    row = table.add(t)
    back = Task.ended(table.fields(row))
    assert _fields(back) == _fields(t)
    assert table.state(row) == final and table.task_id(row) == t.id
    assert (row in table.long) == (len(t.history) > TIMES)


def test_a_job_finds_its_ended_tasks_by_iteration_and_a_retry_replaces_the_ended_one() -> None:
    job = _job("it", 5)
    tasks = []
    for it in (3, 1):
        t = Task(10 + it, job, it, 1.0)
        job.add_task(t)
        t.set_state(State.SCHEDULED, 2.0)
        t.set_state(State.EXECUTING, 2.0)
        t.set_state(State.FAILED if it == 3 else State.SUCCEED, 3.0)
        job.task_ended(t)
        tasks.append(t)
    assert job.live is None and len(job.tasks) == 2 and list(job.tasks) == [1, 3]
    assert job.ended_state(3) == State.FAILED and job.ended_state(1) == State.SUCCEED and job.ended_state(0) is None
    assert _fields(job.tasks[3]) == _fields(tasks[0])
    again = Task(20, job, 3, 4.0)  # a new attempt of iteration 3
    job.add_task(again)
    assert job.task(3) is again and job.ended_state(3) is None and len(job.tasks) == 2
    assert [t.id for t in job.each_task()] == [11, 20]


@pytest.mark.no_invariants  # 20,000 tasks: checking every invariant after each event would take minutes
def test_a_finished_task_costs_at_most_150_bytes() -> None:
    """One job of 20,000 iterations run to the end in the core, each exit with CPU figures as an
    agent sends them: what the core still holds per finished task."""
    n = 20_000
    core = Core()
    core.submit([convert.spec_from_pb(pb.JobSpec(name="big", exec="x", iterations=pb.Iterations(start=0, stop=n)),
                                      "/")], 1.0)
    core.node_joined(NodeInfo("n0", 64), 1.0)
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        now = 1.0
        while core.unfinished:
            now += 0.01
            out = core.step(now)
            for t in out.placed:
                core.task_exited(t.id, 0, "", now, usage.pack(0.01, 0.002, 3000 + t.id))
            del out
        core.step(now + 1)
        gc.collect()
        per_task = (tracemalloc.get_traced_memory()[0] - base) / n
    finally:
        tracemalloc.stop()
    job = core.registry.jobs["big"]
    assert job.state == State.SUCCEED and len(job.tasks) == n
    assert usage.unpack(job.tasks[n - 1].usage).max_rss_kb > 3000
    assert per_task <= 150, f"{per_task:.0f} bytes per finished task"
