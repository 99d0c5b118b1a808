"""Agents outlive the master: a broken stream leaves the tasks running while the agent reconnects.

A fake AgentLink master (grpc.aio in the test) checks the Register a returning agent sends; real
pj-master processes check that a SIGKILLed master leaves the tasks alone, and that an agent whose
master never comes back stops them and exits 1. The back-off and the resend window are pure.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import grpc
import grpc.aio
import pytest

from pj.agent.main import RECONNECT_TIMEOUT_S, configure
from pj.agent.reconnect import SentExits, backoff_delay
from pj.agent.state import ReportExited
from pj.client import Client
from pj.common.workdir import TOKEN_METADATA_KEY
from pj.v1 import pj_pb2, pj_pb2_grpc

from .test_launcher import alive

pytestmark = pytest.mark.timeout(40)

PY = sys.executable
TOKEN = "tok-1"


# ---------------------------------------------------------------- pure parts


def test_backoff_doubles_from_a_fifth_of_a_second_to_five_seconds() -> None:
    assert [backoff_delay(n, 0.0) for n in range(7)] == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    assert backoff_delay(10_000, 0.0) == 5.0
    # jitter shortens a delay by up to a quarter, never lengthens it
    assert backoff_delay(0, 0.999) == pytest.approx(0.2 * (1 - 0.25 * 0.999))
    for n in range(10):
        d = backoff_delay(n)
        assert 0.75 * min(5.0, 0.2 * 2**n) <= d <= min(5.0, 0.2 * 2**n)


def _exit(task_id: int) -> ReportExited:
    return ReportExited(task_id, 0, float(task_id))


def test_the_resend_window_is_bounded_in_age_and_count() -> None:
    w = SentExits(max_age_s=120, max_count=5)
    w.add([_exit(1), _exit(2)], now=1000.0)
    w.add([_exit(3)], now=1100.0)
    assert [r.task_id for r in w.recent(1100.0)] == [1, 2, 3]
    assert [r.task_id for r in w.recent(1121.0)] == [3]  # 1 and 2 were sent 121 s ago
    w.add([_exit(i) for i in range(10, 20)], now=1130.0)  # over the count: the oldest go
    assert [r.task_id for r in w.recent(1130.0)] == [15, 16, 17, 18, 19]
    assert w.recent(1300.0) == [] and len(w) == 0


def test_the_resend_window_bounds_the_stderr_tails_it_keeps() -> None:
    w = SentExits(max_age_s=120, max_count=5, max_tail_bytes=10)
    failed = [ReportExited(i, 1, 1000.0, stderr_tail="abcd", tail=True) for i in range(1, 5)]
    w.add(failed, now=1000.0)
    assert [r.stderr_tail for r in w.recent(1000.0)] == ["abcd", "abcd", "", ""]  # 8 of 10 bytes held
    assert w.tail_bytes == 8
    w.add([_exit(i) for i in range(10, 14)], now=1001.0)  # the first three go (count): their tails too
    assert w.tail_bytes == 0
    w.add([ReportExited(20, 1, 1002.0, stderr_tail="0123456789")], now=1002.0)
    assert w.recent(1002.0)[-1].stderr_tail == "0123456789" and w.tail_bytes == 10
    assert w.recent(1200.0) == [] and w.tail_bytes == 0


def test_reconnect_timeout_option(tmp_path: Path) -> None:
    (tmp_path / "master.json").write_text(json.dumps({"address": "127.0.0.1:1"}))
    (tmp_path / "token").write_text("t\n")
    base = ["--workdir", str(tmp_path), "--wait-master", "0"]
    assert configure(base).reconnect_timeout == RECONNECT_TIMEOUT_S == 600  # type: ignore[union-attr]
    assert configure([*base, "--reconnect-timeout", "0"]).reconnect_timeout == 0  # type: ignore[union-attr]
    assert configure([*base, "--reconnect-timeout", "90"]).reconnect_timeout == 90  # type: ignore[union-attr]
    assert configure([*base, "--reconnect-timeout", "2m"]).reconnect_timeout == 120  # type: ignore[union-attr]


# ---------------------------------------------------------------- a fake master, twice


class Master(pj_pb2_grpc.AgentLinkServicer):
    """Welcomes into campaign c-1; records each Register; refuses the first ``refuse`` calls."""

    def __init__(
        self,
        orders: list[pj_pb2.Launch],
        refuse: int = 0,
        code: grpc.StatusCode = grpc.StatusCode.ALREADY_EXISTS,
        details: str = "node 'n1' is already connected",
    ) -> None:
        self.orders = orders
        self.refuse = refuse
        self.code, self.details = code, details
        self.registers: list[pj_pb2.Register] = []
        self.started: dict[int, int] = {}
        self.exited: list[int] = []
        self.shutdown = asyncio.Event()

    async def Connect(self, request_iterator, context):  # type: ignore[no-untyped-def]
        assert dict(context.invocation_metadata()).get(TOKEN_METADATA_KEY) == TOKEN
        first = await context.read()
        self.registers.append(first.register)
        if self.refuse:
            self.refuse -= 1
            await context.abort(self.code, self.details)
        await context.write(
            pj_pb2.MasterMessage(welcome=pj_pb2.Welcome(heartbeat_interval_s=0.2, campaign="c-1"))
        )
        if self.orders:
            await context.write(pj_pb2.MasterMessage(orders=pj_pb2.Orders(launch=self.orders)))
        reader = asyncio.ensure_future(self._read(context))
        await self.shutdown.wait()
        await context.write(pj_pb2.MasterMessage(shutdown=pj_pb2.Shutdown(reason="done")))
        await reader

    async def _read(self, context) -> None:  # type: ignore[no-untyped-def]
        while True:
            msg = await context.read()
            if msg is grpc.aio.EOF:
                return
            if msg.WhichOneof("body") == "events":
                self.started.update((s.task_id, s.pid) for s in msg.events.started)
                self.exited.extend(e.task_id for e in msg.events.exited)


async def _serve(master: Master, wd: Path) -> grpc.aio.Server:
    server = grpc.aio.server()
    pj_pb2_grpc.add_AgentLinkServicer_to_server(master, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    tmp = wd / "master.json.tmp"
    tmp.write_text(json.dumps({"address": f"127.0.0.1:{port}"}))
    os.replace(tmp, wd / "master.json")
    return server


async def _until(check, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def launch(task_id: int, *argv: str) -> pj_pb2.Launch:
    return pj_pb2.Launch(task_id=task_id, argv=list(argv))


async def _start_agent(wd: Path, cores: int, log: IO[bytes]) -> asyncio.subprocess.Process:
    """A real pj-agent of node n1 that reconnects for 20 s, logging into ``log``."""
    return await asyncio.create_subprocess_exec(
        PY, "-m", "pj.agent", "--workdir", str(wd), "--name", "n1", "--cores", str(cores),
        "--kill-grace", "0.5", "--reconnect-timeout", "20s", stdout=log, stderr=log,
    )  # fmt: skip


async def _stop_all(proc: asyncio.subprocess.Process, server: grpc.aio.Server, log: IO[bytes]) -> None:
    if proc.returncode is None:
        proc.kill()
        await proc.wait()
    await server.stop(0)
    log.close()


def test_a_returning_agent_says_what_runs_and_what_ended(tmp_path: Path) -> None:
    (tmp_path / "token").write_text(TOKEN + "\n")

    async def scenario() -> tuple[int, str, Master, Master]:
        one = Master([launch(1, "sleep", "60"), launch(2, "/bin/true"), launch(3, "sleep", "1")])
        server = await _serve(one, tmp_path)
        log = open(tmp_path / "agent.log", "wb")
        proc = await _start_agent(tmp_path, 4, log)
        try:
            await _until(lambda: len(one.started) == 3 and one.exited == [2])
            await server.stop(0)  # the master vanishes: task 2's exit was sent, 3 ends while cut off
            await asyncio.sleep(1.5)
            assert alive(one.started[1]), "the agent killed its task when the master went away"
            two = Master([], refuse=1)  # the first try meets the old stream still "connected"
            server = await _serve(two, tmp_path)  # a new port: the agent finds it in master.json
            await _until(lambda: len(two.registers) == 2)
            await asyncio.sleep(0.3)
            assert alive(one.started[1])
            two.shutdown.set()
            rc = await asyncio.wait_for(proc.wait(), 15)
        finally:
            await _stop_all(proc, server, log)
        return rc, (tmp_path / "agent.log").read_text(), one, two

    rc, log, one, two = asyncio.run(scenario())
    assert rc == 0, log
    assert "Traceback" not in log, log
    assert one.registers[0].campaign == "" and not one.registers[0].running and not one.registers[0].ended
    for reg in two.registers:  # the refused attempt and the welcomed one say the same
        assert reg.node == "n1" and reg.campaign == "c-1"
        assert list(reg.running) == [1]
        assert sorted(e.task_id for e in reg.ended) == [2, 3]  # 2 resent (sent just before), 3 missed
        assert {e.task_id: e.exit_code for e in reg.ended} == {2: 0, 3: 0}
    # Nothing of the Register comes again as an event; the shutdown's kill of task 1 does.
    assert two.exited == [1] and two.started == {}
    assert not alive(one.started[1])


def test_launches_waiting_for_their_cores_are_dropped_when_the_master_goes(tmp_path: Path) -> None:
    (tmp_path / "token").write_text(TOKEN + "\n")
    ran = tmp_path / "ran"
    held = pj_pb2.Launch(task_id=2, argv=["/bin/sh", "-c", f"touch {ran}"], cores=[0])

    async def scenario() -> tuple[int, str, Master, Master]:
        one = Master([pj_pb2.Launch(task_id=1, argv=["sleep", "2"], cores=[0]), held])
        server = await _serve(one, tmp_path)
        log = open(tmp_path / "agent.log", "wb")
        proc = await _start_agent(tmp_path, 2, log)
        try:
            await _until(lambda: len(one.started) == 1)
            await server.stop(0)  # task 2 still waits for core 0: dropped, never started
            await asyncio.sleep(2.5)  # task 1 ends while the agent is cut off
            two = Master([])
            server = await _serve(two, tmp_path)
            await _until(lambda: len(two.registers) == 1)
            await asyncio.sleep(0.3)
            two.shutdown.set()
            rc = await asyncio.wait_for(proc.wait(), 15)
        finally:
            await _stop_all(proc, server, log)
        return rc, (tmp_path / "agent.log").read_text(), one, two

    rc, log, one, two = asyncio.run(scenario())
    assert rc == 0, log
    assert "Traceback" not in log, log
    (reg,) = two.registers
    assert list(reg.running) == []  # never the held task 2
    assert [e.task_id for e in reg.ended] == [1]
    assert 2 not in one.started and 2 not in one.exited and two.exited == [] and two.started == {}
    assert not ran.exists()
    assert not ran.exists(), "a launch held when the master went away was started"


def test_a_master_that_refuses_the_returning_agent(tmp_path: Path) -> None:
    (tmp_path / "token").write_text(TOKEN + "\n")

    async def scenario() -> tuple[int, str, int]:
        one = Master([launch(1, "sleep", "60")])
        server = await _serve(one, tmp_path)
        log = open(tmp_path / "agent.log", "wb")
        proc = await _start_agent(tmp_path, 1, log)
        try:
            await _until(lambda: 1 in one.started)
            await server.stop(0)
            other = Master(
                [], refuse=99, code=grpc.StatusCode.FAILED_PRECONDITION, details="served another campaign"
            )
            server = await _serve(other, tmp_path)
            rc = await asyncio.wait_for(proc.wait(), 15)
        finally:
            await _stop_all(proc, server, log)
        return rc, (tmp_path / "agent.log").read_text(), one.started[1]

    rc, log, pid = asyncio.run(scenario())
    assert rc == 1, log
    assert "served another campaign" in log and "Traceback" not in log, log
    assert not alive(pid)


# ---------------------------------------------------------------- real masters


def _spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)


def _wait_for(check, timeout: float = 15.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not (got := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return got


def _pid_in(path: Path) -> int:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return 0


def test_a_master_that_never_comes_back(tmp_path: Path) -> None:
    wd = tmp_path / "wd"
    wd.mkdir()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        master = _spawn(
            [PY, "-m", "pj.master", "--workdir", str(wd), "--expect-nodes", "1"], wd / "master.log"
        )
        procs.append(master)
        _wait_for(lambda: (wd / "master.json").exists())
        agent = _spawn_agent(wd, "3s")
        procs.append(agent)
        pidfile = tmp_path / "task.pid"
        with Client(wd) as cl:
            cl.submit(
                [{"name": "long", "exec": "/bin/sh", "args": ["-c", f"echo $$ > {pidfile}; exec sleep 60"]}]
            )
            pid = _wait_for(lambda: _pid_in(pidfile))
        master.kill()
        master.wait()
        time.sleep(1.5)
        assert alive(pid), "the task died with the master"
        assert agent.poll() is None
        rc = agent.wait(15)
        log = (wd / "agent.log").read_text()
        assert rc == 1, log
        assert "did not come back within" in log and "--reconnect-timeout" in log, log
        assert not alive(pid), "the agent left its task running"
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def _spawn_agent(wd: Path, reconnect_timeout: str) -> subprocess.Popen[bytes]:
    argv = [PY, "-m", "pj.agent", "--workdir", str(wd), "--name", "n1", "--cores", "2", "--kill-grace", "0.5",
            "--reconnect-timeout", reconnect_timeout]  # fmt: skip
    return _spawn(argv, wd / "agent.log")


def test_a_resumed_master_takes_the_agent_back(tmp_path: Path) -> None:
    wd = tmp_path / "wd"
    wd.mkdir()
    procs: list[subprocess.Popen[bytes]] = []
    master_argv = [PY, "-m", "pj.master", "--workdir", str(wd), "--expect-nodes", "1"]
    try:
        master = _spawn(master_argv, wd / "master.log")
        procs.append(master)
        _wait_for(lambda: (wd / "master.json").exists())
        agent = _spawn_agent(wd, "20s")
        procs.append(agent)
        runs = tmp_path / "runs"
        with Client(wd) as cl:
            cl.submit([{"name": "t", "exec": "/bin/sh", "args": ["-c", f"echo $$ >> {runs}; sleep 3"]}])
            pid = _wait_for(lambda: _pid_in(runs))
        master.kill()
        master.wait()
        time.sleep(0.5)
        assert alive(pid) and agent.poll() is None
        # DIR/master.json still names the dead master: the agent keeps trying until the new one
        # replaces it.
        master = _spawn([*master_argv, "--resume"], wd / "master-resumed.log")
        procs.append(master)
        _wait_for(lambda: json.loads((wd / "master.json").read_text()).get("pid") == master.pid)
        with Client(wd) as cl:
            assert cl.wait(timeout=20) == {"t": "SUCCEED"}
            cl.finish()
        assert master.wait(15) == 0
        assert agent.wait(15) == 0
        assert runs.read_text().split() == [str(pid)], "the task ran again"
        assert "reconnected" in (wd / "agent.log").read_text()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()

