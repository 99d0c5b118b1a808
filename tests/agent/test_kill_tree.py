"""Walltime, cancel and shutdown leave no process of a task behind (real processes).

A task's processes that left its process group (``setsid``, a double fork) are found at stop time
by the leader's process tree and by the marks every task carries (PJ_TASK_ID, PJ_AGENT_PID).
"""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from pj.agent.launcher import AGENT_ENV, TASK_ENV, Launcher
from pj.agent.resources import detect
from pj.agent.runner import Runner
from pj.agent.state import AgentState, ReportExited, TaskSpec

from .test_launcher import alive

pytestmark = pytest.mark.timeout(20)

# A plain background child, a grandchild in its own session (setsid) whose parent is the task's
# shell, and an orphan in its own session (a double fork: its parent subshell exits at once).
ESCAPES = (
    "sleep 60 & echo $! > child.pid; "
    "setsid sh -c 'echo $$ > grandchild.pid; exec sleep 60' & "
    "(setsid sh -c 'echo $$ > orphan.pid; exec sleep 60' &); "
)
PIDFILES = ("child.pid", "grandchild.pid", "orphan.pid")


def aio(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(fn(*args, **kwargs))

    return run


@pytest.fixture(params=[0, 2], ids=["loop", "threads"])  # spawning in the loop's thread, or on spawner threads
def runner(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runner]:
    monkeypatch.chdir(tmp_path)
    launcher = Launcher(
        detect(), base_env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, spawn_threads=request.param
    )
    r = Runner(AgentState(kill_grace=1.0), launcher)
    yield r
    r.detach()
    launcher.close()
    launcher.reap()


async def _until(runner: Runner, cond: object, timeout: float = 8.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        runner.on_sigchld()  # no SIGCHLD wiring here: poll
        await asyncio.sleep(0.01)


def _exit_of(runner: Runner, task_id: int) -> ReportExited | None:
    return next((e for e in runner.outbox.exited if e.task_id == task_id), None)


async def _pids(wd: Path, runner: Runner) -> list[int]:
    await _until(runner, lambda: all((wd / f).exists() and (wd / f).read_text().strip() for f in PIDFILES))
    pids = [int((wd / f).read_text()) for f in PIDFILES]
    await _until(runner, lambda: all(alive(p) and psutil.Process(p).name() == "sleep" for p in pids))
    return pids



def _assert_gone(pids: list[int]) -> None:
    # Orphans are reaped by init (or a subreaper) soon after SIGKILL: wait a moment for that.
    deadline = time.monotonic() + 3
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.02)
    survivors = [p for p in pids if alive(p)]
    for p in survivors:
        os.kill(p, signal.SIGKILL)
    assert not survivors, f"left behind: {survivors}"


def _spec(task_id: int, tmp_path: Path, script: str, walltime_s: float = 0.0) -> TaskSpec:
    wd = tmp_path / f"t{task_id}"
    return TaskSpec(task_id, ("/bin/sh", "-c", script), wd=str(wd), walltime_s=walltime_s)


@aio
async def test_walltime_kills_every_process_of_the_task(runner: Runner, tmp_path: Path) -> None:
    runner.attach(asyncio.get_running_loop())
    runner.launch([_spec(1, tmp_path, ESCAPES + "wait", walltime_s=1.0)])
    pids = await _pids(tmp_path / "t1", runner)
    await _until(runner, lambda: _exit_of(runner, 1) is not None)
    e = _exit_of(runner, 1)
    assert e is not None and e.exit_code == -signal.SIGTERM
    assert e.error == "walltime 1s exceeded: killed (SIGTERM)"
    _assert_gone(pids)


@aio
async def test_cancel_kills_every_process_of_the_task(runner: Runner, tmp_path: Path) -> None:
    runner.attach(asyncio.get_running_loop())
    runner.launch([_spec(2, tmp_path, ESCAPES + "wait")])
    pids = await _pids(tmp_path / "t2", runner)
    runner.cancel([2])
    await _until(runner, lambda: _exit_of(runner, 2) is not None)
    e = _exit_of(runner, 2)
    assert e is not None and e.exit_code == -signal.SIGTERM and e.error == ""  # the master says CANCELED
    _assert_gone(pids)


@aio
async def test_a_task_that_ignores_sigterm_is_killed_after_the_grace(runner: Runner, tmp_path: Path) -> None:
    runner.attach(asyncio.get_running_loop())
    # The ignored SIGTERM is inherited by every process it starts, the escaped ones included.
    script = "trap '' TERM; " + ESCAPES + "while :; do sleep 0.05; done"
    runner.launch([_spec(3, tmp_path, script, walltime_s=0.5)])
    pids = await _pids(tmp_path / "t3", runner)
    t0 = time.monotonic()
    await _until(runner, lambda: _exit_of(runner, 3) is not None)
    e = _exit_of(runner, 3)
    assert e is not None and e.exit_code == -signal.SIGKILL
    assert e.error == "walltime 0.5s exceeded: killed (SIGTERM, then SIGKILL after 1s)"
    assert time.monotonic() - t0 >= 0.5  # the grace was given
    _assert_gone(pids)


@aio
async def test_shutdown_kills_every_process_of_every_task(runner: Runner, tmp_path: Path) -> None:
    runner.attach(asyncio.get_running_loop())
    runner.launch([_spec(4, tmp_path, ESCAPES + "wait"), _spec(5, tmp_path, ESCAPES + "wait")])
    pids = await _pids(tmp_path / "t4", runner) + await _pids(tmp_path / "t5", runner)
    runner.shutdown("test")
    await _until(runner, runner.drained.is_set)
    _assert_gone(pids)


@aio
async def test_every_task_carries_its_marks(runner: Runner, tmp_path: Path) -> None:
    runner.attach(asyncio.get_running_loop())
    out = tmp_path / "env"
    runner.launch([TaskSpec(6, ("/bin/sh", "-c", f'echo "${TASK_ENV} ${AGENT_ENV}" > {out}'))])
    await _until(runner, lambda: _exit_of(runner, 6) is not None)
    assert out.read_text() == f"6 {os.getpid()}\n"


@aio
async def test_a_normal_end_costs_no_process_scan(
    runner: Runner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pj.agent import strays as strays_mod

    def no_scan(marker: bytes) -> object:
        raise AssertionError("/proc scanned on a normal exit")

    monkeypatch.setattr(strays_mod, "scan_proc", no_scan)
    runner.attach(asyncio.get_running_loop())
    runner.launch([TaskSpec(i, ("/bin/true",)) for i in range(10, 30)])
    await _until(runner, lambda: len(runner.outbox.exited) == 20)
    assert all(e.exit_code == 0 for e in runner.outbox.exited)
