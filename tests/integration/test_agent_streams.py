"""A real pj-master and agent streams opened by hand: a returning agent is not kept out by its
own old stream, which the master has not seen break (a network cut leaves no reset)."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from pj.v1 import pj_pb2, pj_pb2_grpc

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def master(tmp_path: Path) -> Iterator[tuple[pj_pb2_grpc.AgentLinkStub, tuple[tuple[str, str]], Path]]:
    with open(tmp_path / "master.log", "wb") as log:
        p = subprocess.Popen([sys.executable, "-m", "pj.master", "--workdir", str(tmp_path)], stdout=log,
                             stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while not (tmp_path / "master.json").exists():
            assert p.poll() is None and time.monotonic() < deadline, (tmp_path / "master.log").read_text()
            time.sleep(0.02)
        info = json.loads((tmp_path / "master.json").read_text())
        token = (tmp_path / "token").read_text().strip()
        with grpc.insecure_channel(info["address"]) as channel:
            yield pj_pb2_grpc.AgentLinkStub(channel), (("pj-token", token),), tmp_path
    finally:
        p.terminate()
        p.wait(10)


class Stream:
    """One Connect stream, as an agent holds it: a Register first, then nothing (it stays open)."""

    def __init__(self, stub: pj_pb2_grpc.AgentLinkStub, metadata: Any, **register: Any) -> None:
        self.out: queue.Queue[pj_pb2.AgentMessage | None] = queue.Queue()
        self.out.put(pj_pb2.AgentMessage(register=pj_pb2.Register(node="n1", cores=2, **register)))
        self.replies = stub.Connect(iter(self.out.get, None), metadata=metadata, timeout=30)

    def next(self) -> pj_pb2.MasterMessage:
        return next(self.replies)

    def close(self) -> None:
        self.out.put(None)
        self.replies.cancel()


def test_the_same_agent_on_a_new_stream_replaces_its_old_one_and_no_one_else_does(master: Any) -> None:
    stub, metadata, wd = master
    first = Stream(stub, metadata, pid=4242, hostname="h1")
    campaign = first.next().welcome.campaign
    assert campaign
    # The agent's first stream is cut without a word: the master still sees it open.
    again = Stream(stub, metadata, pid=4242, hostname="h1", campaign=campaign)
    try:
        assert again.next().welcome.campaign == campaign  # let in at once, not after the heartbeat
        with pytest.raises(grpc.RpcError) as e:
            first.next()
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE and "replaced" in (e.value.details() or "")
        # Another process claiming the node (another pid, or no campaign) is refused.
        for other in ({"pid": 999, "hostname": "h1", "campaign": campaign}, {"pid": 4242, "hostname": "h1"}):
            intruder = Stream(stub, metadata, **other)
            with pytest.raises(grpc.RpcError) as e:
                intruder.next()
            assert e.value.code() == grpc.StatusCode.ALREADY_EXISTS, e.value.details()
            intruder.close()
        assert again.replies.is_active()  # the intruders changed nothing for the agent
    finally:
        again.close()
        first.close()
    assert "agent came back on a new stream" in (wd / "master.log").read_text()
