"""Agents that outlive the master's stream (pure core, fake clock): adopt, apply exits, requeue the
interrupted, cancel the unknown, deadlines, wrong campaign, disconnect and return."""

from __future__ import annotations

from pathlib import Path

import pytest

from pj.common.workdir import write_token
from pj.master import journal
from pj.master.core import Core
from pj.master.model import JobSpec, NodeInfo, State
from pj.master.reconcile import INTERRUPTED_RESTART, INTERRUPTED_RETURN, WrongCampaign
from pj.master.restore import Batch, Placement, restore

from .coreharness import spec

CAMPAIGN = "c0ffee"


def node(name: str = "n0", cores: int = 4) -> NodeInfo:
    return NodeInfo(name, cores, ())


class Crashed:
    """A first master that placed some tasks, then died; ``resume`` rebuilds a second one."""

    def __init__(self, *specs: JobSpec, cores: int = 4) -> None:
        self.t = 100.0
        first = Core(now=self.t, campaign=CAMPAIGN)
        first.node_joined(node(cores=cores), self.t)
        self.batch = Batch(list(specs), self.t)
        first.submit(list(specs), self.t)
        out = first.step(self.t)
        self.placements = [Placement(t.id, t.job.name, t.iteration, t.allocation) for t in out.placed]
        self.ids = {t.name: t.id for t in out.placed}

    def resume(self, timeout: float = 60.0) -> Core:
        self.t += 10
        core = Core(now=self.t, campaign=CAMPAIGN)
        core.recon.grace = 5.0
        restore(core, [self.batch], [], [], [], self.t, self.placements, timeout)
        return core


def launched(core: Core, now: float) -> list[str]:
    out = core.step(now)
    return [f"{x.env['PJ_JOB']}:{x.env['PJ_ITERATION']}" for ls in out.launches.values() for x in ls]


def test_orphans_wait_scheduled_holding_nothing_and_are_not_queued() -> None:
    c = Crashed(spec("a"), spec("b", it=2))
    core = c.resume()
    assert {t.state for t in core.running.values()} == {State.SCHEDULED}
    assert core.registry.jobs["a"].state == State.SCHEDULED
    assert core.recon.orphans == set(c.ids.values())
    assert core.next_task_id > max(c.ids.values())
    core.node_joined(node("n1"), c.t)  # another node: the orphans must not be placed there
    assert launched(core, c.t) == []


def test_a_running_task_is_adopted_with_its_own_cores() -> None:
    c = Crashed(spec("a"), spec("b", it=2))
    core = c.resume()
    core.node_joined(node(), c.t, CAMPAIGN, running=list(c.ids.values()))
    assert {t.state for t in core.running.values()} == {State.EXECUTING}
    assert core.pool.free_cores == 1
    assert launched(core, c.t + 1) == []  # nothing runs twice
    core.task_exited(c.ids["a"], 0, "", c.t + 2)
    assert core.registry.jobs["a"].state == State.SUCCEED and core.pool.free_cores == 2
    assert core.recon.orphans == set() and core.step(c.t + 100).launches == {}


def test_an_exit_while_cut_off_is_applied_and_a_duplicate_is_ignored() -> None:
    c = Crashed(spec("a"), spec("b", it=1))
    core = c.resume()
    a, b = c.ids["a"], c.ids["b:0"]
    core.node_joined(node(), c.t, CAMPAIGN, running=[b], ended=[(a, 0, "", b"", "")])
    assert core.registry.jobs["a"].state == State.SUCCEED
    assert core.pool.free_cores == 3  # only b holds a core
    core.task_exited(b, 1, "", c.t + 1)
    assert core.registry.jobs["b"].state == State.FAILED
    core.node_disconnected("n0", c.t + 2)
    core.node_joined(node(), c.t + 3, CAMPAIGN, ended=[(a, 0, "", b"", ""), (b, 0, "", b"", "")])  # sent again: ignored
    assert core.registry.jobs["b"].state == State.FAILED and core.pool.free_cores == 4
    assert core.task_counts[State.SUCCEED] == 1 and core.task_counts[State.FAILED] == 1


def test_a_task_no_agent_runs_is_queued_again_without_using_a_retry() -> None:
    c = Crashed(spec("a", retries=0))
    core = c.resume()
    core.node_joined(node(), c.t, "")  # a fresh agent: it runs nothing
    job = core.registry.jobs["a"]
    assert job.retried is None
    (attempt,) = job.attempts[None]  # type: ignore[index]
    assert attempt.reason == INTERRUPTED_RESTART and attempt.task_id == c.ids["a"]
    out = core.step(c.t + 1)
    assert out.unplaced == [c.ids["a"]]
    (x,) = out.launches["n0"]
    assert x.task_id > c.ids["a"]
    core.task_started(x.task_id, c.t + 2)
    core.task_exited(x.task_id, 0, "", c.t + 3)
    assert job.state == State.SUCCEED and core.pool.free_cores == 4


def test_a_task_the_campaign_does_not_know_is_canceled() -> None:
    c = Crashed(spec("a"))
    core = c.resume()
    core.node_joined(node(), c.t, CAMPAIGN, running=[c.ids["a"], 999])
    out = core.step(c.t)
    assert out.cancels == {"n0": [999]}
    assert any("999" in n for n in out.notices)
    assert core.registry.jobs["a"].tasks[None].state == State.EXECUTING


def test_orphans_whose_node_never_registers_run_again_at_the_deadline() -> None:
    c = Crashed(spec("a"), spec("b"))
    core = c.resume(timeout=10)
    assert core.step(c.t).wake_at == c.t + 10
    core.node_joined(node("n1"), c.t + 1)
    assert launched(core, c.t + 9) == []
    assert sorted(launched(core, c.t + 10)) == ["a:", "b:"]
    assert core.registry.jobs["a"].attempts[None][0].reason == INTERRUPTED_RESTART  # type: ignore[index]
    assert core.registry.jobs["a"].retried is None


def test_an_agent_of_another_campaign_is_refused_and_nothing_changes() -> None:
    c = Crashed(spec("a"))
    core = c.resume()
    with pytest.raises(WrongCampaign, match=f"served campaign other, not {CAMPAIGN}"):
        core.node_joined(node(), c.t, "other", running=[c.ids["a"]])
    assert "n0" not in core.pool.by_name and core.recon.orphans == {c.ids["a"]}


class Live:
    """One master, one node, a job running on it."""

    def __init__(self, retries: int = 1) -> None:
        self.core = Core(now=0.0, campaign=CAMPAIGN)
        self.core.recon.grace = 5.0
        self.core.node_joined(node(cores=2), 0.0)
        self.core.submit([spec("a", retries=retries)], 0.0)
        (x,) = self.core.step(1.0).launches["n0"]
        self.id = x.task_id
        self.core.task_started(self.id, 1.0)


def test_a_node_that_comes_back_within_the_grace_keeps_its_tasks() -> None:
    r = Live()
    core = r.core
    core.node_disconnected("n0", 10.0)
    core.submit([spec("b")], 10.0)
    out = core.step(11.0)
    assert out.launches == {} and out.wake_at == 15.0  # nothing new goes to a node cut off
    core.node_joined(node(cores=2), 12.0, CAMPAIGN, running=[r.id])
    assert core.registry.jobs["a"].tasks[None].state == State.EXECUTING
    assert launched(core, 13.0) == ["b:"]  # back in service, with its free core
    assert core.pool.free_cores == 0 and core.step(20.0).wake_at is None


def test_a_node_back_without_a_task_it_was_sent_queues_it_again() -> None:
    r = Live()
    r.core.node_disconnected("n0", 10.0)
    r.core.node_joined(node(cores=2), 12.0, CAMPAIGN)
    job = r.core.registry.jobs["a"]
    assert job.attempts[None][0].reason == INTERRUPTED_RETURN and job.retried is None  # type: ignore[index]
    assert launched(r.core, 13.0) == ["a:"]


def test_a_node_that_does_not_come_back_within_the_grace_is_lost() -> None:
    r = Live(retries=1)
    core = r.core
    core.node_disconnected("n0", 10.0)
    assert launched(core, 14.9) == []
    out = core.step(15.0)
    assert any("did not come back within 5 s" in n for n in out.notices)
    job = core.registry.jobs["a"]
    assert job.retried == {None: 1} and job.attempts[None][0].reason.startswith("node lost: n0")  # type: ignore[index]
    core.node_joined(node(cores=2), 16.0, CAMPAIGN, running=[r.id])  # too late: its task is canceled
    out = core.step(17.0)
    assert out.cancels == {"n0": [r.id]} and len(out.launches["n0"]) == 1


def test_nodes_cut_off_within_the_gather_are_lost_in_one_pass_and_none_early() -> None:
    """A storm: streams seen to end over 1.5 s are lost together, 2 s after the first was due; one
    cut off later keeps its whole grace."""
    core = Core(now=0.0, campaign=CAMPAIGN)
    core.recon.grace, core.recon.gather = 5.0, 2.0
    for n in ("n0", "n1", "n2", "n3"):
        core.node_joined(node(n, cores=1), 0.0)
    core.submit([spec("a", it=4, retries=1)], 0.0)
    for x in (x for ls in core.step(1.0).launches.values() for x in ls):
        core.task_started(x.task_id, 1.0)
    for n, at in (("n0", 10.0), ("n1", 10.5), ("n2", 11.5), ("n3", 13.0)):
        core.node_disconnected(n, at)
    out = core.step(15.0)
    assert out.wake_at == 17.0 and not out.notices  # n0 is due, the gather is not over
    out = core.step(17.0)
    assert sorted(n.split()[1] for n in out.notices if "did not come back" in n) == ["n0", "n1", "n2"]
    assert core.is_disconnected("n3") and out.wake_at == 20.0  # due at 18, gathered until 20
    attempts = core.registry.jobs["a"].attempts or {}
    assert sorted(a[0].reason.split()[2] for a in attempts.values()) == ["n0", "n1", "n2"]


def test_a_fresh_agent_on_a_disconnected_node_means_the_old_one_died() -> None:
    r = Live(retries=0)
    r.core.node_disconnected("n0", 10.0)
    r.core.node_joined(node(cores=2), 11.0, "")  # the new agent stopped what the dead one left (guard.py)
    job = r.core.registry.jobs["a"]
    # Queued again without a retry (it has none), the attempt counted as a crash.
    (attempt,) = job.attempts[None]  # type: ignore[index]
    assert attempt.lost and attempt.reason.startswith("interrupted: its agent on n0 died") and not job.final
    assert r.core.pool.free_cores == 2 and not r.core.is_disconnected("n0")
    assert launched(r.core, 12.0) == ["a:"]


def test_the_journal_keeps_placements_the_campaign_and_the_highest_id(tmp_path: Path) -> None:
    jour = journal.Journal(tmp_path / "journal.db")
    campaign = jour.campaign()
    assert len(campaign) == 32 and jour.campaign() == campaign
    core = Core(now=0.0)
    core.node_joined(node(cores=2), 0.0)
    core.submit([spec("a"), spec("b"), spec("c")], 0.0)
    out = core.step(1.0)
    jour.record(out.ended, out.finished, out.placed, out.unplaced)
    a, b = (t.id for t in out.placed)
    core.task_exited(b, 0, "", 2.0)
    out = core.step(2.0)
    jour.record(out.ended, out.finished, out.placed, out.unplaced)
    c = out.placed[0].id
    core.task_exited(c, 0, "", 3.0)
    out = core.step(3.0)
    jour.record(out.ended, out.finished, out.placed, out.unplaced)
    jour.close()
    again = journal.Journal(tmp_path / "journal.db")
    assert again.campaign() == campaign
    placements = again.placements()
    assert [p.task_id for p in placements] == [a, c]  # a is open; c (closed) carries the top id
    assert placements[0].job == "a" and placements[0].allocation[0].node == "n0"
    assert placements[1].job == "" and placements[1].allocation == ()


def test_a_resumed_master_keeps_the_token(tmp_path: Path) -> None:
    first = write_token(tmp_path)
    assert write_token(tmp_path, keep=True) == first
    assert write_token(tmp_path) != first


def test_a_node_back_without_launches_it_never_started_queues_them_as_never_placed() -> None:
    """The agent drops the launches it held for busy cores when its stream breaks (and a launch
    may be lost with the stream): the master had no start for them; they go back to the front of
    the queue with no attempt kept, and run once, elsewhere or there (the swarm's --reconnect)."""
    core = Core(now=0.0, campaign=CAMPAIGN, prefetch_on=True)
    core.recon.grace = 5.0
    core.node_joined(node(cores=1), 0.0)
    core.submit([spec("a"), spec("b"), spec("c")], 0.0)
    out = core.step(1.0)
    ids = {x.env["PJ_JOB"]: x.task_id for x in out.launches["n0"]}
    assert set(ids) >= {"a", "b"}  # b is held behind a (prefetch)
    core.task_started(ids["a"], 1.0)
    core.node_disconnected("n0", 2.0)
    core.node_joined(node(cores=1), 3.0, CAMPAIGN, running=[ids["a"]])
    jobs = core.registry.jobs
    assert jobs["a"].tasks[None].state == State.EXECUTING
    assert not jobs["b"].attempts and jobs["b"].state == State.QUEUED and jobs["b"].retried is None
    core.task_exited(ids["a"], 0, "", 4.0)
    assert launched(core, 5.0) == ["b:", "c:"]  # at the front, in their order (b runs, c held behind it)
    core.check()
