"""`pj alloc add|list|remove`: allocations the master asks Slurm for on demand (master/allocs.py).

    pj alloc add [--workdir DIR] --nodes N --time T [--max-allocations K] [--idle-timeout S]
                 [--partition P] [--account A] [-- EXTRA_SBATCH_ARGS...]
    pj alloc list [--json]
    pj alloc remove ID...
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

from .allocs import IDLE_DEFAULT_S, spec_pb
from .cliparse import add_connection, add_json, count
from .commands import UsageError, _connect, _json, _out, _print_lines
from .formats import table
from .progress import fmt_duration

# ---------------------------------------------------------------- the commands


def _time(text: str) -> float:
    from pj.common.durations import DurationError, parse_duration

    try:
        return parse_duration(text, "--time")
    except DurationError as e:
        raise UsageError(f"{e}; e.g. --time 30 (minutes, as Slurm reads it), 2h or 1:30:00") from None


def _idle(text: str) -> float:
    from pj.common.durations import DurationError, parse_duration

    try:
        return parse_duration(float(text) if text.replace(".", "", 1).isdigit() else text, "--idle-timeout")
    except DurationError as e:
        raise UsageError(f"{e}; e.g. --idle-timeout 60 (seconds) or 5m") from None


def cmd_alloc_add(args: argparse.Namespace, extra: Sequence[str] = ()) -> int:
    time_s = _time(args.time)
    if time_s < 60:
        raise UsageError(f"--time: at least 1 minute (Slurm's unit), got {args.time!r}")
    idle = _idle(args.idle_timeout) if args.idle_timeout is not None else IDLE_DEFAULT_S
    spec = spec_pb(args.nodes, time_s, args.max_allocations, idle, args.partition or "", args.account or "", extra)
    with _connect(args) as c:
        (qid,) = c.alloc_add([spec])
    if args.json:
        _json({"id": qid})
    else:
        _out().write(f"alloc queue {qid}: up to {args.max_allocations} allocation(s) of {args.nodes} node(s) for "
                     f"{fmt_duration(time_s)}, agents leave after {fmt_duration(idle)} idle\n")
    return 0


def _when(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t)) if t > 0 else "-"


def cmd_alloc_list(args: argparse.Namespace) -> int:
    with _connect(args) as c:
        res = c.alloc_list()
    if args.json:
        _json(dataclasses.asdict(res))
        return 0
    lines: list[str] = []
    now = time.time()
    for q in res.queues:
        head = (f"alloc queue {q.id}: {q.nodes} node(s) x {fmt_duration(q.time_s)}, at most {q.max_allocations}, "
                f"idle {fmt_duration(q.idle_timeout_s)}")
        where = [f"partition {q.partition}"] if q.partition else []
        where += [f"account {q.account}"] if q.account else []
        where += [f"sbatch {' '.join(q.extra_args)}"] if q.extra_args else []
        lines.append(head + (f" ({', '.join(where)})" if where else "") + (", removed" if q.removed else ""))
        if q.problem and not q.removed:
            left = q.next_try_at - now
            lines.append(f"  backing off: {q.problem}; next try in {fmt_duration(left)}" if left > 0
                         else f"  last failure: {q.problem}")
    if not res.queues:
        lines.append("no alloc queue (add one with `pj alloc add --nodes N --time T`)")
    rows = [
        [str(a.id), str(a.queue), a.job_id or "-", a.state, str(len(a.nodes)), _when(a.started_at),
         _when(a.ended_at or a.ends_at), a.why or "-"]
        for a in res.allocations
    ]
    if rows:
        lines += table(["ID", "QUEUE", "SLURM JOB", "STATE", "NODES", "START", "END", "WHY IT ENDED"], rows)
    _print_lines(lines)
    return 0


def cmd_alloc_remove(args: argparse.Namespace) -> int:
    with _connect(args) as c:
        removed = c.alloc_remove(args.ids)
    if args.json:
        _json({"removed": removed})
    else:
        _out().write(f"removed alloc queue(s) {' '.join(map(str, removed))}: their allocations are cancelled\n")
    return 0


def add_parser(sub: Any, query: Callable[..., argparse.ArgumentParser]) -> None:
    """`pj alloc` and its three verbs (``query``: cli.py's maker of a subcommand that finds the master)."""
    a = sub.add_parser("alloc", help="allocations the master asks Slurm for as work waits (service mode)",
                       description="Allocations on demand: the master submits Slurm allocations, each running one "
                       "agent per node, while ready work waits that its agents cannot start, up to "
                       "--max-allocations at a time; agents idle for --idle-timeout leave and their allocation ends.")
    verbs = a.add_subparsers(dest="alloc_command", metavar="VERB", parser_class=type(a))
    add = verbs.add_parser("add", help="a new alloc queue: how to ask for allocations",
                           usage="pj alloc add [--workdir DIR] --nodes N --time T [--max-allocations K] "
                           "[--idle-timeout S] [--partition P] [--account A] [-- EXTRA_SBATCH_ARGS...]")
    add_connection(add)
    add_json(add)
    add.add_argument("--nodes", metavar="N", type=count(1), required=True, help="nodes per allocation")
    add.add_argument("--time", metavar="T", required=True,
                     help="each allocation's time limit, as sbatch --time reads it (30 = 30 minutes, 1:30:00) or 2h")
    add.add_argument("--max-allocations", metavar="K", type=count(1), default=1,
                     help="allocations of this queue alive at once (default 1)")
    add.add_argument("--idle-timeout", metavar="S", default=None,
                     help=f"agents with nothing to do this long leave (seconds, or 5m; default {IDLE_DEFAULT_S:g} s)")
    add.add_argument("--partition", metavar="P", help="sbatch --partition")
    add.add_argument("--account", metavar="A", help="sbatch --account")
    add.set_defaults(func=cmd_alloc_add, alloc_add=True)
    ls = verbs.add_parser("list", help="alloc queues and allocations: id, Slurm job, state, nodes, start, end, why")
    add_connection(ls)
    add_json(ls)
    ls.set_defaults(func=cmd_alloc_list)
    rm = verbs.add_parser("remove", help="stop an alloc queue and cancel its allocations")
    add_connection(rm)
    add_json(rm)
    rm.add_argument("ids", nargs="+", metavar="ID", type=count(1), help="alloc queue ids (pj alloc list)")
    rm.set_defaults(func=cmd_alloc_remove)

    def no_verb(args: argparse.Namespace) -> int:
        raise UsageError("pj alloc: give a verb: add, list or remove")

    a.set_defaults(func=no_verb)
