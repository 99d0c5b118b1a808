"""The agent's pure core (pj.agent.state), driven with a fake clock: no processes, no I/O."""

from __future__ import annotations

import ast
import signal
from pathlib import Path

import pytest

from pj.agent import state as st
from pj.agent.state import (
    AgentState,
    CancelTask,
    Drained,
    Exited,
    IllegalTransition,
    LaunchTask,
    Phase,
    ReportExited,
    ReportStarted,
    Shutdown,
    Signal,
    Spawn,
    Spawned,
    SpawnFailed,
    TaskSpec,
    Tick,
    Warn,
)

pytestmark = pytest.mark.timeout(10)

TERM = int(signal.SIGTERM)
KILL = int(signal.SIGKILL)
T0 = 1_000.0


def spec(task_id: int, walltime_s: float = 0.0) -> TaskSpec:
    return TaskSpec(task_id, ("/bin/true",), walltime_s=walltime_s)


def started(core: AgentState, task_id: int, pid: int, now: float = T0, walltime_s: float = 0.0) -> None:
    assert core.handle(LaunchTask(spec(task_id, walltime_s)), now) == [Spawn(spec(task_id, walltime_s))]
    assert core.handle(Spawned(task_id, pid), now) == [ReportStarted(task_id, pid, now)]


def test_launch_spawn_exit_report() -> None:
    core = AgentState()
    started(core, 1, 100)
    assert 1 in core and len(core) == 1
    out = core.handle(Exited(100, 0, 0.5, 0.25, 2048), T0 + 3)
    assert out == [ReportExited(1, 0, T0 + 3, "", 0.5, 0.25, 2048), Signal(1, 100, KILL)]
    assert len(core) == 0 and core.next_deadline() is None


def test_spawn_failure_reports_an_exit_without_a_start() -> None:
    core = AgentState()
    core.handle(LaunchTask(spec(1)), T0)
    out = core.handle(SpawnFailed(1, 127, "cannot execute /nope: No such file or directory"), T0)
    assert out == [ReportExited(1, 127, T0, "cannot execute /nope: No such file or directory")]
    assert len(core) == 0


def test_cancel_terms_then_kills_after_the_grace() -> None:
    core = AgentState(kill_grace=5.0)
    started(core, 7, 700)
    assert core.handle(CancelTask(7), T0 + 1) == [Signal(7, 700, TERM, strays=True)]
    view = next(core.tasks())
    assert view.phase is Phase.TERMINATING and view.stop_at == T0 + 1 and view.term_at == T0 + 1
    assert core.handle(CancelTask(7), T0 + 2) == []  # one TERM is enough
    assert core.next_deadline() == T0 + 6
    assert core.handle(Tick(), T0 + 5.9) == []
    assert core.handle(Tick(), T0 + 6) == [Signal(7, 700, KILL, strays=True)]
    assert core.handle(Tick(), T0 + 60) == []  # no second KILL
    out = core.handle(Exited(700, -KILL), T0 + 6.1)
    assert out[0] == ReportExited(7, -KILL, T0 + 6.1)  # canceled: no error text
    assert len(core) == 0


def test_a_task_that_obeys_term_is_not_killed() -> None:
    core = AgentState(kill_grace=5.0)
    started(core, 7, 700)
    core.handle(CancelTask(7), T0)
    assert core.handle(Exited(700, -TERM), T0 + 1)[0] == ReportExited(7, -TERM, T0 + 1)
    assert core.next_deadline() is None
    assert core.handle(Tick(), T0 + 10) == []


def test_cancel_of_unknown_or_finished_tasks_is_ignored() -> None:
    core = AgentState()
    assert core.handle(CancelTask(12345), T0) == []
    started(core, 1, 100)
    core.handle(Exited(100, 0), T0)
    assert core.handle(CancelTask(1), T0) == []


def test_cancel_while_spawning_terms_as_soon_as_the_pid_is_known() -> None:
    core = AgentState()
    core.handle(LaunchTask(spec(3)), T0)
    assert core.handle(CancelTask(3), T0) == []
    assert core.handle(Spawned(3, 300), T0) == [ReportStarted(3, 300, T0), Signal(3, 300, TERM, strays=True)]


def test_walltime_terms_kills_and_says_why() -> None:
    core = AgentState(kill_grace=2.0)
    started(core, 4, 400, walltime_s=10)
    assert core.next_deadline() == T0 + 10
    assert core.handle(Tick(), T0 + 9.99) == []
    assert core.handle(Tick(), T0 + 10) == [Signal(4, 400, TERM, strays=True)]
    assert next(core.tasks()).stop_reason is st.StopReason.WALLTIME
    assert core.handle(Tick(), T0 + 12) == [Signal(4, 400, KILL, strays=True)]
    out = core.handle(Exited(400, -KILL, 9.0, 0.5, 10), T0 + 12.1)
    assert out[0] == ReportExited(
        4, -KILL, T0 + 12.1, "walltime 10s exceeded: killed (SIGTERM, then SIGKILL after 2s)", 9.0, 0.5, 10,
        tail=True,  # a walltime kill FAILS: its stderr tail is wanted
    )


def test_walltime_exit_is_never_a_success() -> None:
    core = AgentState()
    started(core, 4, 400, walltime_s=1.5)
    core.handle(Tick(), T0 + 2)
    out = core.handle(Exited(400, 0), T0 + 2.5)  # it trapped SIGTERM and exited 0
    assert out[0] == ReportExited(
        4, -TERM, T0 + 2.5, "walltime 1.5s exceeded: SIGTERM sent, then it exited with code 0", tail=True
    )


def test_walltime_of_a_task_that_ended_is_forgotten() -> None:
    core = AgentState()
    started(core, 4, 400, walltime_s=10)
    core.handle(Exited(400, 0), T0 + 1)
    assert core.next_deadline() is None
    assert core.handle(Tick(), T0 + 100) == []


def test_timers_fire_in_deadline_order() -> None:
    core = AgentState(kill_grace=1.0)
    started(core, 1, 101, walltime_s=30)
    started(core, 2, 102, walltime_s=10)
    started(core, 3, 103, walltime_s=20)
    assert core.next_deadline() == T0 + 10
    assert core.handle(Tick(), T0 + 25) == [
        Signal(2, 102, TERM, strays=True),
        Signal(3, 103, TERM, strays=True),
    ]
    assert core.next_deadline() == T0 + 26  # their kill deadline (from the tick that stopped them)


def test_shutdown_stops_everything_then_drains() -> None:
    core = AgentState(kill_grace=5.0)
    started(core, 1, 101)
    started(core, 2, 102)
    out = core.handle(Shutdown("done"), T0)
    assert out == [Signal(1, 101, TERM, strays=True), Signal(2, 102, TERM, strays=True)]
    assert core.handle(Shutdown("again"), T0) == []
    assert core.handle(LaunchTask(spec(3)), T0) == [
        ReportExited(3, 127, T0, "not started: the agent is shutting down")
    ]
    assert core.handle(Exited(101, -TERM), T0 + 1) == [
        ReportExited(1, -TERM, T0 + 1),
        Signal(1, 101, KILL, True, True),
    ]
    assert core.handle(Tick(), T0 + 5) == [Signal(2, 102, KILL, strays=True)]
    out = core.handle(Exited(102, -KILL), T0 + 5.1)
    assert out == [ReportExited(2, -KILL, T0 + 5.1), Signal(2, 102, KILL, True, True), Drained()]
    assert core.handle(Tick(), T0 + 9) == []  # Drained comes once


def test_shutdown_with_nothing_running_drains_at_once() -> None:
    assert AgentState().handle(Shutdown(), T0) == [Drained()]


def test_shutdown_while_spawning_terms_the_new_task() -> None:
    core = AgentState()
    core.handle(LaunchTask(spec(1)), T0)
    assert core.handle(Shutdown(), T0) == []
    assert core.handle(Spawned(1, 100), T0) == [ReportStarted(1, 100, T0), Signal(1, 100, TERM, strays=True)]
    assert core.handle(Exited(100, -TERM), T0)[-1] == Drained()


def test_duplicate_launch_is_ignored_with_a_warning() -> None:
    core = AgentState()
    started(core, 1, 100)
    out = core.handle(LaunchTask(spec(1)), T0)
    assert len(out) == 1 and isinstance(out[0], Warn) and out[0].task_id == 1


def test_exit_of_an_unknown_pid_is_ignored() -> None:
    assert AgentState().handle(Exited(4242, 0), T0) == []


def test_illegal_transitions_raise() -> None:
    core = AgentState()
    started(core, 1, 100)
    with pytest.raises(IllegalTransition):
        core.handle(Spawned(1, 101), T0)


def test_unknown_events_raise() -> None:
    with pytest.raises(TypeError):
        AgentState().handle(object(), T0)  # type: ignore[arg-type]


def test_negative_grace_is_refused() -> None:
    with pytest.raises(ValueError):
        AgentState(kill_grace=-1)


def test_zero_grace_kills_on_the_next_tick() -> None:
    core = AgentState(kill_grace=0.0)
    started(core, 1, 100)
    assert core.handle(CancelTask(1), T0) == [Signal(1, 100, TERM, strays=True)]
    assert core.next_deadline() == T0
    assert core.handle(Tick(), T0) == [Signal(1, 100, KILL, strays=True)]


def test_events_and_actions_are_frozen() -> None:
    with pytest.raises(AttributeError):
        Spawned(1, 2).pid = 3  # type: ignore[misc]
    with pytest.raises(AttributeError):
        Signal(1, 2, 3).signum = 9  # type: ignore[misc]


def test_the_core_does_no_io() -> None:
    tree = ast.parse(Path(st.__file__).read_text())
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module != "pj.common.durations":  # pure text <-> seconds (math, re)
                imported.add(node.module.split(".")[0])
    forbidden = {"os", "grpc", "asyncio", "subprocess", "time", "socket", "threading", "selectors", "pj"}
    assert not imported & forbidden, imported & forbidden


def test_a_start_time_known_before_the_event_is_reported_and_times_the_walltime() -> None:
    s = AgentState(kill_grace=1.0)
    s.handle(LaunchTask(TaskSpec(1, ("x",), walltime_s=10.0)), 100.0)
    out = s.handle(Spawned(1, 4242, time=99.5), 100.2)  # the spawner thread's clock, taken earlier
    assert out == [ReportStarted(1, 4242, 99.5)]
    assert s.next_deadline() == 109.5
    s.handle(LaunchTask(TaskSpec(2, ("x",))), 100.0)
    assert s.handle(Spawned(2, 4243, time=105.0), 100.3) == [ReportStarted(2, 4243, 100.3)]  # never ahead
