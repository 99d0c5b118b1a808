"""pj-agent: runs the tasks the master sends to this node.

    pj-agent (--workdir DIR | --master ADDR --token-file F [--tls-cert FILE]) [--name NODE] [--cores N]
             [--gpus LIST] [--kill-grace S] [--log-level L] [--wait-master S]
             [--reconnect-timeout DURATION] [--dry-run]
    pj-agent --print-resources [--name NODE] [--cores N] [--gpus LIST]

Slurm mode (started by srun: $SLURM_JOB_ID and $SLURM_STEP_ID are set): cores default to the
CPUs Slurm grants on this node, GPUs to the step's, and tasks get the allocation's environment
without the variables that describe the agent's own step (slurm.py).

The agent outlives its master: when the stream breaks after a Welcome (the master killed, a
network cut), the tasks keep running and the agent reconnects with back-off (0.2 s doubling to
5 s, jittered) for --reconnect-timeout (default 10 min), finding the master again through
DIR/master.json (a restarted master may listen elsewhere, with another certificate and token) or
at the same --master address. Its Register then names the campaign, the tasks still running and
the exits the master may have missed (those that ended meanwhile, and those sent in the last
120 s: the master ignores duplicates). When the timeout passes, or the master refuses it, the
agent stops every task and exits 1. A new agent whose first dial fails (DIR/master.json names a
master that is gone: killed, or restarting on another port) looks again the same way, for as long.

--dry-run (or $PJ_AGENT_DRY_RUN=1, which reaches the agents `pj run` starts): no process is started;
every task is reported started and exited 0 at once (the dispatch ceiling: master and wire alone).

Exit status: 0 after the master's Shutdown; 1 when the link to the master broke for good
(every task is killed first); 2 for bad arguments; 128+N after signal N
(SIGTERM, SIGINT: the tasks are killed and reported first).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import grpc
import structlog

from pj import __version__
from pj.common import logs
from pj.common.durations import DurationError, format_duration, parse_duration
from pj.common.fastexit import exit_now
from pj.common.workdir import MasterAddress, WorkdirError, find_master
from pj.v1 import pj_pb2

from . import convert, guard, slurm, tails
from .hostfiles import Hostfiles
from .launcher import DryLauncher, Launcher
from .link import Link, LinkBroken, LinkRefused, Outcome
from .reconnect import SentExits, backoff_delay
from .resources import NodeResources, ResourceError, detect
from .runner import Runner
from .signals import SignalHub
from .state import AgentState

log = structlog.get_logger("pj.agent")

EXIT_OK = 0
EXIT_LINK = 1
EXIT_USAGE = 2
_LOG_LEVELS = ("debug", "info", "warning", "error")
# How long to wait for tasks after SIGKILL before giving up on them (stuck in D state).
_AFTER_KILL_S = 10.0
RECONNECT_TIMEOUT_S = 600.0
DRY_RUN_ENV = "PJ_AGENT_DRY_RUN"  # non-empty: as --dry-run (reaches agents that pj run starts)
SPAWN_THREADS_ENV = "PJ_AGENT_SPAWN_THREADS"  # as --spawn-threads (reaches agents that pj run starts)
SPAWN_THREADS_MAX = 8
# Below this many cores the loop keeps up with spawning by itself, and handing each spawn to a
# thread and its pid back costs more than it frees (measured: 2 cores, even locally; 4 agents of
# 2 cores on 2 CPUs, 9% slower with threads; 4 cores, 1.08x faster with them; 8 cores, 1.31x).
SPAWN_THREADS_MIN_CORES = 4
# A reconnect attempt waits at most this long for the channel (then backs off and looks again:
# a restarted master may have written a new address meanwhile).
_REDIAL_READY_S = 3.0
# Refusals worth another try while reconnecting: the master may not have noticed yet that our old
# stream is dead ("node ... is already connected").
_RETRY_REFUSALS = frozenset({grpc.StatusCode.ALREADY_EXISTS})


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {n}")
    return n


def _count(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return n


def _seconds(text: str) -> float:
    try:
        s = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not s >= 0 or s == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, not {text}")
    return s


def _duration(text: str) -> float:
    """Seconds ("90", "0") or a duration ("10m", "1h")."""
    try:
        value: str | float = float(text)
    except ValueError:
        value = text
    if value == 0:
        return 0.0
    try:
        return parse_duration(value, "--reconnect-timeout")
    except (DurationError, ValueError) as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _parser() -> _Parser:
    p = _Parser(prog="pj-agent", description="Run the tasks a PJ master sends to this node.")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workdir", metavar="DIR", help="the master's workdir (default: $PJ_WORKDIR)")
    where.add_argument("--master", metavar="ADDR", help="the master's address host:port (needs --token-file)")
    p.add_argument("--token-file", metavar="F", help="file holding the master's token")
    p.add_argument(
        "--tls-cert",
        metavar="FILE",
        help="with --master: the run's certificate (DIR/tls.crt) when the master runs with --tls",
    )
    p.add_argument("--name", metavar="NODE", help="node name (default: $SLURMD_NODENAME, else the hostname)")
    p.add_argument(
        "--cores",
        metavar="N",
        type=_positive_int,
        help="logical cores to offer (default: the CPUs Slurm grants on this node, else the usable "
        "CPUs; more emulates a bigger node)",
    )
    p.add_argument(
        "--gpus",
        metavar="LIST",
        help="GPU ids, comma-separated (default: $CUDA_VISIBLE_DEVICES, else $SLURM_STEP_GPUS, "
        "else $SLURM_JOB_GPUS)",
    )
    p.add_argument(
        "--kill-grace",
        metavar="S",
        type=_seconds,
        default=5.0,
        help="seconds between SIGTERM and SIGKILL when stopping a task (default 5)",
    )
    p.add_argument(
        "--log-level",
        metavar="L",
        default="info",
        type=str.lower,
        choices=_LOG_LEVELS,
        help="debug, info, warning or error (default info)",
    )
    p.add_argument(
        "--wait-master",
        metavar="S",
        type=_seconds,
        default=30.0,
        help="seconds to wait for DIR/master.json and for the master to answer (default 30)",
    )
    p.add_argument(
        "--reconnect-timeout",
        metavar="DURATION",
        type=_duration,
        default=RECONNECT_TIMEOUT_S,
        help="when the stream to the master breaks, keep the tasks running and reconnect for this "
        "long (seconds or a duration: 90, 10m) before stopping them and exiting 1; also how long a new "
        "agent keeps looking for a master it cannot reach; 0: never "
        f"reconnect (default {format_duration(RECONNECT_TIMEOUT_S)})",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        default=bool(os.environ.get(DRY_RUN_ENV)),
        help="start no process: report every task started and exited 0 at once (to measure the "
        f"master and the wire alone; also ${DRY_RUN_ENV}=1)",
    )
    p.add_argument(
        "--spawn-threads",
        metavar="N",
        type=_count,
        default=os.environ.get(SPAWN_THREADS_ENV) or None,
        help="threads that start task processes (posix_spawn with the GIL released) while the "
        "agent goes on reading orders and reporting exits (default: one per real CPU, at most "
        f"{SPAWN_THREADS_MAX}, and none below {SPAWN_THREADS_MIN_CORES} cores; 0: start them in the "
        f"agent's main thread; also ${SPAWN_THREADS_ENV})",
    )
    p.add_argument(
        "--print-resources",
        action="store_true",
        help="print what this node offers (node, cores, real CPUs, GPUs) as JSON and exit",
    )
    p.add_argument("--version", action="version", version=f"pj-agent {__version__}")
    return p


@dataclass(frozen=True)
class Config:
    master: MasterAddress
    name: str
    resources: NodeResources
    kill_grace: float
    wait_master: float
    log_level: str = "info"
    slurm_step: bool = False  # started by srun: tasks get the allocation's environment
    reconnect_timeout: float = 0.0  # 0: a broken stream ends the agent (its tasks killed)
    # Finds the master again (re-reads DIR/master.json, the token, the certificate); None: cfg.master.
    rediscover: Callable[[], MasterAddress] | None = None
    dry_run: bool = False  # start no process: every task exits 0 at once
    spawn_threads: int = 0  # 0: posix_spawn in the loop's thread (agent/spawn.py)


@dataclass(frozen=True)
class ResourcesReport:
    """--print-resources: what to print (as JSON) instead of serving."""

    report: dict[str, object]


def configure(argv: Sequence[str] | None) -> Config | ResourcesReport:
    """Parse and check the arguments. Raises UsageError (or SystemExit for --help)."""
    args = _parser().parse_args(argv)
    name = args.name if args.name is not None else os.environ.get("SLURMD_NODENAME") or socket.gethostname()
    if not name.strip():
        raise UsageError("--name must not be empty")
    if args.print_resources:
        try:
            res = detect(args.cores, args.gpus)
        except ResourceError as e:
            raise UsageError(str(e)) from None
        return ResourcesReport(resources_report(name, res))
    if (
        args.token_file is not None
        and args.master is None
        and args.workdir is None
        and not os.environ.get("PJ_WORKDIR")
    ):
        raise UsageError("--token-file goes with --master ADDR (or --workdir DIR)")
    try:
        res = detect(args.cores, args.gpus)
        master = find_master(
            args.workdir, args.master, args.token_file, wait_s=args.wait_master, tls_cert=args.tls_cert
        )
    except (ResourceError, WorkdirError) as e:
        raise UsageError(str(e)) from None
    # Through a workdir the agent looks for its master again on every try (a restarted master may
    # have a new port and certificate); an explicit --master ADDR has nowhere else to look, so a first
    # dial that fails (nothing there, a certificate that does not match) is final, as before.
    rediscover = None if args.master else functools.partial(
        find_master, args.workdir, None, args.token_file, wait_s=0.0, tls_cert=args.tls_cert
    )
    return Config(
        master,
        name,
        res,
        args.kill_grace,
        args.wait_master,
        args.log_level,
        slurm.in_step(os.environ),
        reconnect_timeout=args.reconnect_timeout,
        rediscover=rediscover,
        dry_run=args.dry_run,
        spawn_threads=args.spawn_threads if args.spawn_threads is not None else default_spawn_threads(res),
    )


def default_spawn_threads(res: NodeResources) -> int:
    """One spawner thread per real CPU, at most SPAWN_THREADS_MAX; none for a small node."""
    if res.cores < SPAWN_THREADS_MIN_CORES:
        return 0
    return min(len(res.cpus), SPAWN_THREADS_MAX)


def resources_report(name: str, res: NodeResources) -> dict[str, object]:
    return {
        "node": name,
        "cores": res.cores,
        "cpus": list(res.cpus),
        "gpus": list(res.gpus),
        "memory_bytes": res.memory_bytes,
        "slurm_step": slurm.in_step(os.environ),
        "notes": [message for _, message in res.notes],
    }


def main(argv: Sequence[str] | None = None) -> int:
    try:
        cfg = configure(argv)
    except UsageError as e:
        print(f"pj-agent: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as e:  # --help, --version
        return e.code if isinstance(e.code, int) else EXIT_OK
    except KeyboardInterrupt:
        return 128 + signal.SIGINT
    if isinstance(cfg, ResourcesReport):
        print(json.dumps(cfg.report))
        return EXIT_OK
    logs.setup(cfg.log_level, component="agent")
    try:
        return asyncio.run(serve(cfg, own_process=argv is None))
    except KeyboardInterrupt:  # a second ^C while stopping
        return 128 + signal.SIGINT


async def serve(cfg: Config, own_process: bool = False) -> int:
    """Connect, run tasks until told to stop, then kill what remains. Returns the exit status.

    ``own_process`` (pj-agent's own command line, not a test): after the master's Shutdown, end the
    process at once, skipping the loop's and the interpreter's teardown (tens of ms `pj run` waits for)."""
    loop = asyncio.get_running_loop()
    state = AgentState(kill_grace=cfg.kill_grace)
    # In Slurm mode the agent's environment describes its own step; tasks get the allocation's.
    base_env = slurm.task_env(os.environ) if cfg.slurm_step else None
    watchdog = None
    if not cfg.dry_run:  # no task outlives its agent unsupervised (guard.py)
        try:
            mark, watchdog, swept = guard.arm(cfg.name, guard.scope_of(cfg.master.workdir, cfg.master.address),
                                              cfg.kill_grace)
        except (guard.AgentAlive, OSError) as e:
            log.error("cannot start: " + str(e), node=cfg.name)
            return EXIT_LINK
        if swept:
            log.warning("stopped the processes a dead agent of this node left", pids=[p.pid for p in swept])
        base_env = dict(os.environ if base_env is None else base_env)
        base_env[guard.NODE_ENV] = mark
    if cfg.dry_run:
        launcher: Launcher = DryLauncher(cfg.resources, base_env, Hostfiles(cfg.name))
    else:
        launcher = Launcher(cfg.resources, base_env, Hostfiles(cfg.name), cfg.spawn_threads)
        log.info("stderr of tasks without a stderr file: unnamed files for their tails",
                 directory=launcher.captures.directory or "none: /dev/null, no tails")
        wanted = os.environ.get(tails.DIR_ENV, "")
        if wanted and launcher.captures.directory != wanted:
            log.warning(f"{tails.DIR_ENV}={wanted}: no unnamed file (O_TMPFILE) can be made there; set it to a "
                        "node-local directory on tmpfs, ext4 or xfs", using=launcher.captures.directory or "/dev/null")
    runner = Runner(state, launcher)
    stop = asyncio.Event()
    stopped_by: list[int] = []

    def on_signal(signum: int) -> None:
        if not stopped_by:
            log.info("signal received", signal=signal.Signals(signum).name)
        stopped_by.append(signum)
        stop.set()

    hub = SignalHub(loop)
    try:
        hub.watch(signal.SIGCHLD, runner.on_sigchld)
        for sig in (signal.SIGTERM, signal.SIGINT):
            hub.watch(sig, functools.partial(on_signal, int(sig)))
        runner.attach(loop)
        res = cfg.resources
        log.info(
            "agent starting",
            node=cfg.name,
            cores=res.cores,
            cpus=len(res.cpus),
            gpus=",".join(res.gpus),
            memory_gb=round(res.memory_bytes / 2**30, 1),
            master=cfg.master.address,
            pid=os.getpid(),
            slurm_step=cfg.slurm_step,
            dry_run=cfg.dry_run,
        )
        for level, message in res.notes:
            if level == "warning":
                log.warning(message)
            else:
                log.info(message)
        register = convert.register_pb(cfg.name, res, socket.gethostname(), os.getpid(), __version__)
        outcome = await _serve_links(cfg, register, runner, stop)
    except LinkBroken as e:
        if isinstance(e, LinkRefused):
            log.error("the master refused this agent: killing every task", error=str(e), tasks=len(state))
        else:
            log.error("lost the master: killing every task", error=str(e), tasks=len(state))
        return EXIT_LINK
    finally:
        await _kill_all(runner, cfg.kill_grace, "stopping")  # nothing left in the usual case
        runner.detach()
        hub.close()
        launcher.close()
        if watchdog is not None:
            watchdog.close()
    if outcome is Outcome.SHUTDOWN:
        log.info("agent done")
        if own_process:  # every task has ended and was reported, the link is closed
            exit_now(EXIT_OK)
        return EXIT_OK
    signum = stopped_by[0] if stopped_by else signal.SIGTERM
    log.info("agent stopped", signal=signal.Signals(signum).name)
    return 128 + signum


class ReconnectTimeout(LinkBroken):
    """The master did not come back within --reconnect-timeout."""


async def _serve_links(
    cfg: Config, register: pj_pb2.AgentMessage, runner: Runner, stop: asyncio.Event
) -> Outcome:
    """The first session, then reconnects until a shutdown or a local stop. Raises LinkBroken when
    the first registration fails, a reconnect is refused, or the master stays away too long."""
    sent = SentExits()
    master = cfg.master
    retry = cfg.reconnect_timeout > 0 and cfg.rediscover is not None
    # With a way to look again, the first dial is short too: DIR/master.json may name a master that
    # is gone (killed, or restarting elsewhere), and the next look may find the new one.
    link = _link(cfg, master, register, runner, sent, None, ready_s=_REDIAL_READY_S if retry else None)
    try:
        return await link.session(stop)
    except LinkBroken as e:
        if cfg.reconnect_timeout <= 0 or stop.is_set() or link.closing:
            raise
        if not link.welcomed and (isinstance(e, LinkRefused) or cfg.rediscover is None):
            raise  # a refusal, or nowhere else to look: no campaign to go back to
        campaign, err = (link.campaign if link.welcomed else None), e
    while True:
        if campaign is None:
            log.warning("cannot reach the master: looking for it again until --reconnect-timeout",
                        master=master.address, error=str(err), timeout=format_duration(cfg.reconnect_timeout))
        else:
            log.warning(
                "lost the master: tasks keep running; reconnecting",
                master=master.address,
                error=str(err),
                tasks=len(runner.state),
                timeout=format_duration(cfg.reconnect_timeout),
            )
        got = await _reconnect(cfg, register, runner, stop, sent, campaign, master)
        if isinstance(got, Outcome):
            return got
        master, err, campaign = got


async def _reconnect(
    cfg: Config,
    register: pj_pb2.AgentMessage,
    runner: Runner,
    stop: asyncio.Event,
    sent: SentExits,
    campaign: str | None,
    master: MasterAddress,
) -> Outcome | tuple[MasterAddress, LinkBroken, str]:
    """Try again with back-off until welcomed (back) (then the session runs on: its outcome), or the
    timeout passes (ReconnectTimeout); each try looks for the master again (DIR/master.json, the
    token, the certificate). ``campaign`` None: the first registration never got through (a new
    agent). Returns the master, the error and the campaign when a session that was welcomed broke
    again (a new reconnect period begins)."""
    t0 = time.monotonic()
    deadline = t0 + cfg.reconnect_timeout
    attempt = 0
    last = ""
    while True:
        delay = backoff_delay(attempt)
        attempt += 1
        left = deadline - time.monotonic()
        if left <= 0:
            break
        if await _stopped_within(stop, min(delay, left)):
            return Outcome.INTERRUPTED
        left = deadline - time.monotonic()
        if left <= 0:
            break
        if cfg.rediscover is not None:
            try:
                master = cfg.rediscover()
            except WorkdirError as e:
                last = str(e)
                log.debug("no master to reconnect to yet", error=last)
                continue
        link = _link(cfg, master, register, runner, sent, campaign, within_s=left)
        try:
            return await link.session(stop)
        except LinkBroken as e:
            if link.welcomed:  # back, then broken again: a new reconnect period
                if stop.is_set() or link.closing:
                    raise
                return master, e, link.campaign
            if isinstance(e, LinkRefused) and e.code not in _RETRY_REFUSALS:
                raise
            last = str(e)
            log.debug("reconnect attempt failed", master=master.address, attempt=attempt, error=last)
    waited = format_duration(max(round(time.monotonic() - t0, 1), 0.1))
    if campaign is None:
        raise ReconnectTimeout(f"no master answered at {master.address} within {waited} (--reconnect-timeout); "
                               f"last: {last}")
    raise ReconnectTimeout(
        f"the master at {master.address} did not come back within {waited} (--reconnect-timeout); last: {last}"
    )


def _link(
    cfg: Config,
    master: MasterAddress,
    register: pj_pb2.AgentMessage,
    runner: Runner,
    sent: SentExits,
    campaign: str | None,
    within_s: float | None = None,
    ready_s: float | None = None,
) -> Link:
    """A session; ``within_s`` (a reconnect attempt): the time left, which bounds its waits;
    ``ready_s``: how long to wait for the channel (default: that of a reconnect attempt, or the
    connect timeout for a first one)."""
    if within_s is not None:
        ready_s = min(_REDIAL_READY_S, within_s)
    connect_s = max(cfg.wait_master, 1.0) if within_s is None else max(min(cfg.wait_master, within_s), 1.0)
    return Link(
        master.address,
        master.token,
        register,
        runner,
        connect_timeout_s=connect_s,
        tls_cert=master.tls_cert,
        ready_timeout_s=ready_s,
        sent=sent,
        rejoin=campaign,
    )


async def _stopped_within(stop: asyncio.Event, seconds: float) -> bool:
    try:
        async with asyncio.timeout(seconds):
            await stop.wait()
    except TimeoutError:
        return False
    return True


async def _kill_all(runner: Runner, kill_grace: float, reason: str) -> None:
    """Stop every task (TERM, KILL after the grace) and wait until all are reaped."""
    runner.shutdown(reason)
    try:
        async with asyncio.timeout(kill_grace + _AFTER_KILL_S):
            await runner.wait_drained()
    except TimeoutError:
        log.error("some tasks would not die", tasks=[t.task_id for t in runner.state.tasks()])


if __name__ == "__main__":
    sys.exit(main())
