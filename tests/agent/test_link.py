"""The real agent (a subprocess) against a tiny fake master: a grpc.aio AgentLink server on port 0."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import grpc.aio
import pytest

import pj
from pj.common.workdir import TOKEN_METADATA_KEY
from pj.v1 import pj_pb2, pj_pb2_grpc

from ..grpcserve import serve, token_file
from .test_launcher import alive

pytestmark = pytest.mark.timeout(60)

TOKEN = "s3cret-token"
PY = sys.executable

Scenario = Callable[["FakeMaster"], Awaitable[None]]


class FakeMaster(pj_pb2_grpc.AgentLinkServicer):
    """Checks the token, welcomes, then lets a scenario drive the stream; records what comes up."""

    def __init__(self, scenario: Scenario, heartbeat_s: float = 0.2) -> None:
        self.scenario = scenario
        self.heartbeat_s = heartbeat_s
        self.register: pj_pb2.Register | None = None
        self.started: list[pj_pb2.TaskStarted] = []
        self.exited: list[pj_pb2.TaskExited] = []
        self.withdrawn: list[int] = []
        self.heartbeats = 0
        self.event_messages = 0
        self.half_closed = False
        self.context: grpc.aio.ServicerContext | None = None

    async def Connect(self, request_iterator, context):  # type: ignore[no-untyped-def]
        if dict(context.invocation_metadata()).get(TOKEN_METADATA_KEY) != TOKEN:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong token")
        self.context = context
        first = await context.read()
        assert first.WhichOneof("body") == "register"
        self.register = first.register
        await self.send(welcome=pj_pb2.Welcome(heartbeat_interval_s=self.heartbeat_s))
        await self.scenario(self)

    async def send(self, **body: object) -> None:
        assert self.context is not None
        await self.context.write(pj_pb2.MasterMessage(**body))  # type: ignore[arg-type]

    async def recv(self) -> bool:
        """Read one message and record it; False at the agent's half-close."""
        assert self.context is not None
        msg = await self.context.read()
        if msg is grpc.aio.EOF:
            self.half_closed = True
            return False
        kind = msg.WhichOneof("body")
        if kind == "events":
            self.event_messages += 1
            self.started.extend(msg.events.started)
            self.exited.extend(msg.events.exited)
            self.withdrawn.extend(msg.events.withdrawn)
        elif kind == "heartbeat":
            self.heartbeats += 1
        else:
            raise AssertionError(f"unexpected {kind}")
        return True

    async def recv_until(self, done: Callable[[], bool]) -> None:
        while not done():
            assert await self.recv(), "the agent closed the stream early"

    async def drain(self) -> None:
        while await self.recv():
            pass

    def exit_of(self, task_id: int) -> pj_pb2.TaskExited:
        (e,) = [e for e in self.exited if e.task_id == task_id]
        return e

    def started_ids(self) -> set[int]:
        return {s.task_id for s in self.started}


def launch(task_id: int, *argv: str, **kw: object) -> pj_pb2.Launch:
    return pj_pb2.Launch(task_id=task_id, argv=list(argv), **kw)  # type: ignore[arg-type]


async def run_agent(
    master: FakeMaster,
    tmp_path: Path,
    *,
    token: str = TOKEN,
    extra: tuple[str, ...] = (),
    use_workdir: bool = False,
    while_running: Callable[[asyncio.subprocess.Process, grpc.aio.Server], Awaitable[None]] | None = None,
) -> tuple[int, str]:
    server, port = await serve(pj_pb2_grpc.add_AgentLinkServicer_to_server, master)
    tokens = token_file(tmp_path, token)
    if use_workdir:
        (tmp_path / "master.json").write_text(json.dumps({"address": f"127.0.0.1:{port}"}))
        where = ["--workdir", str(tmp_path)]
    else:
        where = ["--master", f"127.0.0.1:{port}", "--token-file", str(tokens)]
    log = tmp_path / "agent.log"
    try:
        with open(log, "wb") as err:
            proc = await asyncio.create_subprocess_exec(
                PY,
                "-m",
                "pj.agent.main",
                *where,
                "--name",
                "node-a",
                "--cores",
                "4",
                "--kill-grace",
                "0.5",
                "--wait-master",
                "10",
                *extra,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                cwd=tmp_path,
            )
            try:
                if while_running is not None:
                    await while_running(proc, server)
                rc = await asyncio.wait_for(proc.wait(), 40)
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
    finally:
        await server.stop(0)
    text = log.read_text()
    assert "Traceback" not in text, text
    return rc, text


@pytest.mark.timeout(60)
def test_batch_of_tasks_then_shutdown(tmp_path: Path) -> None:
    fdcheck = "import os, sys; sys.exit(len(os.listdir('/proc/self/fd')) - 4)"  # 0, 1, 2 + listdir's
    orders = [launch(i, "/bin/true") for i in range(1, 201)]
    orders += [
        launch(201, "/bin/sh", "-c", "exit 7"),
        launch(202, "/nonexistent/prog"),
        launch(203, "sleep", "30", walltime_s=0.3),
        launch(204, "sleep", "30"),
        launch(205, PY, "-c", fdcheck, cores=[0]),
        launch(206, "sleep", "60"),  # still running at Shutdown
        launch(207, "/bin/sh", "-c", "trap '' TERM; sleep 60"),  # deaf to TERM: KILL after the grace
        launch(
            208, "/bin/sh", "-c", 'test "$X" = y && test "$(pwd)" = "$WD"', env={"X": "y", "WD": "/"}, wd="/"
        ),
    ]
    all_ids = {o.task_id for o in orders}

    async def scenario(m: FakeMaster) -> None:
        await m.send(orders=pj_pb2.Orders(launch=orders))
        await m.recv_until(lambda: {204, 206, 207} <= m.started_ids())
        await m.send(orders=pj_pb2.Orders(cancel=[204, 207, 99999]))
        await m.recv_until(lambda: len(m.exited) >= len(orders) - 1)  # all but 206
        await m.send(shutdown=pj_pb2.Shutdown(reason="test over"))
        await m.drain()

    master = FakeMaster(scenario)
    rc, log = asyncio.run(run_agent(master, tmp_path))
    assert rc == 0, log
    assert master.half_closed
    reg = master.register
    assert reg is not None
    assert (reg.node, reg.cores, reg.version) == ("node-a", 4, pj.__version__)
    assert reg.pid > 0 and reg.memory_bytes > 0 and reg.hostname

    counts = Counter(e.task_id for e in master.exited)
    assert set(counts) == all_ids and set(counts.values()) == {1}, counts
    assert Counter(s.task_id for s in master.started) == Counter(all_ids - {202})
    for i in range(1, 201):
        assert master.exit_of(i).exit_code == 0
        assert master.exit_of(i).error == ""
    assert master.exit_of(201).exit_code == 7
    e202 = master.exit_of(202)
    assert e202.exit_code == 127 and "/nonexistent/prog" in e202.error
    e203 = master.exit_of(203)
    assert e203.exit_code == -signal.SIGTERM and e203.error == "walltime 0.3s exceeded: killed (SIGTERM)"
    assert master.exit_of(204).exit_code == -signal.SIGTERM
    assert master.exit_of(205).exit_code == 0, "a task inherited more than stdin/stdout/stderr"
    assert master.exit_of(206).exit_code == -signal.SIGTERM
    assert master.exit_of(207).exit_code == -signal.SIGKILL
    assert master.exit_of(208).exit_code == 0
    assert all(e.time > 0 for e in master.exited)
    assert master.event_messages < len(orders)  # reports travel in batches
    assert master.heartbeats >= 1


@pytest.mark.timeout(60)
def test_a_burst_of_exits_is_handled_quietly(tmp_path: Path) -> None:
    n = 1500  # far more SIGCHLDs at once than a signal wakeup pipe holds

    async def scenario(m: FakeMaster) -> None:
        await m.send(orders=pj_pb2.Orders(launch=[launch(i, "/bin/true") for i in range(n)]))
        await m.recv_until(lambda: len(m.exited) == n)
        await m.send(shutdown=pj_pb2.Shutdown())
        await m.drain()

    master = FakeMaster(scenario)
    rc, log = asyncio.run(run_agent(master, tmp_path))
    assert rc == 0, log
    assert "Exception ignored" not in log and "BlockingIOError" not in log, log[:2000]
    assert sorted(e.task_id for e in master.exited) == list(range(n))
    assert {e.exit_code for e in master.exited} == {0}


@pytest.mark.timeout(30)
def test_wrong_token_is_refused(tmp_path: Path) -> None:
    async def scenario(m: FakeMaster) -> None:
        raise AssertionError("must not get here")

    rc, log = asyncio.run(run_agent(FakeMaster(scenario), tmp_path, token="wrong"))
    assert rc == 1
    assert "token" in log


@pytest.mark.timeout(30)
def test_lost_master_kills_every_task(tmp_path: Path) -> None:
    pids: list[int] = []

    async def scenario(m: FakeMaster) -> None:
        await m.send(orders=pj_pb2.Orders(launch=[launch(1, "sleep", "60"), launch(2, "sleep", "60")]))
        await m.recv_until(lambda: len(m.started) == 2)
        pids.extend(s.pid for s in m.started)
        await asyncio.sleep(3600)  # until the server goes away

    async def vanish(proc: asyncio.subprocess.Process, server: grpc.aio.Server) -> None:
        while len(pids) < 2:
            await asyncio.sleep(0.01)
        await server.stop(0)

    master = FakeMaster(scenario)
    rc, log = asyncio.run(run_agent(master, tmp_path, extra=("--reconnect-timeout", "0"), while_running=vanish))
    assert rc == 1, log
    assert "lost the master" in log
    for pid in pids:
        assert not alive(pid), f"task process {pid} survived the agent"


@pytest.mark.timeout(30)
def test_sigterm_kills_and_reports_the_tasks(tmp_path: Path) -> None:
    async def scenario(m: FakeMaster) -> None:
        await m.send(orders=pj_pb2.Orders(launch=[launch(1, "sleep", "60"), launch(2, "/bin/true")]))
        await m.drain()

    async def terminate(proc: asyncio.subprocess.Process, server: grpc.aio.Server) -> None:
        while len(master.started) < 2 or not master.exited:
            await asyncio.sleep(0.01)
        proc.send_signal(signal.SIGTERM)

    master = FakeMaster(scenario)
    rc, log = asyncio.run(run_agent(master, tmp_path, use_workdir=True, while_running=terminate))
    assert rc == 128 + signal.SIGTERM, log
    assert master.half_closed
    assert sorted((e.task_id, e.exit_code) for e in master.exited) == [(1, -signal.SIGTERM), (2, 0)]


@pytest.mark.timeout(30)
def test_a_master_that_leaves_right_after_shutdown(tmp_path: Path) -> None:
    pids: list[int] = []

    async def scenario(m: FakeMaster) -> None:
        await m.send(orders=pj_pb2.Orders(launch=[launch(1, "sleep", "60")]))
        await m.recv_until(lambda: len(m.started) == 1)
        pids.append(m.started[0].pid)
        await m.send(shutdown=pj_pb2.Shutdown(reason="bye"))
        # ...and ends the call at once, without waiting for the agent's last reports

    rc, log = asyncio.run(run_agent(FakeMaster(scenario), tmp_path))
    assert rc == 0, log
    assert pids and not alive(pids[0])


@pytest.mark.slow
@pytest.mark.timeout(40)
def test_a_master_that_stops_reading_cannot_hold_the_agent(tmp_path: Path) -> None:
    n = 4000  # enough reports to exhaust the stream's flow-control window

    async def scenario(m: FakeMaster) -> None:
        await m.send(orders=pj_pb2.Orders(launch=[launch(i, "/bin/true") for i in range(n)]))
        await asyncio.sleep(3600)  # never reads again

    async def terminate(proc: asyncio.subprocess.Process, server: grpc.aio.Server) -> None:
        await asyncio.sleep(3)
        proc.send_signal(signal.SIGTERM)

    rc, log = asyncio.run(run_agent(FakeMaster(scenario), tmp_path, while_running=terminate))
    # Either grpc buffered every report (the agent half-closed, then gave up waiting for the
    # master to end the call) or a write blocked (the agent gave up on the stream).
    gave_up_waiting = rc == 128 + signal.SIGTERM and "did not close the stream" in log
    gave_up_writing = rc == 1 and "stopped reading" in log
    assert gave_up_waiting or gave_up_writing, log



@pytest.mark.timeout(30)
def test_dry_run_reports_every_task_started_and_exited_0_without_a_process(tmp_path: Path) -> None:
    n = 300
    marker = tmp_path / "ran"
    orders = [launch(i, "/bin/sh", "-c", f"touch {marker}", cores=[i % 4]) for i in range(n)]
    orders.append(launch(n, "/nonexistent/prog"))  # not even looked for

    async def scenario(m: FakeMaster) -> None:
        await m.send(orders=pj_pb2.Orders(launch=orders))
        await m.recv_until(lambda: len(m.exited) == n + 1)
        await m.send(orders=pj_pb2.Orders(cancel=[1, 2]))  # already over: nothing to do
        await m.send(shutdown=pj_pb2.Shutdown())
        await m.drain()

    master = FakeMaster(scenario)
    rc, log = asyncio.run(run_agent(master, tmp_path, extra=("--dry-run",)))
    assert rc == 0, log
    assert not marker.exists(), "a task ran"
    assert sorted(s.task_id for s in master.started) == list(range(n + 1))
    assert sorted(e.task_id for e in master.exited) == list(range(n + 1))
    assert {e.exit_code for e in master.exited} == {0}
    assert {e.error for e in master.exited} == {""}
    assert master.event_messages < n  # started and exited travel together, in batches


@pytest.mark.timeout(30)
def test_launches_for_busy_cores_wait_and_may_be_withdrawn_or_canceled(tmp_path: Path) -> None:
    ran = tmp_path / "ran"
    touch = ("/bin/sh", "-c", 'echo "$1" >> "$0"', str(ran))
    orders = [
        launch(1, "sleep", "60", cores=[0]),
        launch(2, *touch, "2", cores=[0]),  # the master's prefetch: the next tasks for core 0
        launch(3, *touch, "3", cores=[0]),
        launch(4, *touch, "4", cores=[0, 1]),
        launch(5, *touch, "5", cores=[1]),  # core 1 is free, but task 4 is first in line for it
    ]

    async def scenario(m: FakeMaster) -> None:
        await m.send(orders=pj_pb2.Orders(launch=orders))
        await m.recv_until(lambda: m.started_ids() == {1})
        await m.send(orders=pj_pb2.Orders(withdraw=[2, 1, 999], cancel=[3]))
        await m.recv_until(lambda: m.withdrawn == [2] and len(m.exited) == 1)
        assert m.started_ids() == {1}
        await m.send(orders=pj_pb2.Orders(cancel=[1]))
        await m.recv_until(lambda: len(m.exited) == 4)
        await m.send(shutdown=pj_pb2.Shutdown(reason="test over"))
        await m.drain()

    master = FakeMaster(scenario)
    rc, log = asyncio.run(run_agent(master, tmp_path))
    assert rc == 0, log
    assert master.withdrawn == [2]
    assert Counter(e.task_id for e in master.exited) == Counter({1: 1, 3: 1, 4: 1, 5: 1})
    assert master.exit_of(3).exit_code == -signal.SIGTERM
    assert master.exit_of(3).error == "canceled before it started (it was waiting for its cores)"
    assert master.exit_of(1).exit_code == -signal.SIGTERM and master.exit_of(1).error == ""
    assert (master.exit_of(4).exit_code, master.exit_of(5).exit_code) == (0, 0)
    assert sorted(s.task_id for s in master.started) == [1, 4, 5]
    assert ran.read_text().split() == ["4", "5"]
