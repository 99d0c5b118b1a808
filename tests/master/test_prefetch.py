"""Prefetch in the master's pure core: standbys placed on the share of a running task (no I/O).

The agents are played by ``Agents``, which does what a real agent does with a launch whose cores are
still busy: it holds it and starts it when they free, in arrival order.
"""

from __future__ import annotations

import random
from collections import deque

import pytest

from pj.master.core import Core, Outbox
from pj.master.expect import Expectation
from pj.master.launch import TaskLaunch
from pj.master.model import NodeInfo, Range, State

from .coreharness import spec


class Agents:
    """Every node's agent: tasks running per (node, core or GPU), launches held until those free."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self.busy: dict[tuple[str, object], int] = {}  # (node, core id or GPU id) -> task id
        self.running: dict[int, TaskLaunch] = {}
        self.held: deque[TaskLaunch] = deque()
        self.launched: list[int] = []  # every task id ever started, in order
        self.waited = 0  # launches that came while their cores were busy
        self.seen_held: set[int] = set()
        self.t = 1000.0

    def tick(self) -> float:
        self.t += 0.01
        return self.t

    @staticmethod
    def _keys(launch: TaskLaunch) -> list[tuple[str, object]]:
        return [(launch.node, c) for c in launch.cores] + [(launch.node, "gpu" + g) for g in launch.gpus]

    def step(self) -> Outbox:
        out = self.core.step(self.tick())
        for ls in out.launches.values():
            for launch in ls:
                self.held.append(launch)
        for ids in out.cancels.values():
            for tid in ids:
                self.cancel(tid)
        self._start_held()
        return out

    def _start_held(self) -> None:
        blocked: set[tuple[str, object]] = set()
        still: deque[TaskLaunch] = deque()
        for launch in self.held:
            keys = self._keys(launch)
            if any(k in self.busy or k in blocked for k in keys):
                blocked.update(keys)
                still.append(launch)
                continue
            if launch.task_id in self.seen_held:
                self.waited += 1
            for k in keys:
                self.busy[k] = launch.task_id
            self.running[launch.task_id] = launch
            self.launched.append(launch.task_id)
            self.core.task_started(launch.task_id, self.tick())
        self.held = still
        self.seen_held.update(launch.task_id for launch in still)

    def exit(self, tid: int, code: int = 0) -> None:
        launch = self.running.pop(tid)
        for k in self._keys(launch):
            assert self.busy.pop(k) == tid
        self.core.task_exited(tid, code, "", self.tick())
        self._start_held()

    def cancel(self, tid: int) -> None:
        for launch in self.held:
            if launch.task_id == tid:
                self.held.remove(launch)
                self.core.task_exited(tid, -15, "canceled before it started", self.tick())
                return
        if tid in self.running:
            self.exit(tid, -15)

    def withdraw(self, tid: int) -> bool:
        for launch in self.held:
            if launch.task_id == tid:
                self.held.remove(launch)
                self.core.task_withdrawn(tid, self.tick())
                return True
        return False


def make(cores: int = 4, nodes: int = 1, gpus: int = 0, depth: int = 1) -> tuple[Core, Agents]:
    core = Core(expect=Expectation(nodes), now=1000.0, prefetch_on=True, campaign="c")
    core.standbys.depth = depth
    for i in range(nodes):
        core.node_joined(NodeInfo(f"n{i}", cores, tuple(str(g) for g in range(gpus))), 1000.0)
    return core, Agents(core)


def names(out: Outbox) -> list[str]:
    return [launch.env["PJ_JOB"] for ls in out.launches.values() for launch in ls]


def test_every_core_gets_a_line_of_standbys_on_its_own_cores_while_work_waits() -> None:
    core, agents = make(cores=4, depth=2)
    core.submit([spec(f"j{i}") for i in range(14)], agents.tick())
    out = agents.step()
    launches = [launch for ls in out.launches.values() for launch in ls]
    assert names(out) == [f"j{i}" for i in range(12)]  # 4 to run now, 8 to wait, oldest first
    cores = [launch.cores for launch in launches]
    assert cores[8:] == cores[4:8] == cores[:4]
    assert core.pool.free_cores == 0
    assert [core.registry.jobs[f"j{i}"].state for i in range(12)] == [State.EXECUTING] * 4 + [State.SCHEDULED] * 8
    assert core.registry.jobs["j12"].state == State.QUEUED
    agents.exit(launches[0].task_id)  # j4 starts on core 0, j8 is next there, and there is room behind j8
    assert core.registry.jobs["j4"].state == State.EXECUTING
    out = agents.step()
    assert names(out) == ["j12"] and out.launches["n0"][0].cores == cores[0]


def test_a_standby_that_leaves_the_middle_of_a_line_lets_the_one_behind_move_up() -> None:
    core, agents = make(cores=1, depth=2)
    core.submit([spec("run"), spec("s1"), spec("s2"), spec("s3")], agents.tick())
    agents.step()
    assert core.registry.jobs["s3"].state == State.QUEUED
    core.cancel(["s1"], agents.tick())
    agents.step()  # the cancel reaches the agent, which drops s1
    assert core.registry.jobs["s1"].state == State.CANCELED
    out = agents.step()
    assert names(out) == ["s3"]  # s2 moved up: room behind it
    agents.exit(core.registry.jobs["run"].tasks[None].id)
    assert core.registry.jobs["s2"].state == State.EXECUTING
    agents.exit(core.registry.jobs["s2"].tasks[None].id)
    agents.exit(core.registry.jobs["s3"].tasks[None].id)
    agents.step()
    assert core.pool.free_cores == 1 and not core.standbys.places and not core.standbys.heads


def test_a_standby_starts_when_its_core_frees_and_the_next_one_queues_behind_it() -> None:
    core, agents = make(cores=2)
    core.submit([spec(f"j{i}") for i in range(6)], agents.tick())
    agents.step()  # j0, j1 run; j2, j3 wait on their cores
    j0 = core.registry.jobs["j0"].tasks[None]
    agents.exit(j0.id)
    assert core.registry.jobs["j2"].state == State.EXECUTING  # started by the agent, no pass needed
    assert core.registry.jobs["j2"].tasks[None].allocation == j0.allocation
    assert core.pool.free_cores == 0  # the core passed from j0 to j2, never through the pool
    out = agents.step()
    assert names(out) == ["j4"]
    assert out.launches["n0"][0].cores == j0.allocation[0].cores


def test_a_mixed_campaign_runs_every_task_once_and_never_shares_a_core() -> None:
    rnd = random.Random(7)
    core, agents = make(cores=8, nodes=3, gpus=2, depth=2)
    specs = []
    for i in range(300):
        kind = rnd.random()
        if kind < 0.85:
            specs.append(spec(f"j{i}"))
        elif kind < 0.9:
            specs.append(spec(f"j{i}", cores=rnd.choice([2, 4, 8])))
        elif kind < 0.95:
            specs.append(spec(f"j{i}", cores=1, gpus=1))
        elif kind < 0.97:
            specs.append(spec(f"j{i}", cores=Range(1, 4)))  # a range: never put on standby
        else:
            specs.append(spec(f"j{i}", it=5))
    core.submit(specs, agents.tick())
    for _ in range(10_000):
        agents.step()
        if not agents.running:
            assert not agents.held
            break
        for tid in rnd.sample(sorted(agents.running), k=max(1, len(agents.running) // 8)):
            agents.exit(tid, 0 if rnd.random() < 0.95 else 3)
    else:
        raise AssertionError("campaign did not end")
    jobs = list(core.registry)
    assert all(j.state in (State.SUCCEED, State.FAILED) for j in jobs)
    assert sum(j.total for j in jobs) == len(agents.launched) == len(set(agents.launched))
    assert agents.waited > 0  # some tasks were there before their core freed
    assert core.pool.free_cores == core.pool.total_cores == 24
    assert not core.standbys.behind and not core.standbys.ahead and not core.standbys.places
    assert not core.running


def test_a_range_request_at_the_head_stops_prefetch_so_nothing_jumps_ahead_of_it() -> None:
    core, agents = make(cores=2)
    core.submit([spec("a"), spec("b"), spec("range", cores=Range(1, 2)), spec("c")], agents.tick())
    out = agents.step()
    assert names(out) == ["a", "b"]  # "range" cannot wait on a share: "c" does not pass it
    assert core.registry.jobs["c"].state == State.QUEUED


def test_older_work_that_cannot_wait_on_a_share_is_passed_over_only_for_a_while() -> None:
    core, agents = make(cores=4)
    core.submit([spec(f"early{i}") for i in range(8)] + [spec("big", cores=2)]
                + [spec(f"late{i}") for i in range(100)], agents.tick())
    agents.step()
    order: list[str] = []
    while agents.running:
        for tid in list(agents.running)[:2]:  # exits come two at a time, one pass for both
            order.append(agents.running[tid].env["PJ_JOB"])
            agents.exit(tid)
        agents.step()
    # "big" waited about `patience` (0.25 s; the agents' clock moves 0.01 s per event), then the
    # standbys stopped taking the cores that freed, two came free in one pass, and it got them.
    assert order.index("late0") < order.index("big") < order.index("late40")
    assert core.registry.jobs["big"].state == State.SUCCEED


def test_a_standby_waits_only_on_a_share_of_its_own_size() -> None:
    core, agents = make(cores=4, gpus=2)
    core.submit([spec("big", cores=2), spec("g", gpus=1), spec("one"), spec("g2", gpus=1), spec("two", cores=2)],
                agents.tick())
    out = agents.step()
    launches = {launch.env["PJ_JOB"]: launch for ls in out.launches.values() for launch in ls}
    assert sorted(launches) == ["big", "g", "g2", "one", "two"]
    assert launches["g2"].cores == launches["g"].cores and launches["g2"].gpus == launches["g"].gpus
    assert launches["two"].cores == launches["big"].cores


def test_cancel_of_a_standby_leaves_the_core_with_the_task_that_runs_there() -> None:
    core, agents = make(cores=1)
    core.submit([spec("run"), spec("wait"), spec("later")], agents.tick())
    agents.step()
    assert core.registry.jobs["wait"].state == State.SCHEDULED
    core.cancel(["wait"], agents.tick())
    agents.step()
    assert core.registry.jobs["wait"].state == State.CANCELED
    assert core.registry.jobs["run"].state == State.EXECUTING
    assert core.pool.free_cores == 0
    out = agents.step()
    assert names(out) == ["later"]  # the running task may take another standby
    agents.exit(core.registry.jobs["run"].tasks[None].id)
    assert core.registry.jobs["later"].state == State.EXECUTING
    agents.exit(core.registry.jobs["later"].tasks[None].id)
    agents.step()
    assert core.pool.free_cores == 1


def test_a_standby_stuck_behind_a_long_task_is_withdrawn_once_cores_idle() -> None:
    core, agents = make(cores=2)
    core.submit([spec("long"), spec("short"), spec("s1"), spec("s2")], agents.tick())
    agents.step()  # long, short run; s1 waits on long's core, s2 on short's
    short = core.registry.jobs["short"].tasks[None]
    agents.exit(short.id)  # s2 starts
    agents.exit(core.registry.jobs["s2"].tasks[None].id)  # the queue is empty: a core idles
    out = agents.step()
    assert core.pool.free_cores == 1 and not out.withdraws
    s1 = core.registry.jobs["s1"].tasks[None]
    assert out.wake_at == s1.history[-1][1] + core.standbys.patience
    agents.t = out.wake_at
    out = agents.step()
    assert out.withdraws == {"n0": [s1.id]}
    assert agents.withdraw(s1.id)
    assert core.registry.jobs["s1"].state == State.QUEUED
    assert None not in core.registry.jobs["s1"].tasks  # it never ran: no record of it stays
    out = agents.step()
    assert names(out) == ["s1"]
    placed = core.registry.jobs["s1"].tasks[None]
    assert placed.id != s1.id and placed.allocation != core.registry.jobs["long"].tasks[None].allocation
    assert core.registry.jobs["s1"].state == State.EXECUTING
    assert core.pool.free_cores == 0


def test_a_withdraw_on_its_way_covers_the_free_core_it_was_made_for() -> None:
    # Two standbys stuck behind long tasks, one idle core: one is withdrawn, and while its agent has
    # not answered yet no later pass withdraws the other for the same core (8,192 x 8 simulated
    # agents: 236,000 withdraws for 150,000 tasks, every pass asking again for the same free cores).
    core, agents = make(cores=3)
    core.submit([spec("l0"), spec("l1"), spec("l2"), spec("a"), spec("b")], agents.tick())
    agents.step()  # l0, l1, l2 run; a waits on l0's core, b on l1's
    agents.exit(core.registry.jobs["l2"].tasks[None].id)  # its core idles: nothing is left to run
    a, b = core.registry.jobs["a"].tasks[None], core.registry.jobs["b"].tasks[None]
    agents.t += 1.0
    assert agents.step().withdraws == {"n0": [a.id]}
    assert core.standbys.withdrawing_cores == 1
    for _ in range(3):
        agents.t += 1.0
        assert not agents.step().withdraws  # a's withdraw will take the free core: b stays
    assert b.id in core.standbys.behind and b.id not in core.standbys.withdrawing
    assert agents.withdraw(a.id)
    out = agents.step()
    assert names(out) == ["a"] and core.pool.free_cores == 0 and core.standbys.withdrawing_cores == 0
    core.check()


def test_no_standby_waits_on_a_busy_core_while_free_cores_wait_for_the_next_slice(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A pass cut short by PASS_PLACE_MAX leaves free cores for the next pass: the rest of the ready
    # work goes there, not on standby behind the tasks just placed (to be withdrawn again).
    from pj.master import core as core_module

    monkeypatch.setattr(core_module, "PASS_PLACE_MAX", 3)
    core, agents = make(cores=8, depth=4)
    core.submit([spec(f"j{i}") for i in range(20)], agents.tick())
    out = agents.step()
    assert names(out) == ["j0", "j1", "j2"] and not core.standbys.behind and out.wake_at is not None
    seen = names(out)
    while core.pool.free_cores:
        seen += names(agents.step())
        assert not core.standbys.behind or not core.pool.free_cores  # standbys only once every core is busy
    assert seen == [f"j{i}" for i in range(9)]  # the pass that took the last free cores put j8 on standby
    out = agents.step()
    assert names(out) == ["j9", "j10", "j11"] and len(core.standbys.behind) == 4
    core.check()


def test_standbys_do_not_use_up_the_launch_room_of_free_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    # LAUNCHED_MAX bounds the launches on free cores not yet reported started; standbys held by
    # their agents do not count, else a node that joins would idle behind them.
    from pj.master import core as core_module

    monkeypatch.setattr(core_module, "PASS_PLACE_MAX", 4)
    monkeypatch.setattr(core_module, "LAUNCHED_MAX", 4)
    core, agents = make(cores=2, depth=4)
    core.submit([spec(f"j{i}") for i in range(20)], agents.tick())
    for _ in range(4):
        agents.step()  # 2 on the free cores, then standbys, 4 a pass at most
    assert len(core.standbys.behind) == 8 and core.task_counts[State.SCHEDULED] == 8
    core.node_joined(NodeInfo("n1", 2, ()), agents.tick())
    out = agents.step()
    assert [launch.node for ls in out.launches.values() for launch in ls][:2] == ["n1", "n1"]
    assert core.launched() == 0  # both started at once (agents.step), the standbys aside
    core.check()


def test_standbys_stop_at_their_limit() -> None:
    core, agents = make(cores=2, depth=4)
    core.standbys.limit = 3
    core.submit([spec(f"j{i}") for i in range(20)], agents.tick())
    agents.step()
    assert len(core.standbys.behind) == 3
    agents.exit(core.registry.jobs["j0"].tasks[None].id)  # its first standby starts: room for one more
    agents.step()
    assert len(core.standbys.behind) == 3
    core.check()


def test_tasks_of_a_cut_off_node_get_no_standby_and_are_not_walked_again_until_it_is_back() -> None:
    core, agents = make(cores=2, nodes=2)
    core.submit([spec(f"j{i}") for i in range(4)], agents.tick())
    agents.step()
    on = {n: sorted(t.id for t in core.running.values() if t.allocation[0].node == n) for n in ("n0", "n1")}
    core.node_disconnected("n0", agents.tick())
    core.submit([spec("a"), spec("b"), spec("c")], agents.tick())
    out = agents.step()
    assert {launch.node for ls in out.launches.values() for launch in ls} == {"n1"}  # a and b wait on n1's tasks
    assert sorted(core.standbys.parked["n0"]) == on["n0"]  # met once, set aside
    assert all(t.allocation[0].node != "n0" for d in core.standbys.heads.values() for t in d.values())
    core.node_joined(NodeInfo("n0", 2, ()), agents.tick(), campaign="c", running=on["n0"])
    assert "n0" not in core.standbys.parked
    out = agents.step()
    assert names(out) == ["c"] and [launch.node for ls in out.launches.values() for launch in ls] == ["n0"]
    core.check()


def test_a_withdraw_that_crosses_the_start_changes_nothing() -> None:
    core, agents = make(cores=1)
    core.submit([spec("a"), spec("b")], agents.tick())
    agents.step()
    b = core.registry.jobs["b"].tasks[None]
    agents.exit(core.registry.jobs["a"].tasks[None].id)  # b started on the agent
    core.task_withdrawn(b.id, agents.tick())  # a late answer to a withdraw: ignored
    assert core.registry.jobs["b"].state == State.EXECUTING and b.id in core.running


def test_a_withdrawn_standby_of_a_job_being_canceled_ends_canceled() -> None:
    core, agents = make(cores=1)
    core.submit([spec("a"), spec("b")], agents.tick())
    agents.step()
    b = core.registry.jobs["b"].tasks[None]
    core.cancel(["b"], agents.tick())
    core.task_withdrawn(b.id, agents.tick())
    assert core.registry.jobs["b"].state == State.CANCELED
    assert core.pool.free_cores == 0  # "a" still holds the core


def test_node_lost_with_standbys_queues_both_again_and_frees_nothing_twice() -> None:
    core, agents = make(cores=2, nodes=2)
    core.submit([spec(f"j{i}", retries=1) for i in range(8)], agents.tick())
    agents.step()
    assert len(core.standbys.behind) == 4
    core.node_left("n0", agents.tick())
    for tid in [t for t, launch in agents.running.items() if launch.node == "n0"]:
        agents.running.pop(tid)
    agents.held = deque(launch for launch in agents.held if launch.node != "n0")
    agents.busy = {k: v for k, v in agents.busy.items() if k[0] != "n0"}
    assert core.pool.total_cores == 2 and core.pool.free_cores == 0
    assert all(t.allocation[0].node == "n1" for t in core.running.values())
    for _ in range(50):
        agents.step()
        if not agents.running:
            break
        for tid in list(agents.running):
            agents.exit(tid)
    assert all(j.state == State.SUCCEED for j in core.registry)
    assert core.pool.free_cores == 2


def test_an_agent_back_without_its_standby_gets_it_queued_again() -> None:
    core, agents = make(cores=1)
    core.submit([spec("a"), spec("b")], agents.tick())
    agents.step()
    a, b = core.registry.jobs["a"].tasks[None], core.registry.jobs["b"].tasks[None]
    core.node_disconnected("n0", agents.tick())
    core.node_joined(NodeInfo("n0", 1, ()), agents.tick(), campaign="c", running=[a.id])
    assert core.registry.jobs["a"].state == State.EXECUTING
    assert b.id not in core.running and core.registry.jobs["b"].state != State.EXECUTING
    agents.held.clear()
    agents.exit(a.id)
    out = agents.step()
    assert names(out) == ["b"]
    assert core.pool.free_cores == 0


def test_without_prefetch_nothing_waits_on_a_busy_core() -> None:
    core = Core(expect=Expectation(1), now=1000.0)
    core.node_joined(NodeInfo("n0", 2, ()), 1000.0)
    core.submit([spec(f"j{i}") for i in range(5)], 1001.0)
    out = core.step(1002.0)
    assert names(out) == ["j0", "j1"]


def test_placement_says_where_each_task_stands() -> None:
    """Core.placement: running, standby, withdrawing, cut off, and none once ended."""
    from pj.master.model import Placement

    core = Core(now=1000.0, prefetch_on=True, campaign="c1")
    core.node_joined(NodeInfo("n0", 1), 1000.0)
    core.submit([spec("a"), spec("b")], 1000.0)
    out = core.step(1000.1)
    a, b = sorted(out.placed, key=lambda t: t.id)
    core.task_started(a.id, 1000.1)
    assert core.placement(a) == Placement.RUNNING and core.placement(b) == Placement.STANDBY
    core.node_disconnected("n0", 1000.2)
    assert core.placement(a) == core.placement(b) == Placement.CUT_OFF
    core.node_joined(core.pool.by_name["n0"].info, 1000.3, core.campaign, running=[a.id])  # the same agent
    assert core.placement(a) == Placement.RUNNING and core.placement(b) in (Placement.STANDBY, Placement.NONE)
    core.task_exited(a.id, 0, "", 1000.4)
    core.step(1000.4)
    assert core.placement(a) == Placement.NONE


def test_call_args_match_pycall() -> None:
    """Standbys go deeper behind function calls: prefetch knows a call's command line as pycall makes it."""
    from pj.common import pycall
    from pj.master import prefetch

    args = pycall.call_args("python", pycall.CallArgs("/d", "b1", (0, 1), (1, 2), "r", 10))
    assert tuple(args[:3]) == prefetch.CALL_ARGS and len(args) == 9
    assert pycall.is_call(["python", *args])
