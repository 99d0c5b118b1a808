"""The `pj` and `pj-submit` commands.

    pj run FILE [--workdir DIR] [--nodes K] [--cores N] [--gpus G] [--slurm|--local]
                [--node-timeout T] [--missing-nodes continue|fail] [--heartbeat-timeout T]
                [--crash-limit N] [--resume] [--tls] [--relays K|auto] [--quiet]
    pj status|list|info NAME...|cancel NAME...|wait [NAME...]|finish [--cancel]|resources
    pj alloc add|list|remove   (allocations on demand: client/alloccmd.py)
    pj submit FILE | pj submit [--cores C] ... -- CMD ARGS...  (also pj-submit: client/submitcmd.py)
    pj top [--once] [--interval S] | pj report KIND | pj sbatch-template | pj completion SHELL

The master is found through ``--workdir DIR`` (or ``$PJ_WORKDIR``), or ``--master ADDR
--token-file F``. Exit codes: 0 done, 1 a runtime failure (no master answers, a job failed,
a timeout), 2 bad usage or input, 130 interrupted. Every error is one line on stderr, ``pj: ...``;
under ``--json`` (given before or after the command) a JSON object on stdout (client/cliparse.py).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from pj import __version__
from pj.common import logopts
from pj.common.fastexit import exit_now

from . import cliparse, slurm, submitcmd
from .cliparse import Parser, add_connection, add_json, count, reconnect_seconds, seconds_for
from .commands import (
    UsageError,
    cmd_cancel,
    cmd_finish,
    cmd_info,
    cmd_list,
    cmd_resources,
    cmd_status,
    cmd_wait,
)
from .convert import STATES
from .redial import RECONNECT_TIMEOUT_S
from .report.command import add_parser as add_report_parser
from .submitcmd import split_command, submit_main, submit_parser  # noqa: F401  (pj-submit's entry point)

# Older names, kept for importers.
_Parser = Parser
_guard = cliparse.guard
quiet_grpc = cliparse.quiet_grpc
_add_connection = add_connection
_seconds_for = seconds_for
_seconds = seconds_for("--timeout")
_count = count

COMMANDS = ("run, submit, status, list, info, cancel, wait, finish, resources, alloc, top, report, sbatch-template "
            "or completion")


def cmd_run(args: argparse.Namespace) -> int:
    from pj.common import logs, perms

    from .run import Campaign

    if args.share_group:  # the workdir, its logs and what the master and agents write there (perms.py)
        os.environ[perms.SHARE_ENV] = "group"
    # The master and every agent (local, or through srun's environment) read these (common/logs.py).
    if args.log_level:
        os.environ[logs.LEVEL_ENV] = args.log_level
    if args.log_format:
        os.environ[logs.FORMAT_ENV] = args.log_format
    try:
        perms.modes()
    except perms.ShareError as e:
        raise UsageError(f"run: {e}") from None
    campaign = Campaign(
        args.file,
        workdir=getattr(args, "workdir", None),
        nodes=args.nodes,
        cores=args.cores,
        gpus=args.gpus,
        slurm_mode=args.slurm,
        node_timeout=args.node_timeout,
        missing_nodes=args.missing_nodes,
        heartbeat_timeout=args.heartbeat_timeout,
        crash_limit=args.crash_limit,
        resume=args.resume,
        quiet=args.quiet,
        tls=args.tls,
        relays=args.relays,
        json_out=args.json,
    )
    rc = campaign.run()
    if args.json and not campaign.summary_printed and rc != 0:  # it ended before any summary: why, as JSON
        return cliparse.say_error(campaign.last_said or "pj run failed", "usage" if rc == 2 else "runtime", rc, True)
    return rc


def pj_parser() -> _Parser:
    p = Parser(prog="pj", description="Run and query PJ campaigns (pilot jobs).")
    p.add_argument("--version", action="version", version=f"pj {__version__}")
    add_connection(p)
    add_json(p, top=True)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    r = sub.add_parser("run", help="run a job file: a master, its agents, progress, a summary",
                       description="Run a job file: a master, its agents (here, or one per node of the "
                       "Slurm allocation this runs in), live progress, a summary; exit 0 only if every job "
                       "succeeded.")
    add_json(r)
    r.add_argument("file", metavar="FILE", help="job file (PJ's JSON format or a QCG-PilotJob batch file)")
    r.add_argument("--workdir", metavar="DIR", default=argparse.SUPPRESS,
                   help="where the master keeps its files (default ./pj-runs/YYYYmmdd-HHMMSS[-jobID]); "
                   "in Slurm mode every node must see it (a shared file system)")
    mode = r.add_argument_group("mode").add_mutually_exclusive_group()
    mode.add_argument("--slurm", dest="slurm", action="store_const", const=True, default=None,
                      help="Slurm mode: the master here, one agent per node of the allocation, started by "
                      "one srun (the default when $SLURM_JOB_ID is set)")
    mode.add_argument("--local", dest="slurm", action="store_const", const=False,
                      help="local mode even inside a Slurm allocation: agents on this machine only")
    r.add_argument("--relays", metavar="K", default="auto",
                   help="Slurm mode: start K pj-relay (one per group of nodes) that carry the agents' streams, "
                   "so the master holds K streams instead of one per node; 0: none; auto (the default): one per "
                   f"{slurm.RELAY_GROUP} nodes from {slurm.RELAY_MIN_NODES} nodes on, none with --tls")
    loc = r.add_argument_group("local mode (emulated nodes)")
    loc.add_argument("--nodes", metavar="K", type=count(1), default=None,
                     help="agents (emulated nodes) to start (default 1)")
    loc.add_argument("--cores", metavar="N", type=count(1), default=None,
                     help="cores per agent (default: the CPUs this process may use)")
    loc.add_argument("--gpus", metavar="G", type=count(0), default=None, help="fake GPU ids 0..G-1 per agent")
    nodes = r.add_argument_group("nodes that do not come")
    nodes.add_argument("--node-timeout", metavar="T", type=seconds_for("--node-timeout"), default=None,
                       help="how long the master waits for every expected node to register "
                       "(seconds, or 2m, 1h...; default 60 s)")
    nodes.add_argument("--missing-nodes", choices=["continue", "fail"], default=None,
                       help="when some nodes have not registered by then: go on with the others "
                       "(continue, the default) or fail the run (fail)")
    lost = r.add_argument_group("agents and masters that go away")
    lost.add_argument("--heartbeat-timeout", metavar="T", type=seconds_for("--heartbeat-timeout"), default=None,
                      help="an agent silent this long is lost and its tasks are retried elsewhere "
                      "(seconds, or 2m...; default 30 s)")
    lost.add_argument("--crash-limit", metavar="N", type=count(0), default=None,
                      help="a task running on N lost nodes fails even with retries left (default 3; 0: no limit)")
    lost.add_argument("--resume", action="store_true",
                      help="continue the campaign journaled in --workdir DIR (after a killed master or the end "
                      "of an allocation): finished jobs stay finished, only FILE's jobs the master does not "
                      "know yet are submitted")
    r.add_argument("--tls", action="store_true",
                   help="the master serves TCP over TLS with a certificate made for this run; agents pin it")
    r.add_argument("--share-group", action="store_true",
                   help="let the workdir's group read it (directories 0750, files 0640; also PJ_SHARE=group); "
                   "default: the owner alone (0700, 0600)")
    r.add_argument("--quiet", "-q", action="store_true", help="no progress display")
    lg = r.add_argument_group("logs (DIR/master.log, DIR/agent-*.log)")
    logopts.add_options(lg, "the master and every agent this starts")
    r.set_defaults(func=cmd_run)

    def query(name: str, func: Callable[[argparse.Namespace], int], help: str) -> Parser:
        q = sub.add_parser(name, help=help)
        add_connection(q)
        add_json(q)
        q.set_defaults(func=func)
        return q  # type: ignore[no-any-return]

    s = sub.add_parser("submit", help="submit a job file, or one command after --, to a running master",
                       usage=submitcmd.USAGE.format(prog="pj submit"), description=submitcmd.DESCRIPTION)
    submitcmd.add_arguments(s, top=False)
    s.set_defaults(func=None, submit=True)
    query("status", cmd_status, "counts of jobs and tasks per state, nodes, cores")
    q = query("list", cmd_list, "every job with its state")
    q.add_argument("--state", action="extend", nargs="+", metavar="S",
                   help=f"only jobs in these states ({', '.join(STATES)}; commas work too)")
    q = query("info", cmd_info, "details of some jobs")
    q.add_argument("names", nargs="+", metavar="NAME")
    q.add_argument("--tasks", action="store_true", help="also every task (iteration) started so far")
    q = query("cancel", cmd_cancel, "cancel jobs")
    q.add_argument("names", nargs="+", metavar="NAME")
    q = query("wait", cmd_wait, "wait until jobs (default: all) have ended; exit 0 if all succeeded")
    q.add_argument("names", nargs="*", metavar="NAME")
    q.add_argument("--timeout", metavar="T", type=seconds_for("--timeout"), default=None,
                   help="give up after T (seconds, or 10m, 1h30m...); exit 1")
    q.add_argument("--reconnect-timeout", metavar="T", type=reconnect_seconds, default=RECONNECT_TIMEOUT_S,
                   help="when the master goes away (a restart, --resume), look for it again through the "
                   f"workdir for T before giving up; exit 1 (default {RECONNECT_TIMEOUT_S:g} s; 0: never)")
    q = query("finish", cmd_finish, "let the master stop once the jobs have ended")
    q.add_argument("--cancel", action="store_true", help="cancel the jobs that run or wait instead")
    query("resources", cmd_resources, "the nodes (agents), their free cores and GPUs, when their allocation ends")
    from . import alloccmd  # pj alloc add|list|remove

    alloccmd.add_parser(sub, query)
    add_report_parser(sub)  # pj report KIND: reads DIR/jobs.jsonl (client/report/)
    from .top import add_parser as add_top  # pj top: its options and its code live in top.py

    add_top(sub, add_connection)
    from . import clitools  # pj sbatch-template, pj completion

    clitools.add_parsers(sub)
    add_json(sub.choices["top"])  # --json after every subcommand (the others add theirs)
    return p


def pj_main(argv: Sequence[str] | None = None) -> int:
    """`pj COMMAND ...`; returns the exit code."""

    cliparse.quiet_grpc()
    words = list(sys.argv[1:] if argv is None else argv)
    as_json = cliparse.wants_json(words)

    def body() -> int:
        before, command = split_command(words)
        parser = pj_parser()
        args = parser.parse_args(before if command is not None else words)
        if getattr(args, "submit", False):
            return submitcmd.cmd_submit(args, command)
        if getattr(args, "alloc_add", False):  # `pj alloc add ... -- EXTRA_SBATCH_ARGS`
            from .alloccmd import cmd_alloc_add

            return cmd_alloc_add(args, command or ())
        if command is not None:  # `--` belongs to `pj submit` only: parse it as argparse would
            args = parser.parse_args(words)
        if not getattr(args, "func", None):
            raise UsageError(f"give a command: {COMMANDS}")
        return int(args.func(args))

    rc = cliparse.guard(body, as_json)
    if argv is None:  # this process's own command line: its children have exited, its output is out
        exit_now(rc)  # skip the interpreter's teardown (tens of ms on the wall time of `pj run`)
    return rc


if __name__ == "__main__":
    sys.exit(pj_main())
