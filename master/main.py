"""`pj-master`: serve one campaign's queue, scheduler and registry over gRPC.

    pj-master --workdir DIR [--listen HOST:PORT] [--expect-nodes K]

Writes DIR/token (0600) and DIR/master.json (its address) when ready; after
`pj finish` (or SIGTERM) and once every job has ended it tells the agents to stop,
writes DIR/jobs.jsonl and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import grpc
import structlog

from pj import __version__
from pj.common import logs
from pj.common.workdir import write_master_info, write_token
from pj.v1 import pj_pb2_grpc as rpc

from . import report
from .core import Core
from .launch import Context
from .runtime import Master
from .service import AgentLinkService, PilotJobService, TokenInterceptor

log = structlog.get_logger("pj.master")

MAX_MESSAGE = 64 * 1024 * 1024
GRPC_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE),
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.so_reuseport", 0),
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="pj-master", description="Serve a PJ campaign: queue, scheduler, registry.")
    p.add_argument("--workdir", required=True, help="directory for master.json, token, logs and jobs.jsonl")
    p.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT to listen on (default 127.0.0.1:0)")
    p.add_argument(
        "--expect-nodes",
        type=int,
        default=None,
        metavar="K",
        help="agents the run expects; a job too big for them fails only once all have joined",
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--version", action="version", version=f"pj-master {__version__}")
    args = p.parse_args(argv)
    if args.expect_nodes is not None and args.expect_nodes < 1:
        p.error("--expect-nodes: must be at least 1")
    return args


async def serve(args: argparse.Namespace) -> int:
    workdir = Path(args.workdir).absolute()
    token = write_token(workdir)
    core = Core(expected_nodes=args.expect_nodes)
    master = Master(core)
    server = grpc.aio.server(options=GRPC_OPTIONS, interceptors=[TokenInterceptor(token)])
    rpc.add_PilotJobServicer_to_server(PilotJobService(master), server)
    rpc.add_AgentLinkServicer_to_server(AgentLinkService(master), server)
    try:
        port = server.add_insecure_port(args.listen)
    except RuntimeError as e:
        print(f"pj-master: --listen {args.listen}: cannot listen there ({e})", file=sys.stderr)
        return 2
    host = args.listen.rpartition(":")[0] or "127.0.0.1"
    if host in ("0.0.0.0", "[::]", ""):
        host = socket.gethostname()
    address = f"{host}:{port}"
    master.address = address
    core.ctx = Context(master=address, workdir=str(workdir))
    await server.start()
    write_master_info(
        workdir,
        {"address": address, "pid": os.getpid(), "started_at": master.started_at, "version": __version__},
    )
    log.info("master ready", address=address, workdir=str(workdir), expect_nodes=args.expect_nodes)

    loop = asyncio.get_running_loop()

    def on_signal(sig: int) -> None:
        log.warning("signal: cancelling every job and stopping", signal=signal.Signals(sig).name)
        core.finish(drain=False, now=master.now())
        master.poke()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)

    async with asyncio.TaskGroup() as tg:
        tg.create_task(master.run())
    await master.shutdown_agents("the campaign has finished")
    n = report.write(str(workdir / "jobs.jsonl"), core.registry)
    log.info("report written", path=str(workdir / "jobs.jsonl"), lines=n)
    await server.stop(grace=1.0)
    (workdir / "master.json").unlink(missing_ok=True)
    log.info("master stopped", jobs=len(core.registry), unfinished=core.unfinished)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(args.workdir)
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        print(f"pj-master: --workdir {workdir}: {e.strerror}", file=sys.stderr)
        return 2
    logs.setup(args.log_level, component="master")
    return asyncio.run(serve(args))


if __name__ == "__main__":
    sys.exit(main())
