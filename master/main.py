"""`pj-master`: serve one campaign's queue, scheduler and registry over gRPC.

    pj-master --workdir DIR [--listen HOST:PORT] [--expect-nodes K|HOSTLIST]
              [--node-timeout DURATION] [--missing-nodes continue|fail] [--slurm|--no-slurm]

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
import time
from pathlib import Path

import grpc
import structlog

from pj import __version__
from pj.common import logs
from pj.common.durations import parse_duration
from pj.common.workdir import write_master_info, write_token
from pj.v1 import pj_pb2_grpc as rpc

from . import report
from .core import Core
from .expect import DEFAULT_TIMEOUT_S, POLICIES, Expectation
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
        default=None,
        metavar="K|HOSTLIST",
        help="the agents the run expects: a count (4) or a Slurm host list (n[1-4]); a job too big "
        "for them fails only once all have joined or --node-timeout has passed",
    )
    p.add_argument(
        "--node-timeout",
        default=str(DEFAULT_TIMEOUT_S),
        metavar="DURATION",
        help="how long to wait for the expected agents: seconds (90) or a duration (90s, 2m); "
        f"default {DEFAULT_TIMEOUT_S:g} s",
    )
    p.add_argument(
        "--missing-nodes",
        choices=POLICIES,
        default="continue",
        help="when expected agents have not joined by --node-timeout: go on with those that came "
        "(continue, the default) or cancel every job and stop (fail)",
    )
    p.add_argument(
        "--slurm",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="Slurm mode: parallel models call srun, tasks see SLURM_* describing their own share "
        "(default: on when SLURM_JOB_ID is set)",
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--version", action="version", version=f"pj-master {__version__}")
    args = p.parse_args(argv)
    try:
        args.node_timeout = node_timeout(args.node_timeout)
        args.expect = (
            None
            if args.expect_nodes is None
            else Expectation.parse(args.expect_nodes, args.node_timeout, args.missing_nodes)
        )
    except ValueError as e:
        p.error(str(e))
    if args.slurm is None:
        args.slurm = "SLURM_JOB_ID" in os.environ
    return args


def node_timeout(text: str) -> float:
    """A plain number is seconds here (parse_duration reads a bare number in a string as minutes)."""
    try:
        value: str | float = float(text)
    except ValueError:
        value = text
    return parse_duration(value, "--node-timeout")  # DurationError is a ValueError


async def serve(args: argparse.Namespace) -> int:
    workdir = Path(args.workdir).absolute()
    token = write_token(workdir)
    core = Core(expect=args.expect, now=time.time())
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
    core.ctx = Context(master=address, workdir=str(workdir), slurm=args.slurm)
    await server.start()
    write_master_info(
        workdir,
        {"address": address, "pid": os.getpid(), "started_at": master.started_at, "version": __version__},
    )
    log.info(
        "master ready",
        address=address,
        workdir=str(workdir),
        expect_nodes=args.expect.describe() if args.expect else None,
        node_timeout_s=args.node_timeout,
        slurm=args.slurm,
    )

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
