"""A node's agent gone (pure core, fake clock): tasks that never started (standbys held by the agent)
are queued again free; a new agent that replaces a dead one gets the tasks that ran there queued
again without a retry, counted as crashes; a multi-node task's copy on its first node is canceled."""

from __future__ import annotations

from collections import deque

from pj.master.core import Core
from pj.master.expect import Expectation
from pj.master.model import Dependency, JobSpec, NodeInfo, Range, Request, State

from .test_prefetch import Agents, spec


def make(cores: int = 1, nodes: int = 2, crash_limit: int = 3) -> tuple[Core, Agents]:
    core = Core(expect=Expectation(nodes), now=1000.0, prefetch_on=True, campaign="c", crash_limit=crash_limit)
    core.recon.grace = 5.0
    for i in range(nodes):
        core.node_joined(NodeInfo(f"n{i}", cores, ()), 1000.0)
    return core, Agents(core)


def on(core: Core, node: str) -> list[int]:
    return [t.id for t in core.running.values() if t.allocation[0].node == node]


def forget(agents: Agents, node: str) -> None:
    """The agent of ``node`` died: what it ran and held is gone."""
    for tid in [t for t, launch in agents.running.items() if launch.node == node]:
        agents.running.pop(tid)
    agents.held = deque(launch for launch in agents.held if launch.node != node)
    agents.busy = {k: v for k, v in agents.busy.items() if k[0] != node}


def run_out(agents: Agents) -> None:
    for _ in range(50):
        agents.step()
        if not agents.running:
            return
        for tid in list(agents.running):
            agents.exit(tid)


def test_standbys_on_a_lost_node_are_queued_again_free_and_their_dependents_run() -> None:
    core, agents = make(cores=1, nodes=2)
    after = JobSpec(name="after", exec="/bin/true", request=Request(Range(1, 1), Range(1, 1), 0),
                    base_dir="/home/u/run", after=(Dependency("s0"), Dependency("s1")))
    core.submit([spec("r0"), spec("r1"), spec("s0"), spec("s1"), after], agents.tick())
    agents.step()
    standbys = set(core.standbys.behind)
    assert {core.running[t].job.name for t in standbys} == {"s0", "s1"}
    (held_on_n0,) = [t for t in standbys if core.running[t].allocation[0].node == "n0"]
    core.node_disconnected("n0", agents.tick())
    forget(agents, "n0")
    agents.t += 10
    agents.step()  # the grace passed: n0 is lost
    assert not core.pool.by_name["n0"].online
    assert held_on_n0 not in core.running  # unplaced, not ended
    for name in ("s0", "s1"):
        s = core.registry.jobs[name]
        assert not s.final and s.attempts is None and s.failed == 0  # no attempt, no retry, no crash
    assert core.registry.jobs["r0"].state == State.FAILED  # it ran: node lost (no retries)
    run_out(agents)
    states = {j.name: j.state for j in core.registry}
    assert states == {"r0": State.FAILED, "r1": State.SUCCEED, "s0": State.SUCCEED, "s1": State.SUCCEED,
                      "after": State.SUCCEED}


def test_a_new_agent_for_a_dead_one_gets_its_tasks_queued_again_without_a_retry() -> None:
    core, agents = make(cores=1, nodes=1)
    core.submit([spec("long"), spec("next")], agents.tick())
    agents.step()
    long_id = core.registry.jobs["long"].tasks[None].id
    assert core.running[long_id].state == State.EXECUTING and len(core.standbys.behind) == 1
    core.node_disconnected("n0", agents.tick())
    forget(agents, "n0")
    assert agents.step().launches == {}  # nothing goes to a disconnected node, nothing runs twice
    core.node_joined(NodeInfo("n0", 1, ()), agents.tick())  # a new agent (no campaign): the old one died
    long = core.registry.jobs["long"]
    assert long_id not in core.running and not long.final
    (attempt,) = long.attempts[None]  # type: ignore[index]
    assert attempt.lost and attempt.reason.startswith("interrupted: its agent on n0 died")
    assert core.registry.jobs["next"].attempts is None  # it never started: no trace
    run_out(agents)
    assert {j.name: j.state for j in core.registry} == {"long": State.SUCCEED, "next": State.SUCCEED}
    assert core.pool.free_cores == 1


def test_agents_that_keep_dying_under_a_task_end_it_at_the_crash_limit() -> None:
    core, agents = make(cores=1, nodes=1, crash_limit=2)
    core.submit([spec("hog")], agents.tick())
    for _ in range(2):
        agents.step()
        assert core.registry.jobs["hog"].state == State.EXECUTING
        core.node_disconnected("n0", agents.tick())
        forget(agents, "n0")
        core.node_joined(NodeInfo("n0", 1, ()), agents.tick())
    hog = core.registry.jobs["hog"]
    assert hog.state == State.FAILED and "crash limit: 2 nodes" in hog.reason


def test_a_multi_node_task_losing_a_second_node_is_stopped_on_its_first() -> None:
    core, agents = make(cores=1, nodes=2)
    wide = JobSpec(name="wide", exec="/bin/true", request=Request(Range(1, 1), Range(2, 2), 0),
                   base_dir="/home/u/run", retries=1)
    core.submit([wide], agents.tick())
    agents.step()
    (tid,) = core.running
    assert [s.node for s in core.running[tid].allocation] == ["n0", "n1"]
    core.node_disconnected("n1", agents.tick())
    agents.t += 10
    out = core.step(agents.tick())
    assert out.cancels == {"n0": [tid]}
    assert tid not in core.running


def test_a_storm_loses_many_nodes_in_one_pass_each_task_requeued_once() -> None:
    """Four of eight nodes cut off at once (a storm) and not back within the grace: one pass finds
    every task they held (nodeloss.on_nodes: one walk over the running tasks); each is queued
    again once, a task spanning two lost nodes too (one retry used, one attempt kept), and the
    invariants hold; the rest run where they are."""
    core = Core(now=0.0, campaign="c")
    core.recon.grace = 5.0
    for i in range(8):
        core.node_joined(NodeInfo(f"n{i}", 2, ()), 0.0)
    core.submit([spec("wide", cores=2, nodes=2, retries=1)] +
                [spec(f"j{i}", cores=1, retries=1) for i in range(12)], 0.0)
    core.step(1.0)
    for tid in list(core.running):
        core.task_started(tid, 1.0)
    wide = next(t for t in core.running.values() if t.job.name == "wide")
    lost_nodes = {s.node for s in wide.allocation} | {"n5", "n7"}
    assert len(lost_nodes) == 4
    held = {t.job.name for t in core.running.values() if any(s.node in lost_nodes for s in t.allocation)}
    for name in sorted(lost_nodes):
        core.node_disconnected(name, 2.0)
    out = core.step(7.0)
    core.check()
    assert sum("did not come back" in n for n in out.notices) == 4
    for name in held:
        job = core.registry.jobs[name]
        assert job.retried == {None: 1} and len(job.attempts[None]) == 1, name  # type: ignore[index]
        assert job.attempts[None][0].reason.startswith("node lost")  # type: ignore[index]
    kept = {t.job.name for t in core.running.values()}
    assert not held & kept and len(kept) == 13 - len(held)
    assert all(s.node not in lost_nodes for t in core.running.values() for s in t.allocation)
    assert core.pool.total_cores == 8
