"""The allocation manager's decisions (master/allocs.py): pure, fed with events and the time."""

from __future__ import annotations

import pytest

from pj.master.allocs import (
    BACKOFF_MAX_S,
    MOVES,
    AllocEvent,
    AllocState,
    Cancel,
    IllegalMove,
    Manager,
    Release,
    Submit,
    backoff,
)
from pj.master.invariants import check_allocs

SHAPE = (1, 1, 0, 0, 0.0)  # one core on one node, no walltime


def run_one(m: Manager, now: float = 0.0, job: str = "100", node: str = "n1", cores: int = 4) -> int:
    out = m.step(now, {SHAPE: 8}, [])
    (sub,) = out
    assert isinstance(sub, Submit)
    m.submitted(sub.alloc, job, now)
    m.started(job, now + 1)
    assert m.node_joined(node, job, cores, now + 2)
    check_allocs(m)
    return sub.alloc


def test_no_waiting_work_submits_nothing() -> None:
    m = Manager()
    m.add_queue(nodes=1, time_s=600)
    assert m.step(0.0, {}, []) == []


def test_waiting_work_submits_one_until_its_nodes_show_their_size() -> None:
    m = Manager()
    m.add_queue(nodes=1, time_s=600, max_allocs=3)
    (sub,) = m.step(0.0, {SHAPE: 100}, [])
    assert isinstance(sub, Submit)
    assert m.step(1.0, {SHAPE: 100}, []) == []  # the first is still QUEUED: its size is unknown
    m.submitted(sub.alloc, "7", 1.0)
    assert m.allocs[sub.alloc].state is AllocState.PENDING
    m.node_joined("n1", "7", 4, 2.0)
    assert m.allocs[sub.alloc].state is AllocState.RUNNING
    # 100 waiting cores, 4 per allocation: more are asked for, one per step, up to 3 live.
    assert isinstance(m.step(3.0, {SHAPE: 100}, [])[0], Submit)
    assert isinstance(m.step(4.0, {SHAPE: 100}, [])[0], Submit)
    assert m.step(5.0, {SHAPE: 100}, []) == []
    check_allocs(m)


def test_work_whose_walltime_outlasts_the_allocation_asks_for_none() -> None:
    m = Manager()
    m.add_queue(nodes=1, time_s=120)
    assert m.step(0.0, {(1, 1, 0, 0, 3600.0): 5}, []) == []
    assert m.step(0.0, {(2, 1, 0, 0, 0.0): 5}, []) == []  # needs 2 nodes, the queue gives 1
    assert len(m.step(0.0, {(1, 1, 0, 0, 60.0): 5}, [])) == 1


def test_refused_sbatch_backs_off_doubling_and_capped() -> None:
    m = Manager()
    q = m.add_queue(nodes=1, time_s=600, partition="nosuch")
    (sub,) = m.step(0.0, {SHAPE: 1}, [])
    m.refused(sub.alloc, "invalid partition specified: nosuch", 0.0)
    a = m.allocs[sub.alloc]
    assert a.state is AllocState.REFUSED and "invalid partition" in a.why
    assert "backing off, next try in 5 s" in m.problems(0.0)[0]
    assert "tries again as work waits" in m.problems(6.0)[0]
    assert m.step(4.0, {SHAPE: 1}, []) == []  # backing off: no loop
    (sub2,) = m.step(5.0, {SHAPE: 1}, [])
    m.refused(sub2.alloc, "again", 5.0)
    assert q.next_try_at == 15.0
    assert [backoff(n) for n in (1, 2, 3)] == [5.0, 10.0, 20.0]
    assert backoff(50) == BACKOFF_MAX_S
    check_allocs(m)


def test_pending_allocation_is_cancelled_when_no_work_waits() -> None:
    m = Manager()
    m.add_queue(nodes=1, time_s=600)
    (sub,) = m.step(0.0, {SHAPE: 1}, [])
    m.submitted(sub.alloc, "9", 0.0)
    assert m.step(1.0, {}, []) == [Cancel(sub.alloc, "9")]
    assert m.allocs[sub.alloc].state is AllocState.CANCELLED
    check_allocs(m)


def test_a_queued_allocation_no_longer_wanted_is_cancelled_once_its_id_comes() -> None:
    m = Manager()
    q = m.add_queue(nodes=1, time_s=600)
    (sub,) = m.step(0.0, {SHAPE: 1}, [])
    m.remove_queue(q.id, 1.0)
    m.submitted(sub.alloc, "11", 2.0)
    assert m.step(2.0, {SHAPE: 1}, []) == [Cancel(sub.alloc, "11")]


def test_nodes_that_never_join_fail_the_allocation_and_back_off() -> None:
    m = Manager(join_timeout_s=30)
    q = m.add_queue(nodes=1, time_s=600)
    (sub,) = m.step(0.0, {SHAPE: 1}, [])
    m.submitted(sub.alloc, "12", 0.0)
    m.started("12", 10.0)
    assert m.step(39.0, {SHAPE: 1}, []) == []
    out = m.step(41.0, {SHAPE: 1}, [])
    assert out == [Cancel(sub.alloc, "12")]
    a = m.allocs[sub.alloc]
    assert a.state is AllocState.FAILED and "never joined" in a.why
    assert q.fails == 1
    check_allocs(m)


def test_idle_allocation_is_released_after_idle_timeout() -> None:
    m = Manager()
    m.add_queue(nodes=1, time_s=600, idle_s=10)
    aid = run_one(m)
    assert m.step(5.0, {}, ["n1"]) == []
    assert m.step(14.0, {}, ["n1"]) == []
    assert m.step(15.0, {}, ["n1"]) == [Release(aid, ("n1",))]
    assert m.allocs[aid].state is AllocState.RELEASING
    m.node_left("n1")
    m.gone("100", "COMPLETED", 16.0)
    assert m.allocs[aid].state is AllocState.ENDED and m.allocs[aid].why == "idle: released"
    check_allocs(m)


def test_work_resets_the_idle_clock() -> None:
    m = Manager()
    m.add_queue(nodes=1, time_s=600, idle_s=10)
    aid = run_one(m)
    m.step(5.0, {}, ["n1"])
    m.step(9.0, {}, [])  # busy again
    assert m.step(16.0, {}, ["n1"]) == []
    assert m.allocs[aid].state is AllocState.RUNNING


def test_agents_started_by_hand_are_not_managed() -> None:
    m = Manager()
    assert m.node_joined("h1", "", 4, 0.0)
    assert m.node_joined("h2", "555", 4, 0.0)
    assert m.by_node == {}


def test_a_late_agent_of_a_cancelled_allocation_is_sent_away() -> None:
    m = Manager()
    q = m.add_queue(nodes=1, time_s=600)
    (sub,) = m.step(0.0, {SHAPE: 1}, [])
    m.submitted(sub.alloc, "13", 0.0)
    m.remove_queue(q.id, 1.0)
    assert not m.node_joined("n1", "13", 4, 2.0)


def test_an_illegal_move_raises() -> None:
    m = Manager()
    m.add_queue(nodes=1, time_s=600)
    (sub,) = m.step(0.0, {SHAPE: 1}, [])
    with pytest.raises(IllegalMove, match="idle in state QUEUED"):
        m.allocs[sub.alloc].move(AllocEvent.IDLE)
    assert all(not s.final for s, _ in MOVES if s is not AllocState.CANCELLED)


@pytest.mark.parametrize(
    ("kw", "text"),
    [({"nodes": 0}, "--nodes"), ({"time_s": 30}, "--time"), ({"max_allocs": 0}, "--max-allocations"),
     ({"idle_s": 0}, "--idle-timeout")],
)
def test_bad_queue_options_name_the_option(kw: dict[str, float], text: str) -> None:
    args: dict = {"nodes": 1, "time_s": 600} | kw
    with pytest.raises(ValueError, match=text):
        Manager().add_queue(**args)


def test_an_idle_allocation_too_near_its_end_for_the_waiting_work_is_released() -> None:
    m = Manager()
    m.add_queue(nodes=1, time_s=600, idle_s=5)
    (sub,) = m.step(0.0, {SHAPE: 1}, [])
    m.submitted(sub.alloc, "20", 0.0)
    m.node_joined("n1", "20", 4, 1.0, ends_at=600.0)
    long = {(1, 1, 0, 0, 300.0): 4}  # 300 s tasks: n1 could run them until t=300, not after
    assert m.step(100.0, long, ["n1"]) == []
    assert m.step(200.0, long, ["n1"]) == []  # idle, yet it could still run them
    assert m.step(301.0, long, ["n1"])[0] == Release(sub.alloc, ("n1",))  # idle since 100 s
    check_allocs(m)
