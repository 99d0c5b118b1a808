"""Watch streams against a real pj-master over real gRPC (master/watchhub.py): watchers of every job
get the very same bytes; one whose client reads nothing is dropped with RESOURCE_EXHAUSTED past
--watch-backlog/--watch-stall while readers and dispatch go on; a Client.wait, AsyncClient.wait or
Client.watch that stops reading for a while is dropped too, and watches again from the present.

The master runs with a small backlog (128 KB) and a 1.5 s stall, a dry-run agent, and a few chains of
jobs with long names: dispatch goes on for seconds (a chain moves one job per round trip) and
every tick carries a few hundred bytes, so an unread stream fills its HTTP/2 window (64 KB: the
test's channels turn off gRPC's window growth, `grpc.http2.bdp_probe`) and falls behind.
No timing is asserted: only what ends how.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import pytest

from pj.client import AsyncClient, Client, calls
from pj.common.workdir import TOKEN_METADATA_KEY, find_master
from pj.v1 import pj_pb2

pytestmark = pytest.mark.timeout(120)

SMALL = ["--watch-backlog", "0.125", "--watch-stall", "1.5"]
NO_GROWTH = [("grpc.http2.bdp_probe", 0)]  # the window stays at 64 KB
CHAINS, LINKS = 4, 1000


def _jobs(prefix: str = "c") -> list[dict[str, Any]]:
    pad = "x" * 150  # every summary some 170 bytes
    return [
        {"name": f"{prefix}{c}-{i}-{pad}", "exec": "/bin/true",
         **({"after": [f"{prefix}{c}-{i - 1}-{pad}"]} if i else {})}
        for c in range(CHAINS) for i in range(LINKS)
    ]


def _raw_watch(wd: Path, counts_only: bool = False) -> tuple[grpc.Channel, Any]:
    """A Watch of every job on a channel of its own, its messages as the bytes the master sent."""
    master = find_master(wd, wait_s=10)
    ch = grpc.insecure_channel(master.address, options=NO_GROWTH)
    watch = ch.unary_stream("/pj.v1.PilotJob/Watch", request_serializer=pj_pb2.WatchRequest.SerializeToString,
                            response_deserializer=None)
    return ch, watch(pj_pb2.WatchRequest(counts_only=counts_only), metadata=((TOKEN_METADATA_KEY, master.token),))


def _read_all(call: Any) -> tuple[list[bytes], str]:
    got: list[bytes] = []
    try:
        for m in call:
            got.append(m)
    except grpc.RpcError as e:
        return got, f"{e.code().name}: {e.details()}"
    return got, "OK"


def _drops(wd: Path) -> int:
    return (wd / "master.log").read_text().count("watch dropped")


@pytest.fixture
def cluster(cluster_factory: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("PJ_AGENT_DRY_RUN", "1")
    c = cluster_factory(nodes=1, cores=4, master_args=SMALL)
    with c.client() as pj:
        deadline = time.monotonic() + 20
        while not pj.resources().nodes:
            assert time.monotonic() < deadline, "the agent did not join"
            time.sleep(0.05)
    return c


def test_an_unread_watcher_is_dropped_while_readers_get_the_same_bytes_and_dispatch_goes_on(cluster: Any) -> None:
    wd = cluster.workdir
    unread_ch, unread = _raw_watch(wd)
    readers = [_raw_watch(wd) for _ in range(2)] + [_raw_watch(wd, counts_only=True) for _ in range(2)]
    results: list[tuple[list[bytes], str]] = [([], "")] * len(readers)

    def read(i: int) -> None:
        results[i] = _read_all(readers[i][1])

    threads = [threading.Thread(target=read, args=(i,)) for i in range(len(readers))]
    for t in threads:
        t.start()
    with cluster.client() as pj:
        names = pj.submit(_jobs())
        final = pj.wait(timeout=90)
        assert len(final) == len(names) and set(final.values()) == {"SUCCEED"}  # dispatch went on
        pj.finish()
    for t in threads:
        t.join(30)
    messages, end = _read_all(unread)  # what it had been sent, then why it ended
    unread_ch.close()
    assert end.startswith("RESOURCE_EXHAUSTED: watch dropped: the client fell ")
    assert end.endswith("; watch again to resume from the present")
    assert 0 < sum(map(len, messages)) < 4 << 20  # it got what its window held, not the campaign
    assert _drops(wd) == 1  # the readers were never dropped
    (full1, end1), (full2, end2), (counts1, end3), (counts2, end4) = results
    assert end1 == end2 == end3 == end4 == "OK"
    assert full1 == full2 and counts1 == counts2  # byte for byte, message for message
    assert len(full1) > 3
    last = pj_pb2.WatchEvent.FromString(full1[-1])
    assert last.watched_total == CHAINS * LINKS and last.watched_unfinished == 0
    seen = {j.name for m in full1 for j in pj_pb2.WatchEvent.FromString(m).changed}
    assert len(seen) == CHAINS * LINKS  # every job, in the watch of every job in full
    assert {c.count for c in pj_pb2.WatchEvent.FromString(counts1[-1]).jobs} == {CHAINS * LINKS}


@pytest.mark.parametrize("how", ["wait", "async wait", "watch"])
def test_a_wait_or_watch_whose_watch_is_dropped_reconnects_and_goes_on(
        cluster: Any, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    """Client.wait, AsyncClient.wait and Client.watch: their client stops reading after the first
    news (another client submits a second campaign then, so that megabytes of news come while it
    reads nothing, however far the first one had gone), the master drops the stream, and they watch
    again and go on from the present: every job of both campaigns ends as it should."""
    wd = cluster.workdir
    for module in ("api", "aio"):
        monkeypatch.setattr(f"pj.client.{module}.CHANNEL_OPTIONS", [*calls.CHANNEL_OPTIONS, *NO_GROWTH])
    fed = calls.WaitTally.feed
    seen: list[int] = []
    more: list[str] = []

    def pause(unfinished: int) -> None:
        seen.append(unfinished)
        if len(seen) == 2:  # after the present and the first news: the client reads nothing until the
            # master has dropped it (at least 4 s; at most 30: on a loaded machine the backlog grows slowly)
            with Client(wd) as other:
                more.extend(other.submit(_jobs("d")))
            time.sleep(4)
            deadline = time.monotonic() + 26
            while _drops(wd) == 0 and time.monotonic() < deadline:
                time.sleep(0.2)

    def slow_feed(self: calls.WaitTally, m: pj_pb2.WatchEvent) -> bool:
        pause(m.watched_unfinished)
        return fed(self, m)

    monkeypatch.setattr(calls.WaitTally, "feed", slow_feed)
    with Client(wd) as pj:
        names = pj.submit(_jobs())
        if how == "wait":
            final = pj.wait(timeout=90)
        elif how == "async wait":
            final = asyncio.run(_async_wait(wd))
        else:
            with pj.watch() as stream:  # every job in full (counts alone are too few bytes to fall behind)
                for event in stream:
                    pause(event.watched_unfinished)
                    if event.watched_unfinished == 0:
                        break
            final = pj.wait(timeout=90)
    assert final == dict.fromkeys(names + more, "SUCCEED")
    assert len(more) == CHAINS * LINKS
    assert _drops(wd) >= 1  # it was dropped, and went on from the present
    assert seen[-1] == 0  # the stream it read to the end is the reopened one


async def _async_wait(wd: Path) -> dict[str, str]:
    async with AsyncClient(wd) as pj:
        return await pj.wait(timeout=90)
