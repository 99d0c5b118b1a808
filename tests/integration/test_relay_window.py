"""pj-relay's window up (RelayDown.taken): a real relay process, a real agent stream into it, and a
master side played by a gRPC server in this test that reads every RelayUp but says it read them only
when the test lets it. The relay must then keep at most UP_WINDOW RelayUps unread and bring all that
came meanwhile up in ONE message once the master says it read them: a busy master reads one message
of a stream per turn of its loop, and a relay that sends a small message per write queues seconds of
heartbeats and link ends there (issue 16's drop storm through 16 relays). A SIGTERM stops the relay
even while its stream to the master is open."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import grpc

from pj.agent.relay import UP_WINDOW
from pj.common.workdir import TOKEN_METADATA_KEY
from pj.v1 import pj_pb2 as pb
from pj.v1 import pj_pb2_grpc as rpc

from ..grpcserve import serve, token_file

TOKEN = "t0ken-for-the-window-test"


class HeldMaster(rpc.RelayLinkServicer):
    """Reads every RelayUp at once; acknowledges (RelayDown.taken) only on ``ack``."""

    def __init__(self) -> None:
        self.got: list[pb.RelayUp] = []
        self.arrived = asyncio.Event()
        self.connected = asyncio.Event()  # the relay's stream is here: it takes agents from now on
        self.acks: asyncio.Queue[int] = asyncio.Queue()

    async def Connect(self, request_iterator, context):  # type: ignore[no-untyped-def]
        self.connected.set()
        async def read() -> None:
            async for up in request_iterator:
                self.got.append(up)
                self.arrived.set()

        async with asyncio.TaskGroup() as tg:
            reader = tg.create_task(read())
            while not reader.done():
                n = await self.acks.get()
                yield pb.RelayDown(taken=n)


async def wait_for(what: str, cond, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def beats(ups: list[pb.RelayUp]) -> int:
    return sum(1 for up in ups for u in up.up if u.message and pb.AgentMessage.FromString(u.message).HasField("heartbeat"))


async def scenario(tmp_path: Path) -> None:
    master = HeldMaster()
    server, port = await serve(rpc.add_RelayLinkServicer_to_server, master)
    token = token_file(tmp_path, TOKEN)
    addr_file = tmp_path / "relay.addr"
    relay = subprocess.Popen([sys.executable, "-m", "pj.agent.relay", "--master", f"127.0.0.1:{port}",
                              "--token-file", str(token), "--listen", "127.0.0.1:0",
                              "--address-file", str(addr_file)],
                             stdout=subprocess.DEVNULL, stderr=open(tmp_path / "relay.log", "w"))
    try:
        await wait_for("the relay's address", addr_file.exists)
        await wait_for("the relay's stream to the master", master.connected.is_set)  # before, it refuses agents
        async with grpc.aio.insecure_channel(addr_file.read_text().strip()) as ch:
            outgoing: asyncio.Queue[pb.AgentMessage] = asyncio.Queue()

            async def requests():  # type: ignore[no-untyped-def]
                while True:
                    yield await outgoing.get()

            call = rpc.AgentLinkStub(ch).Connect(requests(), metadata=((TOKEN_METADATA_KEY, TOKEN),))
            await outgoing.put(pb.AgentMessage(register=pb.Register(node="n0", cores=1)))
            await wait_for("the Register at the master", lambda: len(master.got) >= 1)
            await master.acks.put(1)  # the master says it reads: the relay keeps to its window from now on
            await asyncio.sleep(0.3)
            sent = 0
            for _ in range(40):  # heartbeats, each in a write of its own, nothing more acknowledged
                sent += 1
                await outgoing.put(pb.AgentMessage(heartbeat=pb.Heartbeat(time=time.time())))
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.5)
            held = len(master.got) - 1
            assert held <= UP_WINDOW, f"{held} RelayUps came up unread, more than the window {UP_WINDOW}"
            assert beats(master.got) < sent  # the rest wait at the relay
            before = len(master.got)
            await master.acks.put(held)  # read them all: the relay sends what waited
            await wait_for("every heartbeat at the master", lambda: beats(master.got) == sent)
            assert len(master.got) - before <= UP_WINDOW, "what waited did not come up gathered"
            call.cancel()
        relay.terminate()  # while its stream to the master is open: it stops all the same
        assert await asyncio.to_thread(relay.wait, 10) == 0
    finally:
        if relay.poll() is None:
            relay.kill()
            relay.wait(10)
        await server.stop(0)


def test_the_relay_keeps_its_window_and_brings_up_what_waited_in_one_message(tmp_path: Path) -> None:
    asyncio.run(scenario(tmp_path))
