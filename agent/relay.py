"""pj-relay: many agents' AgentLink streams carried to the master over ONE RelayLink stream.

A master keeps one gRPC stream per agent; at thousands of nodes those streams are most of its
memory and of its reading (issue 16). A relay, run on one node of each group of nodes (a rack, a
few hundred nodes), serves AgentLink to the agents of its group exactly as the master does, and
holds one stream to the master for all of them: each agent's stream is a numbered link whose
messages go up in RelayUp batches and come down in RelayDown batches, as bytes the relay never
parses. The master treats a link as a direct stream (a refusal, a declared loss, a Shutdown
reach the agent with the same status and messages), so agents need nothing but the relay's
address (`pj-agent --master RELAY_ADDR`, with the run's token).

If the master's stream breaks, every agent's stream is ended UNAVAILABLE (the agents keep their
tasks and reconnect, as they do when the master restarts) and the relay connects again, until
--reconnect-timeout; once the master is gone and no agent is left, the relay exits 0.

    pj-relay --workdir DIR [--listen HOST:PORT] [--address-file F]
    pj-relay --master ADDR --token-file F [...]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import structlog

from pj import __version__
from pj.common import dial, logopts, logs
from pj.common.durations import DurationError, parse_duration
from pj.common.firstdone import first_done
from pj.common.tokenauth import TokenInterceptor
from pj.common.workdir import TOKEN_METADATA_KEY, MasterAddress, WorkdirError, find_master
from pj.v1 import pj_pb2 as pb
from pj.v1 import pj_pb2_grpc as rpc

log = structlog.get_logger("pj.relay")
EOF_ = grpc.aio.EOF  # type: ignore[attr-defined]

MAX_MESSAGE = 64 * 1024 * 1024
OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE),
    ("grpc.max_receive_message_length", MAX_MESSAGE),
]
SERVER_OPTIONS = [
    *OPTIONS,
    ("grpc.so_reuseport", 0),
    ("grpc.server.max_pending_requests", 65_536),  # a whole group registering at once (as the master)
    ("grpc.server.max_pending_requests_hard_limit", 65_536),
]
RETRY_MIN_S, RETRY_MAX_S = 0.2, 5.0
# RelayUps on their way to the master and not yet read there (RelayDown.taken) at most: what comes
# meanwhile waits and goes up in one. The master reads one message of a stream per turn of its
# loop; sent as fast as each write completed, 16 relays' small messages queued ~20 s there.
UP_WINDOW = 2
NO_MASTER = "the relay has no stream to the master now: try again"


class _End:
    """The master ended a link: end the agent's stream with this status."""

    __slots__ = ("code", "details")

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self.code = code
        self.details = details


_CODES = {c.value[0]: c for c in grpc.StatusCode}


class Relay:
    """The links (agent streams) and the one stream up. All in the event loop's thread."""

    def __init__(self, master: MasterAddress, workdir: Path | None = None) -> None:
        self.master = master
        self.links: dict[int, asyncio.Queue[bytes | _End]] = {}
        self.ids = itertools.count(1)
        self.up: list[pb.NodeUp] = []  # waiting to go up: sent as one RelayUp once the window allows
        self.up_ready = asyncio.Event()
        self.unread = 0  # RelayUps sent that the master has not said it read
        self.windowed = False  # the master says what it read (RelayDown.taken): keep to UP_WINDOW
        self.connected = False  # a stream to the master is open
        self.workdir = workdir  # where to look for the master again (None: --master was given)
        self.served = 0  # agents ever linked
        self.stop = asyncio.Event()

    # ------------------------------------------------------------------ agents' side

    async def agent(self, request_iterator: Any, context: grpc.aio.ServicerContext) -> None:
        """One agent's AgentLink.Connect, as raw bytes both ways."""
        if not self.connected:
            await context.abort(grpc.StatusCode.UNAVAILABLE, NO_MASTER)
        lid = next(self.ids)
        down: asyncio.Queue[bytes | _End] = asyncio.Queue()
        self.links[lid] = down
        self.served += 1
        end = pb.NodeUp.END_BROKEN
        try:
            first, task = await first_done(self._read(lid, context), self._write(down, context))
            if first == 0 and task.result():
                end = pb.NodeUp.END_GOODBYE
        except asyncio.CancelledError:
            raise
        except Exception as e:  # its stream broke
            log.info("agent stream broke", link=lid, error=repr(e))
        finally:
            del self.links[lid]
            self._send(pb.NodeUp(link=lid, end=end, ended_at=time.time()))

    async def _read(self, lid: int, context: grpc.aio.ServicerContext) -> bool:
        """Up with everything the agent says; True when it closed its side (a goodbye)."""
        while True:
            msg = await context.read()
            if msg is EOF_:
                return True
            self._send(pb.NodeUp(link=lid, message=msg))

    async def _write(self, down: asyncio.Queue[bytes | _End], context: grpc.aio.ServicerContext) -> None:
        while True:
            item = await down.get()
            if isinstance(item, _End):
                context.set_code(item.code)
                context.set_details(item.details)
                return
            await context.write(item)

    def _send(self, up: pb.NodeUp) -> None:
        if not self.connected:
            return  # the master is away: every link is being ended, and it forgets them all anyway
        self.up.append(up)
        self.up_ready.set()

    def _end_all(self, details: str) -> None:
        for down in self.links.values():
            down.put_nowait(_End(grpc.StatusCode.UNAVAILABLE, details))

    # ------------------------------------------------------------------ the master's side

    async def upstream(self, reconnect_timeout: float) -> None:
        """Hold the stream to the master; again after it breaks, until ``reconnect_timeout`` has
        passed without one. Returns when the master went away after every agent had left (the
        campaign is over), or on ``stop``."""
        retry = RETRY_MIN_S
        away_since = time.monotonic()
        while not self.stop.is_set():
            cut = 0
            try:
                master = self._find()
                async with dial.aio_channel(master, OPTIONS, local=False) as channel:
                    await asyncio.wait_for(channel.channel_ready(), 10.0)
                    call = rpc.RelayLinkStub(channel).Connect(metadata=((TOKEN_METADATA_KEY, master.token),))
                    retry = RETRY_MIN_S
                    try:
                        await self._carry(call)
                    finally:
                        cut = len(self.links)
                    if self.stop.is_set():
                        log.info("the relay stops (SIGTERM): its agents' streams end", links=cut)
                    else:
                        log.warning("the master ended the relay's stream", links=cut)
            except Exception as e:  # no master there, or its stream broke (at a campaign's end: no link left)
                say = log.info if self.connected and self.served and not self.links else log.warning
                say("no stream to the master", error=_short(e), links=len(self.links), retry_s=retry)
            was_connected, self.connected = self.connected, False
            self.up.clear()
            self._end_all("the relay lost its stream to the master; reconnect")
            if was_connected:
                away_since = time.monotonic()
                if self.served and cut == 0:
                    log.info("the master went away after every agent had left: the relay stops")
                    return
            if time.monotonic() - away_since > reconnect_timeout:
                log.error("no master for too long: the relay stops", reconnect_timeout_s=reconnect_timeout)
                raise SystemExit(1)
            try:
                await asyncio.wait_for(self.stop.wait(), retry)
            except TimeoutError:
                pass
            retry = min(RETRY_MAX_S, retry * 2)

    def _find(self) -> MasterAddress:
        if self.workdir is None:
            return self.master
        try:  # a restarted master may have written a new address
            return find_master(self.workdir)
        except WorkdirError:
            return self.master

    async def _carry(self, call: grpc.aio.StreamStreamCall) -> None:
        self.connected = True
        self.unread, self.windowed = 0, False
        log.info("relay connected to the master")
        # SIGTERM (stop): the agents' streams end, they reconnect elsewhere
        await first_done(self._down(call), self._up(call), self.stop.wait())

    async def _up(self, call: grpc.aio.StreamStreamCall) -> None:
        while True:
            await self.up_ready.wait()
            self.up_ready.clear()
            if not self.up or (self.windowed and self.unread >= UP_WINDOW):
                continue  # (woken again when the master says it read one)
            batch = pb.RelayUp(up=self.up, time=time.time())
            self.up = []
            self.unread += 1
            await call.write(batch)

    async def _down(self, call: grpc.aio.StreamStreamCall) -> None:
        while True:
            msg = await call.read()
            if msg is EOF_:
                return
            assert isinstance(msg, pb.RelayDown)
            if msg.taken:
                self.windowed = True
                self.unread = max(0, self.unread - msg.taken)
                if self.up:
                    self.up_ready.set()
            links = self.links
            for d in msg.down:
                q = links.get(d.link)
                if q is None:
                    continue  # its agent is gone meanwhile (its end is on the way up)
                if d.message:
                    q.put_nowait(d.message)
                if d.code:
                    q.put_nowait(_End(_CODES.get(d.code, grpc.StatusCode.UNKNOWN), d.details))


def _short(e: BaseException) -> str:
    while isinstance(e, BaseExceptionGroup) and e.exceptions:
        e = e.exceptions[0]
    if isinstance(e, grpc.aio.AioRpcError):
        return f"{e.code().name}: {e.details()}"
    return str(e) or type(e).__name__


def _address(listen: str, port: int) -> str:
    host = listen.rsplit(":", 1)[0]
    if host in ("0.0.0.0", "[::]", ""):
        host = socket.gethostname()
    return f"{host}:{port}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="pj-relay", description=__doc__.split("\n\n")[0] if __doc__ else None)
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workdir", metavar="DIR", help="the master's workdir (default: $PJ_WORKDIR)")
    where.add_argument("--master", metavar="ADDR", help="the master's address host:port (needs --token-file)")
    p.add_argument("--token-file", metavar="F", help="file holding the run's token")
    p.add_argument("--listen", default="0.0.0.0:0", metavar="HOST:PORT",
                   help="where agents connect (default 0.0.0.0:0: every interface, a free port)")
    p.add_argument("--address-file", metavar="F",
                   help="write the address agents connect to (host:port) to F once listening")
    p.add_argument("--wait-master", metavar="S", type=float, default=30.0,
                   help="seconds to wait for DIR/master.json at start (default 30)")
    p.add_argument("--reconnect-timeout", metavar="DURATION", default="10m",
                   help="when the stream to the master breaks, try again for this long (default 10m)")
    logopts.add_options(p)
    p.add_argument("--version", action="version", version=f"pj-relay {__version__}")
    return p.parse_args(argv)


async def serve(args: argparse.Namespace, master: MasterAddress, reconnect_timeout: float) -> int:
    relay = Relay(master, None if args.master else master.workdir)
    server = grpc.aio.server(options=SERVER_OPTIONS, interceptors=[TokenInterceptor(master.token)])
    handler = grpc.stream_stream_rpc_method_handler(relay.agent)  # bytes in, bytes out: never parsed
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("pj.v1.AgentLink", {"Connect": handler}),))
    port = server.add_insecure_port(args.listen)
    await server.start()
    address = _address(args.listen, port)
    if args.address_file:
        tmp = Path(args.address_file + ".tmp")
        tmp.write_text(address + "\n")
        tmp.replace(args.address_file)
    print(f"pj-relay: serving agents at {address}", file=sys.stderr, flush=True)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, relay.stop.set)
    try:
        await relay.upstream(reconnect_timeout)
    finally:
        await server.stop(1.0)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        reconnect_timeout = parse_duration(args.reconnect_timeout, "--reconnect-timeout")
    except (DurationError, ValueError) as e:
        print(f"pj-relay: {e}", file=sys.stderr)
        return 2
    try:
        master = find_master(args.workdir, args.master, args.token_file, wait_s=args.wait_master)
    except WorkdirError as e:
        print(f"pj-relay: {e}", file=sys.stderr)
        return 2
    if master.tls_cert is not None:
        print("pj-relay: the master serves TLS and relays do not yet (agents would reach the relay in plain "
              "text): run the agents without a relay, or the master without --tls", file=sys.stderr)
        return 2
    logs.setup(args.log_level, component="relay", fmt=args.log_format)
    try:
        return asyncio.run(serve(args, master, reconnect_timeout))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
