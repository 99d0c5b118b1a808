"""The runner with spawner threads: every task's start and exit is reported exactly once, even when
a child ends before the loop has taken its pid from the spawner thread (its exit is held)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from pj.agent.launcher import Launcher
from pj.agent.resources import detect
from pj.agent.runner import Runner
from pj.agent.signals import SignalHub
from pj.agent.state import AgentState, TaskSpec

pytestmark = pytest.mark.timeout(60)


async def _run(tmp_path: Path, specs: list[TaskSpec], threads: int) -> Runner:
    launcher = Launcher(detect(), base_env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, spawn_threads=threads)
    runner = Runner(AgentState(kill_grace=1.0), launcher)
    loop = asyncio.get_running_loop()
    hub = SignalHub(loop)
    try:
        hub.watch(signal.SIGCHLD, runner.on_sigchld)  # as pj-agent wires it
        runner.attach(loop)
        for i in range(0, len(specs), 7):  # batches, as Orders messages bring them
            runner.launch(specs[i : i + 7])
            await asyncio.sleep(0)
        deadline = time.monotonic() + 40
        while len(runner.outbox.exited) < len(specs):
            assert time.monotonic() < deadline, f"{len(runner.outbox.exited)} of {len(specs)} exits"
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # nothing more may come
    finally:
        runner.detach()
        hub.close()
        launcher.close()
    return runner


@pytest.mark.parametrize("threads", [1, 2])
def test_every_quick_task_is_reported_once(tmp_path: Path, threads: int) -> None:
    n = len(detect().cpus)
    specs = [TaskSpec(i, ("/bin/true",), cores=(i % n,)) for i in range(1, 401)]
    specs.append(TaskSpec(999, ("/bin/sh", "-c", "exit 3")))
    specs.append(TaskSpec(1000, ("/nonexistent/prog",)))
    runner = asyncio.run(_run(tmp_path, specs, threads))
    started = [r.task_id for r in runner.outbox.started]
    exited = {r.task_id: r for r in runner.outbox.exited}
    assert len(runner.outbox.exited) == len(exited) == len(specs)  # each once
    assert sorted(started) == sorted(s.task_id for s in specs if s.task_id != 1000)
    assert all(exited[i].exit_code == 0 for i in range(1, 401))
    assert exited[999].exit_code == 3
    assert exited[1000].exit_code == 127 and "/nonexistent/prog" in exited[1000].error
    assert len(runner.state) == 0
