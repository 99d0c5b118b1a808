"""A link end a relay saw earlier than the master read it: the node's grace counts from when the
relay saw it (NodeUp.ended_at on the master's clock through RelayUp.time), never from later and
never shorter. A real master, a RelayLink stream opened by hand as pj-relay opens it."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from pj.v1 import pj_pb2 as pb
from pj.v1 import pj_pb2_grpc as rpc

from .test_hostile_peers import eventually

pytestmark = pytest.mark.timeout(90)
GRACE = 20


@pytest.fixture
def master(tmp_path: Path) -> Iterator[tuple[rpc.PilotJobStub, rpc.RelayLinkStub, tuple[tuple[str, str]]]]:
    with open(tmp_path / "master.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "pj.master", "--workdir", str(tmp_path),
                                 "--heartbeat-timeout", str(GRACE)], stdout=log, stderr=subprocess.STDOUT)
    try:
        eventually(lambda: (tmp_path / "master.json").exists() or proc.poll() is not None, "master.json")
        assert proc.poll() is None
        address = json.loads((tmp_path / "master.json").read_text())["address"]
        md = (("pj-token", (tmp_path / "token").read_text().strip()),)
        with grpc.insecure_channel(address) as ch:
            yield rpc.PilotJobStub(ch), rpc.RelayLinkStub(ch), md
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def lost(jobs: rpc.PilotJobStub, md: tuple[tuple[str, str]]) -> set[str]:
    notices = jobs.Status(pb.StatusRequest(), metadata=md, timeout=10).notices
    return {n for n in ("early", "now") if any(f"node {n} did not come back" in x for x in notices)}


def test_the_grace_counts_from_when_the_relay_saw_the_link_end(master) -> None:  # type: ignore[no-untyped-def]
    jobs, link, md = master
    up: queue.Queue[pb.RelayUp | None] = queue.Queue()
    down = link.Connect(iter(up.get, None), metadata=md, timeout=80)
    try:
        for lid, node in ((1, "early"), (2, "now")):
            reg = pb.AgentMessage(register=pb.Register(node=node, cores=1))
            up.put(pb.RelayUp(time=time.time(), up=[pb.NodeUp(link=lid, message=reg.SerializeToString())]))
        welcomed = set()
        while len(welcomed) < 2:
            welcomed.update(d.link for d in next(down).down if d.message)
        # Both links end now; the relay saw the first end 15 s ago (it was busy, or the master was).
        t = time.time()
        up.put(pb.RelayUp(time=t, up=[pb.NodeUp(link=1, end=pb.NodeUp.END_BROKEN, ended_at=t - 15),
                                      pb.NodeUp(link=2, end=pb.NodeUp.END_BROKEN, ended_at=t)]))
        eventually(lambda: lost(jobs, md) == {"early"}, "the early node lost", timeout=GRACE - 5)
        assert time.time() - t < GRACE - 5  # ~5 s after the end was read, not GRACE
        assert time.time() - t >= 4  # and not before its own grace was over
        time.sleep(1)
        assert lost(jobs, md) == {"early"}  # the other keeps its whole grace
    finally:
        up.put(None)
        down.cancel()
