"""Hostile or broken peers against a real pj-master over real gRPC, with the run's token: a Register
past the limits, reports on another node's tasks, bad List arguments, a bad Submit base_dir. Each
is refused with INVALID_ARGUMENT naming the field (or ignored with a warning in the master's log),
and the master goes on serving."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from pj.common.peercheck import NODE_CORES_MAX, NODE_GPUS_MAX, NODE_MEMORY_MAX
from pj.v1 import pj_pb2, pj_pb2_grpc

pytestmark = pytest.mark.timeout(60)

Metadata = tuple[tuple[str, str]]


def eventually(check: Callable[[], Any], what: str, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


class Master:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.log = workdir / "master.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "pj.master", "--workdir", str(workdir)],
                                         stdout=log, stderr=subprocess.STDOUT)
        eventually(lambda: (workdir / "master.json").exists() or self.proc.poll() is not None, "master.json")
        assert self.proc.poll() is None, self.log.read_text()
        self.address = json.loads((workdir / "master.json").read_text())["address"]
        self.md: Metadata = (("pj-token", (workdir / "token").read_text().strip()),)
        self.channel = grpc.insecure_channel(self.address)
        self.jobs = pj_pb2_grpc.PilotJobStub(self.channel)
        self.link = pj_pb2_grpc.AgentLinkStub(self.channel)

    def stop(self) -> None:
        self.channel.close()
        self.proc.terminate()  # it may wait for hand-made agents that never report: then killed
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def state(self, job: str) -> int:
        return self.jobs.Info(pj_pb2.InfoRequest(names=[job]), metadata=self.md, timeout=10).jobs[0].summary.state

    def nodes(self) -> list[str]:
        return [n.name for n in self.jobs.Resources(pj_pb2.ResourcesRequest(), metadata=self.md, timeout=10).nodes]


@pytest.fixture
def master(tmp_path: Path) -> Iterator[Master]:
    m = Master(tmp_path)
    try:
        yield m
    finally:
        m.stop()


class Agent:
    """One Connect stream opened by hand: a Register, then whatever the test sends."""

    def __init__(self, m: Master, **register: Any) -> None:
        self.out: queue.Queue[pj_pb2.AgentMessage | None] = queue.Queue()
        self.out.put(pj_pb2.AgentMessage(register=pj_pb2.Register(**register)))
        self.replies = m.link.Connect(iter(self.out.get, None), metadata=m.md, timeout=45)

    def next(self) -> pj_pb2.MasterMessage:
        return next(self.replies)

    def send(self, **events: Any) -> None:
        self.out.put(pj_pb2.AgentMessage(events=pj_pb2.AgentEvents(**events)))

    def close(self) -> None:
        self.out.put(None)
        self.replies.cancel()


def refusal(m: Master, **register: Any) -> grpc.RpcError:
    agent = Agent(m, **register)
    try:
        with pytest.raises(grpc.RpcError) as e:
            agent.next()
        return e.value
    finally:
        agent.close()


def test_a_register_past_the_limits_is_refused_naming_the_field_and_the_limit(master: Master) -> None:
    for register, field, shown in [
        ({"node": "big", "cores": 10**9}, "cores", str(NODE_CORES_MAX)),
        ({"node": "big", "cores": 2**32 - 1}, "cores", str(NODE_CORES_MAX)),
        ({"node": "big", "cores": 1, "gpus": [str(i) for i in range(NODE_GPUS_MAX + 1)]}, "gpus", str(NODE_GPUS_MAX)),
        ({"node": "big", "cores": 1, "gpus": ["0", "0"]}, "gpus", "twice"),
        ({"node": "big", "cores": 1, "gpus": ["0,1"]}, "gpus", "not a GPU id"),
        ({"node": "big", "cores": 1, "memory_bytes": 2**63}, "memory_bytes", str(NODE_MEMORY_MAX)),
        ({"node": "a/b", "cores": 1}, "node", "'/'"),
        ({"node": "n" * 300, "cores": 1}, "node", "200"),
        ({"node": "a\0b", "cores": 1}, "node", "contains"),
        ({"node": "", "cores": 1}, "node", "required"),
        ({"node": "big", "cores": 0}, "cores", "at least 1"),
        ({"node": "big", "cores": 1, "hostname": "h\nforged log line"}, "hostname", "control"),
        ({"node": "big", "cores": 1, "campaign": "c" * 1000}, "campaign", "64"),
    ]:
        err = refusal(master, **register)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (register, err)
        details = err.details() or ""
        assert f"Register: field {field!r}" in details and shown in details, (field, details)
        assert "\n" not in details and len(details) < 500, details
    assert master.nodes() == []  # nothing of them was kept
    fine = Agent(master, node="fine", cores=NODE_CORES_MAX, gpus=["0", "GPU-1a2b"], memory_bytes=NODE_MEMORY_MAX)
    try:
        assert fine.next().HasField("welcome")  # the limits themselves are accepted
        assert master.nodes() == ["fine"]
    finally:
        fine.close()
    assert "agent refused" in master.log.read_text()


def test_a_real_agent_refused_for_its_cores_logs_the_line_and_exits_non_zero(master: Master) -> None:
    cores = NODE_CORES_MAX + 1
    agent = subprocess.run(
        [sys.executable, "-m", "pj.agent", "--workdir", str(master.workdir), "--name", "huge", "--cores",
         str(cores), "--reconnect-timeout", "0"],
        capture_output=True, text=True, timeout=40,
    )
    assert agent.returncode != 0
    assert f"Register: field 'cores': {cores} cores is more than {NODE_CORES_MAX} per node" in agent.stderr, (
        agent.stderr[-2000:])
    assert master.nodes() == []


def test_reports_on_another_nodes_task_are_ignored_with_a_warning(master: Master) -> None:
    owner = Agent(master, node="owner", cores=1, pid=1, hostname="h")
    intruder = None
    try:
        assert owner.next().HasField("welcome")
        job = pj_pb2.JobSpec(name="long", exec="/bin/sleep", args=["30"])
        after = pj_pb2.JobSpec(name="after", exec="/bin/true", after=["long"])
        master.jobs.Submit(pj_pb2.SubmitRequest(jobs=[job, after], base_dir="/tmp"), metadata=master.md, timeout=10)
        launch = next(m for m in owner.replies if m.HasField("orders") and m.orders.launch).orders.launch[0]
        owner.send(started=[pj_pb2.TaskStarted(task_id=launch.task_id, pid=7, time=time.time())])
        eventually(lambda: master.state("long") == pj_pb2.JOB_STATE_EXECUTING, "long executing")

        intruder = Agent(master, node="intruder", cores=1, pid=2, hostname="h")
        assert intruder.next().HasField("welcome")
        intruder.send(exited=[pj_pb2.TaskExited(task_id=launch.task_id, exit_code=0, time=time.time())],
                      withdrawn=[launch.task_id])
        warning = f"node intruder reported on task(s) {launch.task_id} running on other nodes: ignored"
        eventually(lambda: warning in master.log.read_text(), "the master's warning")
        assert master.state("long") == pj_pb2.JOB_STATE_EXECUTING  # still running: the report did not count
        assert master.state("after") == pj_pb2.JOB_STATE_QUEUED  # and its dependent did not start

        # The owner's own report counts (a huge stderr tail is clipped, not kept whole).
        owner.send(exited=[pj_pb2.TaskExited(task_id=launch.task_id, exit_code=3, time=time.time(),
                                             stderr_tail="x" * (1 << 20))])
        eventually(lambda: master.state("long") == pj_pb2.JOB_STATE_FAILED, "long failed")
        info = master.jobs.Info(pj_pb2.InfoRequest(names=["long"], with_tasks=True), metadata=master.md, timeout=10)
        assert 0 < len(info.jobs[0].tasks[0].stderr_tail) <= 16_384
    finally:
        owner.close()
        if intruder is not None:
            intruder.close()


def test_list_with_a_bad_page_token_or_state_is_invalid_argument(master: Master) -> None:
    master.jobs.Submit(pj_pb2.SubmitRequest(jobs=[pj_pb2.JobSpec(name=f"j{i}", exec="/bin/true") for i in range(5)],
                                            base_dir="/tmp"), metadata=master.md, timeout=10)
    for request, field in [
        (pj_pb2.ListRequest(page_token="-1"), "page_token"),
        (pj_pb2.ListRequest(page_token="-5000"), "page_token"),
        (pj_pb2.ListRequest(page_token="abc"), "page_token"),
        (pj_pb2.ListRequest(page_token=" 2"), "page_token"),
        (pj_pb2.ListRequest(page_token="1_0"), "page_token"),
        (pj_pb2.ListRequest(states=[99]), "states"),  # type: ignore[list-item]
        (pj_pb2.ListRequest(states=[-1]), "states"),  # type: ignore[list-item]
    ]:
        with pytest.raises(grpc.RpcError) as e:
            master.jobs.List(request, metadata=master.md, timeout=10)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (request, e.value)
        assert f"List: field {field!r}" in (e.value.details() or ""), e.value.details()
    page = master.jobs.List(pj_pb2.ListRequest(page_size=2, page_token="2"), metadata=master.md, timeout=10)
    assert [j.name for j in page.jobs] == ["j2", "j3"] and page.next_page_token == "4"
    queued = master.jobs.List(pj_pb2.ListRequest(states=[pj_pb2.JOB_STATE_QUEUED]), metadata=master.md, timeout=10)
    assert len(queued.jobs) == 5


def test_a_relative_or_nul_holding_base_dir_is_refused_at_submit(master: Master) -> None:
    for base_dir, shown in [("runs/here", "absolute"), ("/tmp/a\0b", "NUL"), ("/" + "d" * 5000, "4096")]:
        request = pj_pb2.SubmitRequest(jobs=[pj_pb2.JobSpec(name="j", exec="./sim")], base_dir=base_dir)
        with pytest.raises(grpc.RpcError) as e:
            master.jobs.Submit(request, metadata=master.md, timeout=10)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "Submit: field 'base_dir'" in (e.value.details() or "") and shown in (e.value.details() or "")
        assert "\0" not in (e.value.details() or "")
    status = master.jobs.Status(pj_pb2.StatusRequest(), metadata=master.md, timeout=10)
    assert status.jobs_total == 0
    ok = pj_pb2.SubmitRequest(jobs=[pj_pb2.JobSpec(name="j", exec="/bin/true")], base_dir="/tmp")
    assert list(master.jobs.Submit(ok, metadata=master.md, timeout=10).names) == ["j"]


def test_an_unknown_long_name_is_not_found_not_a_broken_stream(master: Master) -> None:
    """The details of a status travel in a header: a 100 KB name quoted whole made it too big, and
    the caller got RESOURCE_EXHAUSTED ("Stream removed") instead of NOT_FOUND."""
    name = "x" * 100_000
    calls: list[Callable[[], Any]] = [
        lambda: master.jobs.Info(pj_pb2.InfoRequest(names=[name]), metadata=master.md, timeout=10),
        lambda: master.jobs.Cancel(pj_pb2.CancelRequest(names=[name]), metadata=master.md, timeout=10),
        lambda: next(master.jobs.Watch(pj_pb2.WatchRequest(names=[name]), metadata=master.md, timeout=10)),
    ]
    for call in calls:
        with pytest.raises(grpc.RpcError) as e:
            call()
        assert e.value.code() == grpc.StatusCode.NOT_FOUND, e.value
        assert (e.value.details() or "").startswith("no job named 'xxxx") and len(e.value.details() or "") < 100
