"""`pj-master`: serve one campaign's queue, scheduler and registry over gRPC.

    pj-master --workdir DIR [--listen HOST:PORT] [--expect-nodes K|HOSTLIST]
              [--node-timeout DURATION] [--missing-nodes continue|fail] [--slurm|--no-slurm] [--tls]
              [--resume]
              [--heartbeat-timeout DURATION] [--crash-limit N]

Writes DIR/token (0600) and DIR/master.json (its address) when ready (with --tls also
DIR/tls.crt and DIR/tls.key; it also listens on the Unix socket DIR/master.sock, 0600); after
`pj finish` (or SIGTERM) and once every job has ended it tells the agents to stop,
writes DIR/jobs.jsonl and exits 0 (3: every job ended, but jobs.jsonl could not be written: a full
disk; the journal still holds every end). The registry is journaled in DIR/journal.db (journal.py);
`--resume` continues the campaign journaled there (restore.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import signal
import socket
import sys
import time
from pathlib import Path

import grpc
import structlog

from pj import __version__
from pj.common import logopts, logs, perms
from pj.common.durations import parse_duration
from pj.common.fastexit import exit_now
from pj.common.journalcheck import damaged, resume_problem
from pj.common.tokenauth import TokenInterceptor
from pj.common.workdir import (
    REPORT_NOT_WRITTEN_EXIT,
    SOCKET_FILE,
    TLS_CERT_FILE,
    write_master_info,
    write_token,
)

from . import journal, report, writefault
from .allocshell import AllocShell
from .core import Core
from .expect import DEFAULT_TIMEOUT_S, POLICIES, Expectation
from .launch import Context
from .restore import restore
from .runtime import HEARTBEAT_TIMEOUT_S, Dispatcher
from .service import add_services
from .watchhub import WATCH_BACKLOG_MB, WATCH_STALL_S, WatchHub
from .writefault import WRITE_ERRORS

log = structlog.get_logger("pj.master")

MAX_MESSAGE = 64 * 1024 * 1024
MAX_PENDING_CALLS = 65_536  # calls grpc holds for the server before it refuses new ones
GRPC_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE),
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.so_reuseport", 0),
    # Calls that have arrived but that the asyncio server has not taken up yet (it takes one at a
    # time, between the loop's other work) wait in grpc's backlog; past its soft limit (default
    # 1,000) grpc rejects new ones at random, all past its hard limit (3,000), and the agent sees its
    # stream CANCELLED before the Welcome. 8,192 agents registering at once outrun a loaded loop:
    # room for every agent of a leadership-class allocation (scripts/swarm --no-retry, issue 16).
    ("grpc.server.max_pending_requests", MAX_PENDING_CALLS),
    ("grpc.server.max_pending_requests_hard_limit", MAX_PENDING_CALLS),
]
# A storm's losses in one pass (reconcile.Reconciler.gather): a busy master at 8,192 nodes heard
# 820 direct streams end over 1.8 s (docs/architecture.md, Scale); a tenth of the grace at most.
LOSS_GATHER_S = 2.0
MAX_SOCKET_PATH = 107  # sun_path holds 108 bytes with the terminating NUL


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
    p.add_argument(
        "--tls",
        action="store_true",
        help="serve the TCP port over TLS with a fresh certificate for this run (DIR/tls.crt, which "
        "clients pin)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the campaign journaled in DIR/journal.db (same token): finished jobs stay "
        "finished, tasks still running on agents that reconnect are adopted, the rest runs again",
    )
    p.add_argument(
        "--heartbeat-timeout",
        default=str(HEARTBEAT_TIMEOUT_S),
        metavar="DURATION",
        help="an agent silent this long (seconds or a duration: 30s, 2m), or whose stream broke and "
        "that has not registered again since, is lost and its tasks are "
        f"retried elsewhere (agents send heartbeats every min(10 s, timeout/3)); default {HEARTBEAT_TIMEOUT_S:g} s",
    )
    p.add_argument(
        "--crash-limit",
        type=int,
        default=3,
        metavar="N",
        help="a task that was running on nodes that were lost N times fails even with retries left "
        "(default 3; 0: no limit)",
    )
    p.add_argument(
        "--prefetch",
        action=argparse.BooleanOptionalAction,
        default=os.environ.get("PJ_PREFETCH", "1") not in ("0", "no", "off", "false"),
        help="while every core is busy, send the next ready task (one node, an exact core count) to "
        "the agent ahead of time, to start the moment a running task's cores free; taken back if it "
        "waits while other cores idle (default: on; env PJ_PREFETCH=0 turns it off)",
    )
    p.add_argument(
        "--watch-backlog", type=float, default=WATCH_BACKLOG_MB, metavar="MB",
        help="a Watch of every job whose client falls more than MB behind and reads nothing for "
        f"--watch-stall is dropped (RESOURCE_EXHAUSTED; clients watch again); default {WATCH_BACKLOG_MB:g}",
    )
    p.add_argument(
        "--watch-stall", default=str(WATCH_STALL_S), metavar="DURATION",
        help=f"see --watch-backlog (seconds or a duration); default {WATCH_STALL_S:g} s",
    )
    logopts.add_options(p)
    p.add_argument(
        "--share-group", action="store_true",
        help="let the workdir's group read it (directories 0750, files 0640; also PJ_SHARE=group); "
        "default: the owner alone (0700, 0600)",
    )
    p.add_argument("--version", action="version", version=f"pj-master {__version__}")
    args = p.parse_args(argv)
    if args.crash_limit < 0:
        p.error("--crash-limit: must be 0 (no limit) or more")
    if not args.watch_backlog >= 0:
        p.error("--watch-backlog: must be 0 MB or more")
    try:
        args.heartbeat_timeout = node_timeout(args.heartbeat_timeout, "--heartbeat-timeout")
        if args.heartbeat_timeout <= 0:
            raise ValueError("--heartbeat-timeout: must be more than 0")
        args.watch_stall = node_timeout(args.watch_stall, "--watch-stall")
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


def node_timeout(text: str, option: str = "--node-timeout") -> float:
    """A plain number is seconds here (parse_duration reads a bare number in a string as minutes)."""
    try:
        value: str | float = float(text)
    except ValueError:
        value = text
    return parse_duration(value, option)  # DurationError is a ValueError


async def serve(args: argparse.Namespace, own_process: bool = False) -> int:
    """Run the campaign to its end. ``own_process`` (pj-master's own command line, not a test): end
    the process right after the last word, skipping the loop's and the interpreter's teardown
    (grpc's threads, every module: tens of ms that `pj run` would wait for)."""
    workdir = Path(args.workdir).absolute()
    core = Core(expect=args.expect, now=time.time(), crash_limit=args.crash_limit, prefetch_on=args.prefetch)
    core.recon.grace = args.heartbeat_timeout  # a node cut off that long is lost
    core.recon.gather = min(LOSS_GATHER_S, args.heartbeat_timeout / 10)  # ... with those due soon after
    jour = journal_or_refusal(workdir, core, args.resume, args.node_timeout)
    if isinstance(jour, str):  # the journal comes before the token: a refused resume writes nothing
        print(jour, file=sys.stderr)
        return 2
    token = write_token(workdir, keep=args.resume)
    master = Dispatcher(core, journal=jour)
    master.heartbeat_timeout = args.heartbeat_timeout
    master.hub = WatchHub(master.event, backlog_mb=args.watch_backlog, stall_s=args.watch_stall)
    server = grpc.aio.server(options=GRPC_OPTIONS, interceptors=[TokenInterceptor(token)])
    allocs = AllocShell(master, workdir)  # `pj alloc`: allocations on demand (idle without a queue)
    add_services(master, server, allocs)
    host = args.listen.rpartition(":")[0] or "127.0.0.1"
    if host in ("0.0.0.0", "[::]", ""):
        host = socket.gethostname()
    tls: dict[str, object] = {}
    try:
        if args.tls:
            from .tls import write_cert  # cryptography costs ~35 ms of start-up: only when asked

            cert, key, fingerprint = write_cert(workdir, [host, socket.gethostname(), socket.getfqdn()])
            creds = grpc.ssl_server_credentials([(key, cert)])
            port = server.add_secure_port(args.listen, creds)
            tls = {"tls": True, "tls_cert": str(workdir / TLS_CERT_FILE), "tls_sha256": fingerprint}
        else:
            port = server.add_insecure_port(args.listen)
    except RuntimeError as e:
        print(f"pj-master: --listen {args.listen}: cannot listen there ({e})", file=sys.stderr)
        return 2
    sock = listen_unix(server, workdir)
    address = f"{host}:{port}"
    master.address = address
    core.ctx = Context(master=address, workdir=str(workdir), slurm=args.slurm)
    await server.start()
    local: dict[str, object] = {}
    if sock is not None:
        os.chmod(sock, 0o600)
        local = {"socket": str(sock), "host": socket.gethostname()}
    write_master_info(
        workdir,
        {"address": address, "pid": os.getpid(), "started_at": master.started_at, "version": __version__,
         **tls, **local},
    )
    log.info(
        "master ready",
        address=address,
        workdir=str(workdir),
        expect_nodes=args.expect.describe() if args.expect else None,
        node_timeout_s=args.node_timeout,
        heartbeat_timeout_s=args.heartbeat_timeout,
        crash_limit=args.crash_limit,
        slurm=args.slurm,
        tls=bool(args.tls),
        socket=str(sock) if sock else None,
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
        tg.create_task(master.watch_agents())  # ends with run()
        tg.create_task(allocs.run())  # ends with run(), cancelling the allocations still alive
    await master.shutdown_agents("the campaign has finished")
    failure = await write_report(workdir, core)
    await server.stop(grace=1.0)
    (workdir / "master.json").unlink(missing_ok=True)
    if sock is not None:
        sock.unlink(missing_ok=True)
    jour.close()
    log.info("master stopped", jobs=len(core.registry), unfinished=core.unfinished)
    code = REPORT_NOT_WRITTEN_EXIT if failure else 0
    if own_process:  # the report is written (or said not to be), the journal closed, the server stopped
        exit_now(code)
    return code


REPORT_TRIES = 5  # a report that cannot be written is tried this often, waiting 0.1 s doubling


async def write_report(workdir: Path, core: Core) -> str:
    """Write DIR/jobs.jsonl (whole or not at all), trying again a few times; the one line that
    says it was not written ("" when it was), also printed to stderr (master.log)."""
    path, delay = workdir / "jobs.jsonl", 0.1
    for attempt in range(1, REPORT_TRIES + 1):
        try:
            n = report.write(str(path), core.registry)
        except WRITE_ERRORS as e:
            line = writefault.report_failure(path, journal.path_in(workdir), e)
            log.warning("cannot write the report", path=str(path), error=writefault.cause(e), attempt=attempt)
            if attempt == REPORT_TRIES:
                with contextlib.suppress(OSError):  # stderr may be a file on the same full disk
                    print(f"pj-master: {line}", file=sys.stderr, flush=True)
                return line
            await asyncio.sleep(delay)
            delay *= 2
        else:
            log.info("report written", path=str(path), lines=n)
            return ""
    return ""


def open_journal(workdir: Path, core: Core, resume: bool, node_timeout: float = 60.0) -> journal.Journal:
    """Open DIR/journal.db; with ``resume``, first rebuild ``core`` from what it holds (the tasks
    placed then wait ``node_timeout`` for their agents)."""
    jour = journal.Journal(journal.path_in(workdir))
    core.campaign = jour.campaign()
    if resume:
        # The replay makes millions of long-lived objects: the cyclic GC would scan them again and
        # again as they pile up. Off for the replay; what it built is then frozen out of its view.
        gc.disable()
        try:
            batches, tasks, jobs, requests = jour.stream()
            restore(core, batches, tasks, jobs, requests, time.time(), jour.placements(), node_timeout,
                    jour.attempts())
        except BaseException:
            jour.close()  # a refused resume leaves no -wal/-shm behind
            raise
        finally:
            gc.enable()
            gc.freeze()
        log.info("campaign resumed", campaign=core.campaign, batches=len(batches), jobs=len(core.registry),
                 finished=len(core.registry) - core.unfinished, unfinished=core.unfinished,
                 orphans=len(core.recon.orphans))
    return jour


def journal_or_refusal(workdir: Path, core: Core, resume: bool, node_timeout: float) -> journal.Journal | str:
    """``open_journal``, or the one line that refuses to start: a journal that cannot be opened, or
    (resuming) whose rows cannot be read or replayed, whatever the fault (never a traceback)."""
    path = journal.path_in(workdir)
    try:
        return open_journal(workdir, core, resume, node_timeout)
    except journal.JournalError as e:
        if not resume:
            return f"pj-master: {e}"
        text = str(e)
        return "pj-master: --resume: " + damaged(path, text.removeprefix(f"{path}: "))
    except Exception as e:
        if not resume:
            raise
        what = f"a row cannot be read or replayed ({type(e).__name__}: {e})"
        return "pj-master: --resume: " + damaged(path, what)


def listen_unix(server: grpc.aio.Server, workdir: Path) -> Path | None:
    """Also serve DIR/master.sock (plaintext: the file is the owner's alone), if the path fits."""
    path = workdir / SOCKET_FILE
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        log.info("no Unix socket: the workdir's path is too long for one", path=str(path))
        return None
    path.unlink(missing_ok=True)  # a stale one from an earlier run
    try:
        server.add_insecure_port(f"unix:{path}")
    except RuntimeError as e:
        log.warning("no Unix socket: cannot listen there", path=str(path), error=str(e))
        return None
    return path


GC_YOUNG = 10_000


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(args.workdir)
    if args.resume and (problem := resume_problem(journal.path_in(workdir.absolute()))) is not None:
        print(f"pj-master: --resume: {problem}", file=sys.stderr)  # before the workdir is made
        return 2
    if args.share_group:
        os.environ[perms.SHARE_ENV] = "group"  # for what it writes, and what it starts (perms.py)
    try:
        perms.make_dir(workdir, perms.modes().dir)
    except perms.ShareError as e:
        print(f"pj-master: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"pj-master: --workdir {workdir}: {e.strerror}", file=sys.stderr)
        return 2
    if not args.resume and journal.path_in(workdir).exists():
        print(
            f"pj-master: --workdir {workdir}: a campaign was run here ({journal.path_in(workdir)} exists); "
            "continue it with --resume, or use another --workdir",
            file=sys.stderr,
        )
        return 2
    logs.setup(args.log_level, component="master", fmt=args.log_format)
    # The registry holds hundreds of thousands of long-lived objects and every task allocates a
    # few more: collecting the young generation every 700 allocations (the default) cost about a
    # tenth of the master's time per task; every GC_YOUNG is as safe and nearly free.
    gc.set_threshold(GC_YOUNG, 10, 10)
    return asyncio.run(serve(args, own_process=argv is None))


if __name__ == "__main__":
    sys.exit(main())
