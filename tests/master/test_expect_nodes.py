"""The nodes a run expects (by name or count), the wait for them, and what happens to those that never come."""

from __future__ import annotations

import pytest

from pj.master.core import Core, Outbox
from pj.master.expect import Expectation
from pj.master.model import JobSpec, NodeInfo, Range, Request, State

T0 = 1000.0


def job(name: str, cores: int = 1, nodes: int = 1, **kw: object) -> JobSpec:
    return JobSpec(name=name, exec="/bin/true", request=Request(Range(cores, cores), Range(nodes, nodes)),
                   base_dir="/home/u", **kw)  # type: ignore[arg-type]


def core(expect: str | None, timeout_s: float = 60, policy: str = "continue") -> Core:
    return Core(expect=None if expect is None else Expectation.parse(expect, timeout_s, policy), now=T0)


def join(c: Core, *names: str, cores: int = 4, at: float = T0 + 1) -> None:
    for n in names:
        c.node_joined(NodeInfo(n, cores), at)


def state(c: Core, name: str) -> tuple[State, str]:
    j = c.registry.get(name)
    assert j is not None
    return j.state, j.reason


def launched(out: Outbox) -> list[str]:
    return [t.env["PJ_JOB"] for ts in out.launches.values() for t in ts]


# ---------------------------------------------------------------- parsing


def test_expect_nodes_takes_a_count_or_a_slurm_host_list() -> None:
    assert Expectation.parse("4") == Expectation(4)
    e = Expectation.parse("n[1-3],gpu07", 90, "fail")
    assert (e.count, e.names, e.timeout_s, e.policy) == (4, ("n1", "n2", "n3", "gpu07"), 90, "fail")
    for bad, why in [("n[1-", "never closed"), ("0", "at least 1"), ("a,a", "a named more than once")]:
        with pytest.raises(ValueError, match=why) as e_info:
            Expectation.parse(bad)
        assert "--expect-nodes" in str(e_info.value)
    with pytest.raises(ValueError, match="--missing-nodes"):
        Expectation.parse("2", policy="maybe")


# ---------------------------------------------------------------- all come in time


def test_every_named_node_in_time_makes_the_capacity_known_without_a_notice() -> None:
    c = core("n[1-2]")
    out = c.step(T0)
    assert out.wake_at == T0 + 60 and not c.capacity_known
    c.submit([job("huge", cores=5)], T0 + 1)
    join(c, "n1")
    assert state(c, "huge")[0] == State.QUEUED  # n2 might be bigger
    assert c.nodes_missing() == ["n2"]
    join(c, "n2")
    assert c.capacity_known
    assert state(c, "huge")[0] == State.FAILED and "can never fit" in state(c, "huge")[1]
    out = c.step(T0 + 2)
    assert out.notices == [] and out.wake_at is None
    assert c.step(T0 + 100).notices == []  # the deadline means nothing once all came
    assert c.nodes_missing() == []


def test_no_expectation_never_wakes_and_never_judges_size() -> None:
    c = core(None)
    join(c, "a")
    c.submit([job("huge", cores=64)], T0 + 1)
    out = c.step(T0 + 10_000)
    assert out.wake_at is None and out.notices == [] and not c.capacity_known
    assert state(c, "huge")[0] == State.QUEUED


# ---------------------------------------------------------------- the deadline passes


def test_missing_nodes_are_named_and_the_run_goes_on_with_those_that_came() -> None:
    c = core("n[1-4]", timeout_s=60)
    join(c, "n1", "n2")
    c.submit([job("small"), job("wide", cores=4, nodes=3), job("other")], T0 + 2)
    out = c.step(T0 + 59)
    assert out.notices == [] and out.wake_at == T0 + 60
    assert sorted(launched(out)) == ["other", "small"]  # what fits runs meanwhile
    assert state(c, "wide")[0] == State.QUEUED  # 3 nodes might still come
    out = c.step(T0 + 60)
    assert out.notices == [
        "node(s) n3, n4 did not register within 60 s; going on with 2 of 4 nodes (n1, n2)"
    ]
    assert out.wake_at is None and c.capacity_known
    assert c.nodes_missing() == ["n3", "n4"]
    wide_state, reason = state(c, "wide")
    assert wide_state == State.FAILED and "can never fit" in reason and "on 3 node(s)" in reason
    c.submit([job("two_nodes", cores=4, nodes=2)], T0 + 61)
    assert state(c, "two_nodes")[0] == State.QUEUED  # fits the nodes that came: waits for cores
    assert c.step(T0 + 120).notices == []  # said once


def test_missing_nodes_by_count() -> None:
    c = core("3", timeout_s=1.5)
    join(c, "a")
    out = c.step(T0 + 2)
    assert out.notices == [
        "2 of 3 expected node(s) did not register within 1.5 s; going on with 1 of 3 nodes (a)"
    ]


def test_missing_nodes_fail_cancels_every_job_with_the_reason_and_stops() -> None:
    c = core("n[1-2]", timeout_s=5, policy="fail")
    join(c, "n1", cores=1)
    c.submit([job("running"), job("queued"), job("later")], T0 + 1)
    (run,) = c.step(T0 + 2).launches["n1"]
    c.task_started(run.task_id, T0 + 2)
    out = c.step(T0 + 5)
    notice = "node(s) n2 did not register within 5 s; giving up (--missing-nodes fail): every job is canceled"
    assert out.notices == [notice]
    assert out.cancels == {"n1": [run.task_id]} and not out.stop
    assert state(c, "queued") == (State.CANCELED, notice)
    assert state(c, "later") == (State.CANCELED, notice)
    assert c.finishing
    c.task_exited(run.task_id, -15, "", T0 + 6)
    assert state(c, "running") == (State.CANCELED, notice)
    job_running = c.registry.get("running")
    assert job_running is not None and job_running.tasks[None].reason == notice
    assert c.step(T0 + 7).stop


def test_fail_policy_with_no_job_stops_at_once() -> None:
    c = core("n1", timeout_s=1, policy="fail")
    assert c.step(T0 + 1).stop


# ---------------------------------------------------------------- late and unexpected nodes


def test_a_node_that_comes_after_the_deadline_is_welcome() -> None:
    c = core("n[1-2]", timeout_s=10)
    join(c, "n1", cores=2)
    c.step(T0 + 10)
    c.submit([job("two", cores=2), job("four", cores=4)], T0 + 11)
    assert state(c, "four")[0] == State.FAILED  # judged against the run as it is
    assert launched(c.step(T0 + 11)) == ["two"]
    c.submit([job("again", cores=2)], T0 + 12)
    join(c, "n2", cores=2, at=T0 + 13)
    out = c.step(T0 + 13)
    assert out.notices == ["node n2 registered after the 10 s wait for nodes; its 2 core(s) join the run"]
    assert launched(out) == ["again"] and c.pool.total_cores == 4
    assert c.nodes_missing() == []


def test_an_unexpected_node_is_accepted_with_a_notice() -> None:
    c = core("n[1-2]")
    join(c, "x9", cores=8)
    out = c.step(T0 + 2)
    assert out.notices == ["node x9 registered but is not one of the expected nodes (n1, n2); its 8 core(s) join "
                           "the run"]
    assert c.pool.total_cores == 8 and not c.capacity_known  # it does not stand in for n1 or n2
    c.submit([job("big", cores=8)], T0 + 3)
    assert launched(c.step(T0 + 3)) == ["big"]
    assert c.nodes_missing() == ["n1", "n2"]


def test_a_node_lost_and_back_is_missing_meanwhile_and_not_counted_twice() -> None:
    c = core("n[1-2]")
    join(c, "n1")
    c.node_left("n1", T0 + 2)
    assert c.nodes_missing() == ["n1", "n2"]
    join(c, "n1", at=T0 + 3)
    assert not c.capacity_known
    join(c, "n2", at=T0 + 4)
    assert c.capacity_known and c.nodes_missing() == []


def test_many_missing_nodes_are_shown_as_a_host_list() -> None:
    c = core("n[1-40]", timeout_s=1)
    join(c, "n1")
    (notice,) = c.step(T0 + 1).notices
    assert notice.startswith("node(s) n[2-40] did not register within 1 s; going on with 1 of 40 nodes (n1)")
