"""What the `pj` query commands print: status, list, info, cancel, wait, finish, resources.

Each ``cmd_*`` takes the parsed arguments (``cli.py`` builds the parser) and returns the exit
code; output goes to stdout (a table or ``--json``), errors are raised for ``cli._guard``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

from pj.common.workdir import MASTER_ENV, WORKDIR_ENV

from .convert import BAD_STATES, STATES, WAITING, JobInfo
from .errors import one_line
from .formats import (
    fmt_bytes,
    fmt_cpu,
    fmt_history,
    fmt_iterations,
    fmt_rss,
    fmt_shares,
    plural,
    table,
    tail_lines,
)
from .progress import fmt_counts, fmt_duration

if TYPE_CHECKING:  # importing api pulls in grpc: done when a command needs it
    from .api import Client


class UsageError(Exception):
    """Bad usage or input: one line, exit 2."""


def _out() -> TextIO:
    return sys.stdout


def _say(msg: str) -> None:
    print(f"pj: {one_line(msg)}", file=sys.stderr)


def _connect(args: argparse.Namespace) -> Client:
    from .api import Client

    workdir = getattr(args, "workdir", None)
    master = getattr(args, "master", None)
    token_file = getattr(args, "token_file", None)
    env_wd, env_master = os.environ.get(WORKDIR_ENV), os.environ.get(MASTER_ENV)
    if workdir is None and master is None and not env_wd and not env_master:
        raise UsageError(f"no master given: use --workdir DIR (or set {WORKDIR_ENV}), or --master ADDR --token-file F")
    if master is not None and token_file is None and workdir is None and not env_wd:
        raise UsageError(f"--master {master} needs the token: add --token-file F or --workdir DIR")
    # Only `pj wait` looks for a master that went away (--reconnect-timeout); `pj top` says it went.
    return Client(workdir, address=master, token_file=token_file, timeout=getattr(args, "rpc_timeout", 30.0),
                  tls_cert=getattr(args, "tls_cert", None), reconnect_timeout=getattr(args, "reconnect_timeout", 0.0))


def _json(obj: Any) -> None:
    json.dump(obj, _out(), indent=2)
    _out().write("\n")


def _asdict(obj: Any) -> Any:
    return dataclasses.asdict(obj)


def _print_lines(lines: Sequence[str]) -> None:
    out = _out()
    for line in lines:
        out.write(line + "\n")


def cmd_status(args: argparse.Namespace) -> int:
    with _connect(args) as c:
        st = c.status()
    if args.json:
        _json(_asdict(st))
        return 0
    up = fmt_duration(max(time.time() - st.started_at, 0.0)) if st.started_at > 0 else "?"
    _print_lines([
        f"master  {st.address or c.address}, up {up}" + (", finishing" if st.finishing else ""),
        f"nodes   {st.nodes}, cores {st.cores_used}/{st.cores_total} in use",
        f"jobs    {st.jobs_total}, {st.jobs_unfinished} unfinished"
        + (f": {fmt_counts(st.jobs, ', ')}" if st.jobs else ""),
        f"tasks   {fmt_counts(st.tasks, ', ') or '-'}",
        *([f"waiting {fmt_waiting(st.waiting)}"] if st.waiting else []),
        *(f"notice  {one_line(n)}" for n in st.notices),
        *(f"alloc   {one_line(p)}" for p in st.alloc_problems),
    ])
    return 0


def fmt_waiting(counts: dict[str, int]) -> str:
    """``120 for dependencies, 40 for free cores, 1 too big for any node`` (jobs per kind of reason)."""
    return ", ".join(f"{n} {WAITING.get(kind, kind)}" for kind, n in counts.items())


def _state_list(values: Sequence[str]) -> list[str]:
    out: list[str] = []
    for v in values:
        for part in v.split(","):
            name = part.strip().upper().removeprefix("JOB_STATE_")
            if name not in STATES:
                raise UsageError(f"--state: unknown state {part.strip()!r}; use one of {', '.join(STATES)}")
            out.append(name)
    return out


def cmd_list(args: argparse.Namespace) -> int:
    states = _state_list(args.state) if args.state else None
    with _connect(args) as c:
        jobs = list(c.list(states=states))
    if args.json:
        _json([_asdict(j) for j in jobs])
        return 0
    if not jobs:
        _out().write("no jobs\n")
        return 0
    rows = [
        [j.name, j.state, fmt_iterations(j.iterations_done, j.iterations, j.iterations_failed), one_line(j.reason)]
        for j in jobs
    ]
    _print_lines(table(["NAME", "STATE", "ITERATIONS", "REASON"], rows))
    return 0


def _info_lines(info: JobInfo) -> list[str]:
    s = info.summary
    lines = [f"job {s.name}", f"  state       {s.state}"]
    if s.iterations:
        lines.append(f"  iterations  {s.iterations_done}/{s.iterations} done, {s.iterations_failed} failed")
    if s.reason:
        lines.append(f"  reason      {one_line(s.reason)}")
    lines.append(f"  history     {fmt_history(info.history)}")
    if info.tasks:
        rows = [
            [
                t.name,
                t.state,
                "-" if t.exit_code is None else str(t.exit_code),
                fmt_shares(t.shares),
                fmt_cpu(t.cpu_user_s, t.cpu_system_s),
                fmt_rss(t.max_rss_kb),
                one_line(t.reason),
            ]
            for t in info.tasks
        ]
        lines.append("  tasks")
        lines += ["    " + line for line in table(["TASK", "STATE", "EXIT", "WHERE", "CPU", "MAX RSS", "REASON"], rows)]
        lines += _tail_lines(info)
    return lines


TAILS_SHOWN = 5  # failed tasks whose stderr tail `pj info` prints (--json has every one)
TAIL_LINES = 20  # lines of each


def _tail_lines(info: JobInfo) -> list[str]:
    failed = [t for t in info.tasks if t.stderr_tail]
    out: list[str] = []
    for t in failed[:TAILS_SHOWN]:
        out.append(f"  stderr of {t.name} (its end):")
        out += tail_lines(t.stderr_tail, TAIL_LINES)
    if len(failed) > TAILS_SHOWN:
        more = len(failed) - TAILS_SHOWN
        out.append(f"  ... and the stderr of {more} more failed {'task' if more == 1 else 'tasks'} (pj info --json)")
    return out


def cmd_info(args: argparse.Namespace) -> int:
    with _connect(args) as c:
        infos = c.info(args.names, with_tasks=args.tasks)
    if args.json:
        _json([_asdict(i) for i in infos])
        return 0
    lines: list[str] = []
    for i, info in enumerate(infos):
        if i:
            lines.append("")
        lines += _info_lines(info)
    _print_lines(lines)
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    with _connect(args) as c:
        res = c.cancel(args.names)
    if args.json:
        _json({"canceled": list(res.canceled), "already_finished": list(res.already_finished)})
        return 0
    if res.canceled:
        _out().write(f"canceled: {' '.join(res.canceled)}\n")
    if res.already_finished:
        _out().write(f"already finished: {' '.join(res.already_finished)}\n")
    return 0


def cmd_wait(args: argparse.Namespace) -> int:
    with _connect(args) as c:
        final = c.wait(args.names or None, timeout=args.timeout)  # PJTimeout: one line, exit 1 (cli.guard)
    return show_final(final, args.json)


def wait_result(final: dict[str, str]) -> dict[str, Any]:
    """What `pj wait --json` (and `pj submit --wait --json`) print of the jobs' final states."""
    counts: dict[str, int] = {}
    for state in final.values():
        counts[state] = counts.get(state, 0) + 1
    return {"jobs": final, "counts": counts, "all_succeeded": all(s == "SUCCEED" for s in final.values())}


def show_final(final: dict[str, str], as_json: bool) -> int:
    """Print the final states (a line of counts, then the jobs that did not succeed); 0 if all succeeded."""
    result = wait_result(final)
    if as_json:
        _json(result)
        return 0 if result["all_succeeded"] else 1
    out = _out()
    out.write(f"{plural(len(final), 'job')} finished" + (f": {fmt_counts(result['counts'], ', ')}" if final else "")
              + "\n")
    bad = [(n, s) for n, s in final.items() if s != "SUCCEED"]
    if bad:
        _print_lines(["  " + line for line in table(["NAME", "STATE"], [[n, s] for n, s in bad[:20]])])
        if len(bad) > 20:
            out.write(f"  ... and {len(bad) - 20} more (pj list --state {','.join(BAD_STATES)})\n")
    return 0 if not bad else 1


def cmd_finish(args: argparse.Namespace) -> int:
    with _connect(args) as c:
        c.finish(drain=not args.cancel)
        addr = c.address
    if args.json:
        _json({"address": addr, "finishing": True, "cancel": bool(args.cancel)})
    elif args.cancel:
        _out().write(f"the master at {addr} cancels every job and stops\n")
    else:
        _out().write(f"the master at {addr} stops once every job has ended\n")
    return 0


def fmt_end(ends_at: float, now: float) -> str:
    """When a node's allocation ends: ``14:05 (in 40m)``, ``14:05 (ended)``; ``-`` when unknown or none."""
    if ends_at <= 0:
        return "-"
    clock = time.strftime("%H:%M", time.localtime(ends_at))
    return f"{clock} (in {fmt_duration(ends_at - now)})" if ends_at > now else f"{clock} (ended)"


def cmd_resources(args: argparse.Namespace) -> int:
    with _connect(args) as c:
        res = c.resources()
    if args.json:
        _json(_asdict(res))
        return 0
    now = time.time()
    rows = [
        [
            n.name,
            "yes" if n.online else "no",
            f"{n.cores_free}/{n.cores}",
            f"{n.gpus_free}/{len(n.gpus)}" if n.gpus else "-",
            f"{fmt_bytes(n.memory_free_bytes)}/{fmt_bytes(n.memory_bytes)}" if n.memory_bytes else "-",
            fmt_end(n.ends_at, now),
        ]
        for n in res.nodes
    ]
    known = {n.name for n in res.nodes}
    rows += [[name, "missing", "-", "-", "-", "-"] for name in res.nodes_missing if name not in known]
    lines = table(["NODE", "ONLINE", "CORES FREE", "GPUS FREE", "MEMORY FREE", "ALLOCATION ENDS"], rows) if rows else []
    expected = f" of {res.nodes_expected} expected" if res.nodes_expected else ""
    online = sum(1 for n in res.nodes if n.online)
    missing = ""
    if res.nodes_missing:
        from pj.common.hostlist import compress

        missing = f", {len(res.nodes_missing)} missing ({compress(res.nodes_missing)})"
    free = sum(n.cores_free for n in res.nodes)
    lines.append(f"{plural(online, 'node')} online{expected}{missing}, {plural(free, 'core')} free")
    _print_lines(lines)
    return 0

