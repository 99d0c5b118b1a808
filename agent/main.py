"""pj-agent: runs the tasks the master sends to this node.

    pj-agent (--workdir DIR | --master ADDR --token-file F [--tls-cert FILE]) [--name NODE] [--cores N]
             [--gpus LIST] [--kill-grace S] [--log-level L] [--wait-master S]
    pj-agent --print-resources [--name NODE] [--cores N] [--gpus LIST]

Slurm mode (started by srun: $SLURM_JOB_ID and $SLURM_STEP_ID are set): cores default to the
CPUs Slurm grants on this node, GPUs to the step's, and tasks get the allocation's environment
without the variables that describe the agent's own step (slurm.py).

Exit status: 0 after the master's Shutdown; 1 when the link to the master broke
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
from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from pj import __version__
from pj.common import logs
from pj.common.workdir import MasterAddress, WorkdirError, find_master

from . import convert, slurm
from .hostfiles import Hostfiles
from .launcher import Launcher
from .link import Link, LinkBroken, LinkRefused, Outcome
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


def _seconds(text: str) -> float:
    try:
        s = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not s >= 0 or s == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, not {text}")
    return s


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
    return Config(
        master, name, res, args.kill_grace, args.wait_master, args.log_level, slurm.in_step(os.environ)
    )


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
        return asyncio.run(serve(cfg))
    except KeyboardInterrupt:  # a second ^C while stopping
        return 128 + signal.SIGINT


async def serve(cfg: Config) -> int:
    """Connect, run tasks until told to stop, then kill what remains. Returns the exit status."""
    loop = asyncio.get_running_loop()
    state = AgentState(kill_grace=cfg.kill_grace)
    # In Slurm mode the agent's environment describes its own step; tasks get the allocation's.
    base_env = slurm.task_env(os.environ) if cfg.slurm_step else None
    launcher = Launcher(cfg.resources, base_env, Hostfiles(cfg.name))
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
        )
        for level, message in res.notes:
            if level == "warning":
                log.warning(message)
            else:
                log.info(message)
        register = convert.register_pb(cfg.name, res, socket.gethostname(), os.getpid(), __version__)
        link = Link(
            cfg.master.address,
            cfg.master.token,
            register,
            runner,
            connect_timeout_s=max(cfg.wait_master, 1.0),
            tls_cert=cfg.master.tls_cert,
        )
        # Reconnect (design section 5) will loop here: keep the runner and its outbox, open a
        # new session; tasks keep running meanwhile.
        outcome = await link.session(stop)
    except LinkBroken as e:
        if isinstance(e, LinkRefused):
            log.error("the master refused this agent", error=str(e))
        else:
            log.error("lost the master: killing every task", error=str(e), tasks=len(state))
        return EXIT_LINK
    finally:
        await _kill_all(runner, cfg.kill_grace, "stopping")  # nothing left in the usual case
        runner.detach()
        hub.close()
        launcher.close()
    if outcome is Outcome.SHUTDOWN:
        log.info("agent done")
        return EXIT_OK
    signum = stopped_by[0] if stopped_by else signal.SIGTERM
    log.info("agent stopped", signal=signal.Signals(signum).name)
    return 128 + signum


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
