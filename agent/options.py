"""pj-agent's command line: the options, checked, as a ``Config`` (or what --print-resources prints).

The session that serves a ``Config`` (connect, run tasks, reconnect) is session.py; main.py joins them.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pj import __version__
from pj.common import logopts
from pj.common.durations import DurationError, format_duration, parse_duration
from pj.common.sizes import SizeError, parse_size
from pj.common.workdir import MasterAddress, WorkdirError, find_master

from . import slurm
from .relayroute import RELAY_WAIT_S, RelayRoute, RelayRouteError, node_id, relay_file
from .resources import NodeResources, ResourceError, allocation_end, detect

EXIT_OK = 0
EXIT_LINK = 1
EXIT_USAGE = 2
RECONNECT_TIMEOUT_S = 600.0
DRY_RUN_ENV = "PJ_AGENT_DRY_RUN"  # non-empty: as --dry-run (reaches agents that pj run starts)
MEMORY_ENV = "PJ_AGENT_MEMORY"  # as --memory SIZE (reaches the local agents of pj run and LocalCluster)
SPAWN_THREADS_ENV = "PJ_AGENT_SPAWN_THREADS"  # as --spawn-threads (reaches agents that pj run starts)
RELAY_GROUP_ENV = "PJ_AGENT_RELAY_GROUP"  # as --relay-group G
SPAWN_THREADS_MAX = 8
# Below this many cores the loop keeps up with spawning by itself, and handing each spawn to a
# thread and its pid back costs more than it frees (measured: 2 cores, even locally; 4 agents of
# 2 cores on 2 CPUs, 9% slower with threads; 4 cores, 1.08x faster with them; 8 cores, 1.31x).
SPAWN_THREADS_MIN_CORES = 4


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


def _memory(text: str) -> int:
    try:
        return parse_size(text)
    except SizeError as e:
        raise argparse.ArgumentTypeError(e.reason) from None


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


def _end_time(text: str) -> float:
    try:
        return slurm.parse_end(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


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
        help="GPU ids, comma-separated (default: $CUDA_VISIBLE_DEVICES, else $ROCR_VISIBLE_DEVICES, else "
        "$HIP_VISIBLE_DEVICES, else $SLURM_STEP_GPUS, else $SLURM_JOB_GPUS, else the GPUs this machine shows)",
    )
    p.add_argument(
        "--memory",
        metavar="SIZE",
        type=_memory,
        default=os.environ.get(MEMORY_ENV) or None,
        help=f"memory tasks may ask for: 512M, 4G, 1.5GiB, a bare number is MiB (also ${MEMORY_ENV}; default: "
        "what Slurm grants, $SLURM_MEM_PER_NODE or $SLURM_MEM_PER_CPU x cores, else the node's physical memory)",
    )
    p.add_argument(
        "--kill-grace",
        metavar="S",
        type=_seconds,
        default=5.0,
        help="seconds between SIGTERM and SIGKILL when stopping a task (default 5)",
    )
    logopts.add_options(p)
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
        "--ends-at",
        type=_end_time,
        metavar="WHEN",
        help="when this node's allocation ends, as epoch seconds or an ISO time (local unless it "
        "names a zone); the master places no task here whose walltime would outlast it (default: "
        f"${slurm.END_TIME_ENV}, else in a Slurm job what squeue says of $SLURM_JOB_ID, else none)",
    )
    p.add_argument(
        "--relay-group",
        metavar="G",
        type=_count,
        default=os.environ.get(RELAY_GROUP_ENV) or 0,
        help="dial relay $SLURM_NODEID // G (DIR/relays/relay-K.addr, written by the pj-relay `pj run` "
        "starts per group of G nodes) instead of the master, which stays the fallback (needs --workdir "
        f"and a Slurm step; also ${RELAY_GROUP_ENV}; default 0: the master)",
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
    log_level: str | None = None  # None: $PJ_LOG_LEVEL, else info (common/logs.py)
    slurm_step: bool = False  # started by srun: tasks get the allocation's environment
    reconnect_timeout: float = 0.0  # 0: a broken stream ends the agent (its tasks killed)
    # Finds the master again (re-reads DIR/master.json, the token, the certificate); None: cfg.master.
    rediscover: Callable[[], MasterAddress] | None = None
    dry_run: bool = False  # start no process: every task exits 0 at once
    spawn_threads: int = 0  # 0: posix_spawn in the loop's thread (agent/spawn.py)
    log_format: str | None = None  # None: $PJ_LOG_FORMAT, else console (common/logs.py)


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
            res = detect(args.cores, args.gpus, memory=args.memory)
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
        res = detect(args.cores, args.gpus, memory=args.memory)
        master = find_master(
            args.workdir, args.master, args.token_file, wait_s=args.wait_master, tls_cert=args.tls_cert
        )
    except (ResourceError, WorkdirError) as e:
        raise UsageError(str(e)) from None
    ends_at, note = allocation_end(args.ends_at)
    if ends_at or note:
        res = dataclasses.replace(res, ends_at=ends_at, notes=res.notes + ((note,) if note else ()))
    # Through a workdir the agent looks for its master again on every try (a restarted master may
    # have a new port and certificate); an explicit --master ADDR has nowhere else to look, so a first
    # dial that fails (nothing there, a certificate that does not match) is final, as before.
    rediscover: Callable[[], MasterAddress] | None = None if args.master else functools.partial(
        find_master, args.workdir, None, args.token_file, wait_s=0.0, tls_cert=args.tls_cert
    )
    if args.relay_group:
        if rediscover is None or master.workdir is None:
            raise UsageError("--relay-group goes with --workdir DIR (the relays write their addresses there)")
        try:
            path = relay_file(master.workdir, node_id(os.environ), args.relay_group)
        except RelayRouteError as e:
            raise UsageError(str(e)) from None
        route = RelayRoute(rediscover, path)
        relay = route.first(master)
        if relay is None:
            note = ("warning", f"no relay address in {path} within {RELAY_WAIT_S:g} s: dialing the master")
            res = dataclasses.replace(res, notes=(*res.notes, note))
        else:
            master = relay
        rediscover = route
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
        log_format=args.log_format,
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
