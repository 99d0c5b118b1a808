"""Held launches in the agent's pure core (the master's prefetch): a launch whose cores or GPUs are
in use waits, then starts when they free, first come first served per core/GPU."""

from __future__ import annotations

import ast
import signal
from pathlib import Path

import pytest

from pj.agent import holds as holds_module
from pj.agent.holds import Holds
from pj.agent.state import (
    CANCELED_WAITING,
    SHUTDOWN_WAITING,
    Action,
    AgentState,
    CancelTask,
    Drained,
    Exited,
    LaunchTask,
    LinkLost,
    Phase,
    ReportExited,
    ReportStarted,
    ReportWithdrawn,
    Shutdown,
    Signal,
    Spawn,
    Spawned,
    SpawnFailed,
    TaskSpec,
    Tick,
    WithdrawTask,
)

pytestmark = pytest.mark.timeout(10)

TERM = int(signal.SIGTERM)
KILL = int(signal.SIGKILL)
T0 = 1_000.0


def spec(
    task_id: int, cores: tuple[int, ...] = (), gpus: tuple[str, ...] = (), walltime_s: float = 0.0
) -> TaskSpec:
    return TaskSpec(task_id, ("/bin/true",), cores=cores, gpus=gpus, walltime_s=walltime_s)


def spawned_ids(out: list[Action]) -> list[int]:
    return [a.spec.task_id for a in out if isinstance(a, Spawn)]


def run(core: AgentState, s: TaskSpec, pid: int, now: float = T0) -> None:
    """Launch ``s`` and see it start at once."""
    assert core.handle(LaunchTask(s), now) == [Spawn(s)]
    assert core.handle(Spawned(s.task_id, pid), now) == [ReportStarted(s.task_id, pid, now)]


def held(core: AgentState, s: TaskSpec) -> None:
    """Launch ``s`` and see it held: nothing spawned, nothing reported."""
    assert core.handle(LaunchTask(s), T0) == []
    assert phase(core, s.task_id) is Phase.WAITING


def phase(core: AgentState, task_id: int) -> Phase | None:
    return next((t.phase for t in core.tasks() if t.task_id == task_id), None)


def end(core: AgentState, pid: int, now: float = T0 + 1) -> list[Action]:
    return core.handle(Exited(pid, 0), now)


def test_a_launch_on_a_busy_core_waits_until_the_core_frees() -> None:
    core = AgentState()
    run(core, spec(1, (0, 1)), 100)
    held(core, spec(2, (1,)))
    run(core, spec(3, (2,)), 300)  # other cores: not held
    assert core.waiting == 1 and len(core) == 3 and 2 in core
    assert end(core, 300) == [ReportExited(3, 0, T0 + 1), Signal(3, 300, KILL)]  # core 2: nobody waits
    out = end(core, 100)
    assert out == [ReportExited(1, 0, T0 + 1), Signal(1, 100, KILL), Spawn(spec(2, (1,)))]
    assert phase(core, 2) is Phase.SPAWNING and core.waiting == 0
    # Its start time (and so its walltime) counts from its own spawn.
    assert core.handle(Spawned(2, 200), T0 + 2) == [ReportStarted(2, 200, T0 + 2)]


def test_a_launch_on_a_busy_gpu_waits() -> None:
    core = AgentState()
    run(core, spec(1, (0,), ("0",)), 100)
    held(core, spec(2, (1,), ("0",)))
    run(core, spec(3, (2,), ("1",)), 300)
    assert spawned_ids(end(core, 100)) == [2]


def test_a_core_number_and_a_gpu_id_are_different_things() -> None:
    core = AgentState()
    run(core, spec(1, (0,)), 100)
    run(core, spec(2, (1,), ("0",)), 200)


def test_a_launch_without_cores_or_gpus_never_waits() -> None:
    core = AgentState()
    run(core, spec(1, (0,)), 100)
    held(core, spec(2, (0,)))
    run(core, spec(3), 300)
    run(core, spec(4), 400)


def test_several_launches_for_one_core_start_in_arrival_order() -> None:
    core = AgentState()
    run(core, spec(1, (0,)), 100)
    for tid in (2, 3, 4):
        held(core, spec(tid, (0,)))
    pid = 100
    for tid in (2, 3, 4):
        assert spawned_ids(end(core, pid)) == [tid]  # one at a time: each holds the core
        pid = tid * 100
        core.handle(Spawned(tid, pid), T0 + 1)
        assert [t.task_id for t in core.tasks() if t.phase is Phase.WAITING] == list(range(tid + 1, 5))
    assert spawned_ids(end(core, 400)) == []
    assert len(core) == 0


def test_a_held_task_on_two_cores_waits_for_both() -> None:
    core = AgentState()
    run(core, spec(1, (0,)), 100)
    run(core, spec(2, (1,)), 200)
    held(core, spec(3, (0, 1)))
    assert spawned_ids(end(core, 100)) == []
    assert phase(core, 3) is Phase.WAITING
    assert spawned_ids(end(core, 200)) == [3]


def test_no_overtaking_on_a_shared_core() -> None:
    core = AgentState()
    run(core, spec(1, (0,)), 100)
    run(core, spec(2, (1,)), 200)
    held(core, spec(3, (0, 1)))  # waits for 0 and 1
    held(core, spec(4, (1,)))  # came later: must not take core 1 before task 3
    assert spawned_ids(end(core, 200)) == []  # core 1 is free, but task 3 goes first there
    assert phase(core, 4) is Phase.WAITING
    assert spawned_ids(end(core, 100)) == [3]
    core.handle(Spawned(3, 300), T0 + 1)
    assert spawned_ids(end(core, 300)) == [4]


def test_a_launch_waits_behind_a_held_one_even_on_a_free_core() -> None:
    core = AgentState()
    run(core, spec(1, (0,)), 100)
    held(core, spec(2, (0, 1)))  # core 1 is free, but 2 waits for it too (after core 0)
    held(core, spec(3, (1,)))  # so 3 may not take core 1 first
    assert spawned_ids(end(core, 100)) == [2]
    core.handle(Spawned(2, 200), T0 + 1)
    assert spawned_ids(end(core, 200)) == [3]


def test_tasks_freed_by_one_end_start_together_in_arrival_order() -> None:
    core = AgentState()
    run(core, spec(1, (0, 1, 2)), 100)
    held(core, spec(2, (2,)))
    held(core, spec(3, (0,)))
    held(core, spec(4, (1,)))
    held(core, spec(5, (0,)))
    assert spawned_ids(end(core, 100)) == [2, 3, 4]


def test_a_failed_spawn_frees_its_cores() -> None:
    core = AgentState()
    assert core.handle(LaunchTask(spec(1, (0,))), T0) == [Spawn(spec(1, (0,)))]
    held(core, spec(2, (0,)))
    out = core.handle(SpawnFailed(1, 127, "cannot start"), T0)
    assert out == [ReportExited(1, 127, T0, "cannot start"), Spawn(spec(2, (0,)))]


def test_a_task_being_stopped_still_holds_its_cores() -> None:
    core = AgentState(kill_grace=5.0)
    run(core, spec(1, (0,), walltime_s=10), 100)
    held(core, spec(2, (0,)))
    assert core.handle(Tick(), T0 + 10) == [Signal(1, 100, TERM, strays=True)]
    assert core.handle(Tick(), T0 + 15) == [Signal(1, 100, KILL, strays=True)]
    assert phase(core, 2) is Phase.WAITING
    out = core.handle(Exited(100, -KILL), T0 + 15.1)
    assert out[-1] == Spawn(spec(2, (0,))) and isinstance(out[0], ReportExited)


def test_cancel_of_a_held_task_ends_it_at_once() -> None:
    core = AgentState()
    run(core, spec(1, (0,)), 100)
    held(core, spec(2, (0,)))
    held(core, spec(3, (0,)))
    assert core.handle(CancelTask(2), T0 + 1) == [ReportExited(2, -TERM, T0 + 1, CANCELED_WAITING)]
    assert CANCELED_WAITING == "canceled before it started (it was waiting for its cores)"
    assert 2 not in core and core.waiting == 1
    assert core.handle(CancelTask(2), T0 + 2) == []  # once
    assert spawned_ids(end(core, 100)) == [3]  # 2 is not spawned


def test_cancel_of_the_first_held_task_lets_the_next_start() -> None:
    core = AgentState()
    run(core, spec(1, (0,)), 100)
    held(core, spec(2, (0, 1)))  # first in line for core 1 (free) and core 0 (busy)
    held(core, spec(3, (1,)))
    out = core.handle(CancelTask(2), T0 + 1)
    assert out == [ReportExited(2, -TERM, T0 + 1, CANCELED_WAITING), Spawn(spec(3, (1,)))]


def test_withdraw_of_a_held_task_reports_it_withdrawn() -> None:
    core = AgentState()
    run(core, spec(1, (0,)), 100)
    held(core, spec(2, (0,)))
    held(core, spec(3, (0,)))
    assert core.handle(WithdrawTask(2), T0) == [ReportWithdrawn(2)]
    assert 2 not in core
    assert core.handle(WithdrawTask(2), T0) == []  # once
    out = end(core, 100)
    assert spawned_ids(out) == [3]
    assert not [a for a in out if isinstance(a, ReportExited) and a.task_id == 2]  # never reported exited


def test_withdraw_of_a_started_or_unknown_task_does_nothing() -> None:
    core = AgentState()
    run(core, spec(1, (0,)), 100)
    assert core.handle(WithdrawTask(1), T0) == []
    assert phase(core, 1) is Phase.RUNNING
    assert core.handle(LaunchTask(spec(2, (1,))), T0) == [Spawn(spec(2, (1,)))]
    assert core.handle(WithdrawTask(2), T0) == []  # being spawned: started already
    assert phase(core, 2) is Phase.SPAWNING
    assert core.handle(WithdrawTask(99), T0) == []
    assert end(core, 100) == [ReportExited(1, 0, T0 + 1), Signal(1, 100, KILL)]


def test_shutdown_ends_held_tasks_and_drains_when_the_live_ones_end() -> None:
    core = AgentState()
    run(core, spec(1, (0,)), 100)
    held(core, spec(2, (0,)))
    held(core, spec(3, (0, 1)))
    out = core.handle(Shutdown("done"), T0 + 1)
    assert out == [
        ReportExited(2, -TERM, T0 + 1, SHUTDOWN_WAITING),
        ReportExited(3, -TERM, T0 + 1, SHUTDOWN_WAITING),
        Signal(1, 100, TERM, strays=True),
    ]
    assert SHUTDOWN_WAITING == "the agent shut down before it started"
    assert core.waiting == 0 and len(core) == 1
    out = core.handle(Exited(100, -TERM), T0 + 2)
    assert spawned_ids(out) == [] and out[-1] == Drained()


def test_shutdown_with_only_held_tasks_drains_at_once() -> None:
    core = AgentState()
    assert core.handle(LaunchTask(spec(1, (0,))), T0) == [Spawn(spec(1, (0,)))]
    held(core, spec(2, (0,)))
    out = core.handle(Shutdown(), T0)
    assert out == [ReportExited(2, -TERM, T0, SHUTDOWN_WAITING)]  # task 1 is still being spawned
    out = core.handle(Spawned(1, 100), T0)
    assert out == [ReportStarted(1, 100, T0), Signal(1, 100, TERM, strays=True)]
    assert core.handle(Exited(100, -TERM), T0)[-1] == Drained()


def test_a_lost_link_drops_held_tasks_without_a_word() -> None:
    core = AgentState()
    run(core, spec(1, (0,)), 100)
    assert core.handle(LaunchTask(spec(2, (1,))), T0) == [Spawn(spec(2, (1,)))]  # being spawned
    held(core, spec(3, (0,)))
    held(core, spec(4, (1,)))
    assert core.running_ids() == [1, 2]  # what a reconnect's Register names
    assert core.handle(LinkLost(), T0) == []
    assert core.waiting == 0 and 3 not in core and 4 not in core
    assert core.running_ids() == [1, 2]
    # The cores they waited for start nothing; new launches on them wait only for what runs.
    assert end(core, 100) == [ReportExited(1, 0, T0 + 1), Signal(1, 100, KILL)]
    run(core, spec(5, (0,)), 500)
    held(core, spec(6, (1,)))
    assert core.handle(CancelTask(3), T0) == [] and core.handle(WithdrawTask(4), T0) == []


def test_a_duplicate_launch_of_a_held_task_is_ignored() -> None:
    core = AgentState()
    run(core, spec(1, (0,)), 100)
    held(core, spec(2, (0,)))
    out = core.handle(LaunchTask(spec(2, (0,))), T0)
    assert len(out) == 1 and out[0].task_id == 2  # a Warn
    assert spawned_ids(end(core, 100)) == [2]


# ---------------------------------------------------------------- the queues alone


def test_queues_with_many_cores_and_dropped_entries() -> None:
    h = Holds()
    assert h.take(1, tuple(range(128)), ())
    for tid in range(2, 130):  # the next task for each core
        assert not h.take(tid, (tid - 2,), ())
    assert not h.take(500, (5, 6), ())  # behind 7 and 8
    assert h.drop(7) == [] and h.drop(8) == []  # core 5, 6 still busy
    assert h.drop(12345) == []
    assert h.waiting() == [t for t in range(2, 130) if t not in (7, 8)] + [500]
    started = h.release(tuple(range(128)), ())
    assert started == [t for t in range(2, 130) if t not in (7, 8)] + [500]  # 500 heads 5 and 6 now
    assert len(h) == 0 and h.busy == set(range(128))
    assert not h.take(600, (6,), ())  # 500 holds core 6
    assert h.release((5, 6), ()) == [600]


def test_queues_start_a_task_when_its_last_core_frees() -> None:
    h = Holds()
    assert h.take(1, (0,), ())
    assert h.take(2, (1,), ("g",))
    assert not h.take(3, (0, 1), ("g",))
    assert h.release((0,), ()) == []
    assert h.release((1,), ("g",)) == [3]
    assert h.busy == {0, 1, "g"}
    assert h.clear() == [] and h.busy == {0, 1, "g"}


def test_the_queues_do_no_io() -> None:
    tree = ast.parse(Path(holds_module.__file__).read_text())
    imported = {
        a.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names
    } | {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
    }
    assert imported <= {"__future__", "collections"}, imported
