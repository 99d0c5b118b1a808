"""Held launches with real processes: a launch for a core still in use starts when that core's task
has ended (the master's prefetch), in the loop's thread and on spawner threads; cancel, withdraw,
a lost link and --dry-run."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from pj.agent.hostfiles import Hostfiles
from pj.agent.launcher import DryLauncher, Launcher
from pj.agent.resources import detect
from pj.agent.runner import Runner
from pj.agent.signals import SignalHub
from pj.agent.state import CANCELED_WAITING, SHUTDOWN_WAITING, AgentState, Phase, TaskSpec, WithdrawTask

pytestmark = pytest.mark.timeout(60)

MODES = pytest.mark.parametrize("threads", [0, 1, 2], ids=["loop", "thread", "threads"])
NOW_NS = 'date +%s%N > "$0"'  # the shell's $0: the file to write


async def _until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def _with_runner(threads: int, body: Callable[[Runner], Awaitable[None]], dry: bool = False) -> Runner:
    """Run ``body`` with a runner wired as pj-agent wires it; stop every task at the end."""

    async def main() -> Runner:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        launcher = (
            DryLauncher(detect(), env, Hostfiles("n1"))
            if dry
            else Launcher(detect(), base_env=env, spawn_threads=threads)
        )
        runner = Runner(AgentState(kill_grace=1.0), launcher)
        loop = asyncio.get_running_loop()
        hub = SignalHub(loop)
        try:
            hub.watch(signal.SIGCHLD, runner.on_sigchld)
            runner.attach(loop)
            await body(runner)
            runner.shutdown("test over")
            await asyncio.wait_for(runner.wait_drained(), 10)
        finally:
            runner.detach()
            hub.close()
            launcher.close()
        return runner

    return asyncio.run(main())


def _exits(runner: Runner) -> dict[int, tuple[int, str]]:
    got = [(r.task_id, (r.exit_code, r.error)) for r in runner.outbox.exited]
    assert len(got) == len({t for t, _ in got}), f"a task was reported twice: {got}"
    return dict(got)


@MODES
def test_a_launch_for_a_busy_core_starts_after_that_core_is_free(tmp_path: Path, threads: int) -> None:
    first_end, second_start = tmp_path / "first-end", tmp_path / "second-start"
    first = TaskSpec(1, ("/bin/sh", "-c", f"sleep 0.3; {NOW_NS}", str(first_end)), cores=(0,))
    second = TaskSpec(2, ("/bin/sh", "-c", NOW_NS, str(second_start)), cores=(0,))
    other = TaskSpec(3, ("/bin/true",), cores=(1,))  # another core: never held

    async def body(runner: Runner) -> None:
        runner.launch([first, second, other])
        assert [t.phase for t in runner.state.tasks() if t.task_id == 2] == [Phase.WAITING]
        await _until(lambda: len(runner.outbox.exited) == 3)

    runner = _with_runner(threads, body)
    assert _exits(runner) == {1: (0, ""), 2: (0, ""), 3: (0, "")}
    assert sorted(r.task_id for r in runner.outbox.started) == [1, 2, 3]  # each once
    assert int(second_start.read_text()) >= int(first_end.read_text())
    started = {r.task_id: r.time for r in runner.outbox.started}
    ended = {r.task_id: r.time for r in runner.outbox.exited}
    assert started[2] >= ended[1]  # its start (and walltime) counts from its own spawn


@MODES
def test_many_launches_per_core_run_one_at_a_time_in_order(tmp_path: Path, threads: int) -> None:
    log = tmp_path / "order"
    cores = 2
    specs = [
        TaskSpec(
            i,
            ("/bin/sh", "-c", f'echo {i} >> "$0"', str(log.with_suffix(f".{i % cores}"))),
            cores=(i % cores,),
        )
        for i in range(1, 41)
    ]

    async def body(runner: Runner) -> None:
        runner.launch(specs[:20])
        runner.launch(specs[20:])  # a second Orders message: still behind the first ones
        await _until(lambda: len(runner.outbox.exited) == len(specs))

    runner = _with_runner(threads, body)
    assert _exits(runner) == {s.task_id: (0, "") for s in specs}
    for c in range(cores):
        lines = log.with_suffix(f".{c}").read_text().split()
        assert lines == [str(i) for i in range(1, 41) if i % cores == c]


@MODES
def test_cancel_and_withdraw_of_held_launches(tmp_path: Path, threads: int) -> None:
    ran = tmp_path / "ran"
    touch = ("/bin/sh", "-c", 'echo "$1" >> "$0"', str(ran))
    specs = [
        TaskSpec(1, ("sleep", "30"), cores=(0,)),
        TaskSpec(2, (*touch, "2"), cores=(0,)),
        TaskSpec(3, (*touch, "3"), cores=(0,)),
        TaskSpec(4, (*touch, "4"), cores=(0,)),
    ]

    async def body(runner: Runner) -> None:
        runner.launch(specs)
        await _until(lambda: len(runner.outbox.started) == 1)
        runner.cancel([2])
        runner.withdraw([WithdrawTask(3), WithdrawTask(1)])  # 1 runs: left alone
        assert runner.outbox.ready.is_set()  # both go up at once
        assert _exits(runner) == {2: (-signal.SIGTERM, CANCELED_WAITING)}
        assert runner.outbox.withdrawn == [3]
        assert runner.state.running_ids() == [1] and runner.state.waiting == 1
        runner.cancel([1])
        await _until(lambda: len(runner.outbox.exited) == 3)

    runner = _with_runner(threads, body)
    assert _exits(runner) == {1: (-signal.SIGTERM, ""), 2: (-signal.SIGTERM, CANCELED_WAITING), 4: (0, "")}
    assert runner.outbox.withdrawn == [3]
    assert sorted(r.task_id for r in runner.outbox.started) == [1, 4]
    assert ran.read_text().split() == ["4"]


@MODES
def test_shutdown_reports_held_launches_and_drains(tmp_path: Path, threads: int) -> None:
    async def body(runner: Runner) -> None:
        runner.launch([TaskSpec(1, ("sleep", "30"), cores=(0,)), TaskSpec(2, ("/bin/true",), cores=(0,))])
        await _until(lambda: len(runner.outbox.started) == 1)

    runner = _with_runner(threads, body)
    assert _exits(runner) == {1: (-signal.SIGTERM, ""), 2: (-signal.SIGTERM, SHUTDOWN_WAITING)}
    assert [r.task_id for r in runner.outbox.started] == [1]


def test_a_lost_link_drops_held_launches_silently(tmp_path: Path) -> None:
    async def body(runner: Runner) -> None:
        runner.launch(
            [
                TaskSpec(1, ("sleep", "30"), cores=(0,)),
                TaskSpec(2, ("/bin/true",), cores=(0,)),
                TaskSpec(3, ("sleep", "30"), cores=(1,)),
                TaskSpec(4, ("/bin/true",), cores=(1,)),
            ]
        )
        await _until(lambda: len(runner.outbox.started) == 2)
        runner.withdraw([WithdrawTask(4)])
        assert runner.outbox.withdrawn == [4]
        runner.link_lost()
        assert runner.outbox.withdrawn == []  # the Register of a reconnect names neither 2 nor 4
        assert runner.state.running_ids() == [1, 3] and runner.state.waiting == 0
        runner.cancel([1])
        await _until(lambda: 1 in _exits(runner))
        await asyncio.sleep(0.2)  # nothing starts on core 0

    runner = _with_runner(2, body)
    assert _exits(runner) == {1: (-signal.SIGTERM, ""), 3: (-signal.SIGTERM, "")}
    assert sorted(r.task_id for r in runner.outbox.started) == [1, 3]


def test_dry_run_starts_held_launches_as_soon_as_the_earlier_ones_end() -> None:
    async def body(runner: Runner) -> None:
        runner.launch([TaskSpec(i, ("x",), cores=(0,)) for i in range(1, 6)])
        runner.launch([TaskSpec(6, ("x",), cores=(0, 1)), TaskSpec(7, ("x",), gpus=("0",))])
        assert len(runner.state) == 0

    runner = _with_runner(0, body, dry=True)
    assert [r.task_id for r in runner.outbox.started] == list(range(1, 8))
    assert _exits(runner) == {i: (0, "") for i in range(1, 8)}
