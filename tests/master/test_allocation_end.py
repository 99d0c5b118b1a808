"""Nodes whose allocation ends (issue 17, pure core, fake clock): a task is never placed where its
walltime would outlast the node's allocation; a task without walltime goes anywhere; a job no node
can hold stays QUEUED with a reason that says so; tasks cut short when an allocation ends are
queued again without using a retry."""

from __future__ import annotations

import pytest

from pj.master.core import Core
from pj.master.model import NodeInfo, Range, Request, State
from pj.master.pool import Pool, holds, until
from pj.master.why import Why

from .coreharness import spec

T0 = 1000.0


def make(*nodes: NodeInfo, grace: float = 30.0) -> Core:
    core = Core(expect=None, now=T0, campaign="c")
    core.recon.grace = grace
    for n in nodes:
        core.node_joined(n, T0)
    return core


def launch(core: Core, now: float) -> dict[str, list[int]]:
    """One pass; every launch reported started: task ids by node."""
    out = core.step(now)
    got: dict[str, list[int]] = {}
    for node, launches in out.launches.items():
        for ln in launches:
            core.task_started(ln.task_id, now)
            got.setdefault(node, []).append(ln.task_id)
    core.check()
    return got


def where(core: Core, name: str) -> list[str]:
    job = core.registry.get(name)
    assert job is not None
    return [t.allocation[0].node for t in core.running.values() if t.job is job]


@pytest.mark.parametrize(
    ("ends_at", "until_", "ok"),
    [
        (0.0, 0.0, True),  # no end, no walltime
        (0.0, 5000.0, True),  # no end: anything fits
        (2000.0, 0.0, True),  # no walltime: placed anywhere (documented choice)
        (2000.0, 2000.0, True),  # ends exactly at the end
        (2000.0, 2000.5, False),
        (2000.0, 9000.0, False),
    ],
)
def test_holds(ends_at: float, until_: float, ok: bool) -> None:
    assert holds(ends_at, until_) is ok


def test_until() -> None:
    assert until(T0, 0.0) == 0.0
    assert until(T0, 60.0) == T0 + 60.0


def test_pool_skips_a_node_that_ends_too_soon_single_and_multi() -> None:
    pool = Pool()
    pool.add(NodeInfo("soon", 4, ends_at=T0 + 100))
    pool.add(NodeInfo("late", 4, ends_at=T0 + 10_000))
    one = Request(Range(1, 1), Range(1, 1))
    for req, wall, node in [(one, 600, "late"), (one, 50, "soon"), (Request(Range(1, None), Range(1, 1)), 600, "late")]:
        got = pool.allocate(req, until(T0, wall))
        assert got is not None and got[0].node == node  # (first fit: a short task may go to the soon one)
        pool.release(got)
    two = Request(Range(1, 1), Range(2, 2))
    assert pool.allocate(two, until(T0, 600)) is None
    assert pool.allocate(two, until(T0, 50)) is not None
    assert pool.can_ever_fit(two)  # ends are not capacity: more allocations may come
    assert not pool.can_hold(two, until(T0, 600))
    assert pool.latest_end() == T0 + 10_000


def test_a_long_task_goes_to_the_node_whose_allocation_holds_it() -> None:
    core = make(NodeInfo("soon", 1, ends_at=T0 + 600), NodeInfo("late", 1, ends_at=T0 + 7200))
    core.submit([spec("long", walltime_s=3600.0)], T0)
    launch(core, T0 + 1)
    assert where(core, "long") == ["late"]


def test_a_job_no_node_can_hold_stays_queued_with_a_reason_then_runs_on_a_new_allocation() -> None:
    core = make(NodeInfo("n0", 4, ends_at=T0 + 2400))
    core.submit([spec("long", walltime_s=7200.0), spec("short", walltime_s=60.0), spec("free")], T0)
    got = launch(core, T0 + 1)
    assert sorted(got) == ["n0"] and len(got["n0"]) == 2
    assert where(core, "long") == []
    job = core.registry.get("long")
    assert job is not None and job.state == State.QUEUED  # not FAILED: a new allocation may come
    why = Why(core, T0 + 1)
    assert why.kind(job) == "nodes"
    text = why.explain(job)
    assert "walltime 2 h outlasts the allocation of every node" in text
    assert "the latest ends in 40 min" in text
    assert "free cores" not in text
    core.node_joined(NodeInfo("n1", 4, ends_at=T0 + 20_000), T0 + 2)
    launch(core, T0 + 3)
    assert where(core, "long") == ["n1"]
    assert Why(core, T0 + 3).explain(job) == ""


def test_a_long_job_does_not_block_short_ones_of_its_shape() -> None:
    core = make(NodeInfo("n0", 2, ends_at=T0 + 600))
    core.submit([spec("long", walltime_s=3600.0), spec("short", walltime_s=60.0)], T0)
    launch(core, T0 + 1)
    assert where(core, "short") == ["n0"] and where(core, "long") == []


def test_a_node_without_an_end_holds_any_walltime() -> None:
    core = make(NodeInfo("n0", 1))
    core.submit([spec("long", walltime_s=10 * 86400.0)], T0)
    launch(core, T0 + 1)
    assert where(core, "long") == ["n0"]


@pytest.mark.parametrize("how", ["left", "disconnected", "lost after the grace"])
def test_tasks_cut_short_by_an_ending_allocation_are_queued_again_free(how: str) -> None:
    core = make(NodeInfo("n0", 1, ends_at=T0 + 100), NodeInfo("n1", 2))
    core.submit([spec("job", retries=0)], T0)
    launch(core, T0 + 1)
    assert where(core, "job") == ["n0"]
    if how == "left":
        core.node_left("n0", T0 + 101)
    elif how == "disconnected":
        core.node_disconnected("n0", T0 + 100)  # no grace: it will not come back
        assert not core.pool.by_name["n0"].online
    else:
        core.node_disconnected("n0", T0 - 500)  # broke off long before its end: given the grace
        assert core.pool.by_name["n0"].online
        core.step(T0 + 101)  # the grace is over, and so is the allocation
    core.check()
    job = core.registry.get("job")
    assert job is not None and job.state != State.FAILED
    assert not job.retried  # no retry used
    assert job.attempts is not None
    (attempt,) = job.attempts[None]
    assert attempt.reason.startswith("allocation ended") and not attempt.lost
    launch(core, T0 + 102)
    assert where(core, "job") == ["n1"]


def test_a_node_lost_before_its_end_still_uses_a_retry() -> None:
    core = make(NodeInfo("n0", 1, ends_at=T0 + 10_000), NodeInfo("n1", 1))
    core.submit([spec("job", retries=1)], T0)
    launch(core, T0 + 1)
    assert where(core, "job") == ["n0"]
    core.node_left("n0", T0 + 5)
    job = core.registry.get("job")
    assert job is not None and job.retried == {None: 1}
    assert job.attempts is not None and job.attempts[None][0].reason.startswith("node lost: n0")


def test_a_task_killed_when_its_allocation_ends_is_queued_again_free() -> None:
    core = make(NodeInfo("n0", 2, ends_at=T0 + 100), NodeInfo("n1", 1))
    core.submit([spec("free", retries=0), spec("timed", walltime_s=50.0)], T0)
    launch(core, T0 + 1)
    assert where(core, "free") == ["n0"] and where(core, "timed") == ["n0"]
    (free_id,) = [t.id for t in core.running.values() if t.job.name == "free"]
    (timed_id,) = [t.id for t in core.running.values() if t.job.name == "timed"]
    core.task_exited(timed_id, -9, "", T0 + 51)  # killed at its own walltime: its own failure
    core.task_exited(free_id, -15, "", T0 + 100)  # the agent stopped it: the allocation ended
    core.check()
    timed, free = core.registry.get("timed"), core.registry.get("free")
    assert timed is not None and timed.state == State.FAILED
    assert free is not None and free.state != State.FAILED and not free.retried
    assert free.attempts is not None and free.attempts[None][0].reason.startswith("allocation ended")


def test_a_task_killed_before_its_allocation_ends_fails() -> None:
    core = make(NodeInfo("n0", 1, ends_at=T0 + 10_000))
    core.submit([spec("job", retries=0)], T0)
    launch(core, T0 + 1)
    (tid,) = core.running
    core.task_exited(tid, -9, "", T0 + 5)
    job = core.registry.get("job")
    assert job is not None and job.state == State.FAILED


@pytest.mark.parametrize(("ends_in", "standby"), [(100.0, True), (50.0, False)])
def test_a_standby_goes_behind_a_task_only_if_it_would_end_before_the_allocation(ends_in: float, standby: bool) -> None:
    # The agent starts a standby the moment the task ahead ends, without asking the master: it may
    # start as late as that task's walltime allows, and must still end by the allocation's end.
    core = Core(expect=None, now=T0, campaign="c", prefetch_on=True)
    core.node_joined(NodeInfo("n1", 1, ends_at=T0 + ends_in), T0)
    core.submit([spec("w", it=2, walltime_s=30.0)], T0)
    out = core.step(T0)
    # One task starts; behind it, 30 s ahead + 30 s of its own: the standby ends by T0+60 at the latest.
    assert len(out.launches["n1"]) == (2 if standby else 1)
    core.check()
