"""The `pj` and `pj-submit` commands.

    pj run FILE [--workdir DIR] [--nodes K] [--cores N] [--gpus G] [--slurm|--local]
                [--node-timeout T] [--missing-nodes continue|fail] [--heartbeat-timeout T]
                [--crash-limit N] [--resume] [--tls] [--quiet]
    pj status|list|info NAME...|cancel NAME...|wait [NAME...]|finish [--cancel]|resources
    pj top [--once] [--interval S]
    pj-submit [--workdir DIR] FILE
    pj-submit [--workdir DIR] [--name N] [--cores C] ... -- CMD ARGS...

The master is found through ``--workdir DIR`` (or ``$PJ_WORKDIR``), or ``--master ADDR
--token-file F``. Exit codes: 0 done, 1 a runtime failure (no master answers, a job failed,
a timeout), 2 bad usage or input, 130 interrupted. Every error is one line on stderr, ``pj: ...``.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from pj import __version__
from pj.common.fastexit import exit_now
from pj.common.workdir import WORKDIR_ENV

from .commands import (
    UsageError,
    _connect,
    _print_lines,
    _say,
    cmd_cancel,
    cmd_finish,
    cmd_info,
    cmd_list,
    cmd_resources,
    cmd_status,
    cmd_wait,
)
from .convert import STATES
from .errors import InvalidJobError, PJError, UnknownJobError
from .redial import RECONNECT_TIMEOUT_S
from .report.command import add_parser as add_report_parser

if TYPE_CHECKING:  # importing api pulls in grpc: done when a command needs it
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see `{self.prog} --help`)")


# ---------------------------------------------------------------- shared helpers


def _guard(body: Callable[[], int]) -> int:
    """Run a command; turn every error into one line on stderr and an exit code."""
    try:
        rc = body()
        sys.stdout.flush()
        return rc
    except SystemExit as e:  # --help, --version
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    except UsageError as e:
        _say(str(e))
        return 2
    except (InvalidJobError, UnknownJobError) as e:
        _say(str(e))
        return 2
    except PJError as e:
        _say(str(e))
        return 1
    except KeyboardInterrupt:
        _say("interrupted")
        return 130
    except BrokenPipeError:  # `pj list | head`
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 1
    except Exception as e:
        if os.environ.get("PJ_DEBUG"):
            traceback.print_exc()
        _say(f"internal error: {type(e).__name__}: {e} (set PJ_DEBUG=1 for a traceback)")
        return 1


def quiet_grpc() -> None:
    """No gRPC C-core INFO lines (a GOAWAY when the master stops...) on the user's terminal.

    Only takes effect before grpc is first imported, which the CLI delays until it needs it.
    """
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")


def _add_connection(p: argparse.ArgumentParser, workdir: bool = True) -> None:
    g = p.add_argument_group("finding the master")
    if workdir:
        g.add_argument("--workdir", metavar="DIR", default=argparse.SUPPRESS,
                       help=f"the master's workdir (holds master.json and token; default ${WORKDIR_ENV})")
    g.add_argument("--master", metavar="ADDR", default=argparse.SUPPRESS,
                   help="the master's HOST:PORT (with --token-file, or the token of --workdir)")
    g.add_argument("--token-file", metavar="F", default=argparse.SUPPRESS, help="file holding the master's token")
    g.add_argument("--tls-cert", metavar="FILE", default=argparse.SUPPRESS,
                   help="the run's certificate (DIR/tls.crt) when the master runs with --tls: the only one trusted")
    g.add_argument("--rpc-timeout", metavar="S", type=float, default=argparse.SUPPRESS,
                   help="seconds each call may take (default 30)")


def _seconds_for(option: str) -> Callable[[str], float]:
    """A timeout for ``option``: plain seconds ("90", "1.5") or a duration ("10m", "1h30m", "1:30:00")."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            from pj.common.durations import DurationError, parse_duration

            try:
                return parse_duration(text, option)
            except DurationError as e:
                raise UsageError(str(e)) from None  # already names the option
        if not value > 0 or value == float("inf"):
            raise UsageError(f"{option}: must be a positive number of seconds, got {text!r}")
        return value

    return parse


_seconds = _seconds_for("--timeout")


def _reconnect_seconds(text: str) -> float:
    """--reconnect-timeout: as _seconds, and 0 (never)."""
    try:
        if float(text) == 0:
            return 0.0
    except ValueError:
        pass
    return _seconds_for("--reconnect-timeout")(text)


def _count(lo: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < lo:
            raise argparse.ArgumentTypeError(f"must be at least {lo}, got {value}")
        return value

    return parse


def cmd_run(args: argparse.Namespace) -> int:
    from pj.common import perms

    from .run import Campaign

    if args.share_group:  # the workdir, its logs and what the master and agents write there (perms.py)
        os.environ[perms.SHARE_ENV] = "group"
    from pj.common import logs

    # The master and every agent (local, or through srun's environment) read these (common/logs.py).
    if args.log_level:
        os.environ[logs.LEVEL_ENV] = args.log_level
    if args.log_format:
        os.environ[logs.FORMAT_ENV] = args.log_format
    try:
        perms.modes()
    except perms.ShareError as e:
        print(f"pj run: {e}", file=sys.stderr)
        return 2
    return Campaign(
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
    ).run()


def pj_parser() -> _Parser:
    p = _Parser(prog="pj", description="Run and query PJ campaigns (pilot jobs).")
    p.add_argument("--version", action="version", version=f"pj {__version__}")
    _add_connection(p)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    r = sub.add_parser("run", help="run a job file: a master, its agents, progress, a summary",
                       description="Run a job file: a master, its agents (here, or one per node of the "
                       "Slurm allocation this runs in), live progress, a summary; exit 0 only if every job "
                       "succeeded.")
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
    loc = r.add_argument_group("local mode (emulated nodes)")
    loc.add_argument("--nodes", metavar="K", type=_count(1), default=None,
                     help="agents (emulated nodes) to start (default 1)")
    loc.add_argument("--cores", metavar="N", type=_count(1), default=None,
                     help="cores per agent (default: the CPUs this process may use)")
    loc.add_argument("--gpus", metavar="G", type=_count(0), default=None, help="fake GPU ids 0..G-1 per agent")
    nodes = r.add_argument_group("nodes that do not come")
    nodes.add_argument("--node-timeout", metavar="T", type=_seconds_for("--node-timeout"), default=None,
                       help="how long the master waits for every expected node to register "
                       "(seconds, or 2m, 1h...; default 60 s)")
    nodes.add_argument("--missing-nodes", choices=["continue", "fail"], default=None,
                       help="when some nodes have not registered by then: go on with the others "
                       "(continue, the default) or fail the run (fail)")
    lost = r.add_argument_group("agents and masters that go away")
    lost.add_argument("--heartbeat-timeout", metavar="T", type=_seconds_for("--heartbeat-timeout"), default=None,
                      help="an agent silent this long is lost and its tasks are retried elsewhere "
                      "(seconds, or 2m...; default 30 s)")
    lost.add_argument("--crash-limit", metavar="N", type=_count(0), default=None,
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
    lg.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default=None,
                    help="of the master and every agent this starts (default info; also $PJ_LOG_LEVEL)")
    lg.add_argument("--log-format", choices=("console", "json"), default=None,
                    help="console: key=value lines (the default); json: one object per line; both with "
                    "ISO-8601 timestamps in milliseconds (also $PJ_LOG_FORMAT)")
    r.set_defaults(func=cmd_run)

    def query(name: str, func: Callable[[argparse.Namespace], int], help: str, json_opt: bool = False) -> _Parser:
        q = sub.add_parser(name, help=help)
        _add_connection(q)
        if json_opt:
            q.add_argument("--json", action="store_true", help="machine-readable output")
        q.set_defaults(func=func)
        return q  # type: ignore[return-value]

    query("status", cmd_status, "counts of jobs and tasks per state, nodes, cores", json_opt=True)
    q = query("list", cmd_list, "every job with its state", json_opt=True)
    q.add_argument("--state", action="extend", nargs="+", metavar="S",
                   help=f"only jobs in these states ({', '.join(STATES)}; commas work too)")
    q = query("info", cmd_info, "details of some jobs", json_opt=True)
    q.add_argument("names", nargs="+", metavar="NAME")
    q.add_argument("--tasks", action="store_true", help="also every task (iteration) started so far")
    q = query("cancel", cmd_cancel, "cancel jobs")
    q.add_argument("names", nargs="+", metavar="NAME")
    q = query("wait", cmd_wait, "wait until jobs (default: all) have ended; exit 0 if all succeeded")
    q.add_argument("names", nargs="*", metavar="NAME")
    q.add_argument("--timeout", metavar="T", type=_seconds, default=None,
                   help="give up after T (seconds, or 10m, 1h30m...); exit 1")
    q.add_argument("--reconnect-timeout", metavar="T", type=_reconnect_seconds, default=RECONNECT_TIMEOUT_S,
                   help="when the master goes away (a restart, --resume), look for it again through the "
                   f"workdir for T before giving up; exit 1 (default {RECONNECT_TIMEOUT_S:g} s; 0: never)")
    q = query("finish", cmd_finish, "let the master stop once the jobs have ended")
    q.add_argument("--cancel", action="store_true", help="cancel the jobs that run or wait instead")
    query("resources", cmd_resources, "the nodes (agents) and their free cores and GPUs", json_opt=True)
    add_report_parser(sub)  # pj report KIND: reads DIR/jobs.jsonl (client/report/)
    from .top import add_parser as add_top  # pj top: its options and its code live in top.py

    add_top(sub, _add_connection)
    t = sub.add_parser("sbatch-template", help="print the Slurm batch script that runs a campaign (pj.sbatch)",
                       description="Print scripts/pj.sbatch, the batch script that runs `pj run FILE` in one "
                       "Slurm allocation: save it, adapt it, submit it with `sbatch -N 4 pj.sbatch FILE`.")
    t.set_defaults(func=cmd_sbatch_template)
    return p


def cmd_sbatch_template(args: argparse.Namespace) -> int:
    from importlib.resources import files

    sys.stdout.write(files("pj.client").joinpath("pj.sbatch").read_text())
    return 0


def pj_main(argv: Sequence[str] | None = None) -> int:
    """`pj COMMAND ...`; returns the exit code."""

    quiet_grpc()

    def body() -> int:
        args = pj_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
        if not getattr(args, "func", None):
            raise UsageError("give a command: run, status, list, info, cancel, wait, finish, resources, top, report or sbatch-template")
        return int(args.func(args))

    rc = _guard(body)
    if argv is None:  # this process's own command line: its children have exited, its output is out
        exit_now(rc)  # skip the interpreter's teardown (tens of ms on the wall time of `pj run`)
    return rc


# ---------------------------------------------------------------- pj-submit

_COMMAND_OPTIONS = ("name", "cores", "nodes", "gpus", "after", "iterations", "wd", "stdout", "stderr",
                    "env", "walltime", "retries")  # fmt: skip


def submit_parser() -> _Parser:
    p = _Parser(
        prog="pj-submit",
        usage="pj-submit [--workdir DIR] FILE\n"
        "       pj-submit [--workdir DIR] [--name N] [--cores C] [...] -- CMD ARGS...",
        description="Submit a job file, or one command, to a running PJ master; print the job names.",
    )
    p.add_argument("--version", action="version", version=f"pj-submit {__version__}")
    _add_connection(p)
    p.add_argument("file", nargs="*", metavar="FILE", help="a job file (PJ's format or QCG-PilotJob's)")
    g = p.add_argument_group("one command (after --)")
    g.add_argument("--name", help="job name (default: the command's name and a random suffix)")
    g.add_argument("--cores", metavar="C", help="cores per node: 4, 2:8 (min:max), 2: (at least 2)")
    g.add_argument("--nodes", metavar="N", help="nodes: like --cores")
    g.add_argument("--gpus", metavar="G", type=_count(0), help="GPUs per node")
    g.add_argument("--after", metavar="J", action="extend", nargs="+", help="run after these jobs")
    g.add_argument("--iterations", metavar="I", help="N (0..N-1) or A:B (A..B-1)")
    g.add_argument("--wd", metavar="D", help="working directory")
    g.add_argument("--stdout", metavar="F")
    g.add_argument("--stderr", metavar="F")
    g.add_argument("--env", metavar="K=V", action="extend", nargs="+", help="environment variables")
    g.add_argument("--walltime", metavar="T", help="time limit: 90s, 10min, 1h30m, '1h 30min', HH:MM:SS; a bare number is minutes (Slurm)")
    g.add_argument("--retries", metavar="R", type=_count(0), help="times to retry a failed task")
    return p


def _submit_jobs(args: argparse.Namespace, command: list[str] | None) -> tuple[list[Any], list[str]]:
    from . import jobfile

    given = [f"--{o}" for o in _COMMAND_OPTIONS if getattr(args, o) is not None]
    if command is None:
        if len(args.file) != 1:
            if not args.file:
                raise UsageError("give a job file, or a command after --: pj-submit [options] -- CMD ARGS...")
            raise UsageError(f"give one job file; to submit a command put it after --: pj-submit -- {' '.join(args.file)}")
        if given:
            raise UsageError(f"{', '.join(given)}: only for a command given after --, not for a job file")
        try:
            jf = jobfile.load_jobfile(args.file[0], allow_external=True)
        except jobfile.JobFileError as e:
            raise UsageError(str(e)) from None
        notes = list(jf.warnings)
        if jf.finish_after_done:
            notes.append("the file asks the master to finish once its jobs are done; "
                         "pj-submit does not: run `pj wait && pj finish`")
        return list(jf.jobs), notes
    if args.file:
        raise UsageError(f"give a job file or a command after --, not both ({args.file[0]!r} and {command[0]!r})")
    if not command:
        raise UsageError("nothing after --: give the command to run")
    try:
        spec = jobfile.command_job(
            command,
            name=args.name,
            cores=args.cores,
            nodes=args.nodes,
            gpus=args.gpus or 0,
            after=args.after or (),
            iterations=args.iterations,
            wd=args.wd,
            stdout=args.stdout,
            stderr=args.stderr,
            env=args.env or (),
            walltime=args.walltime,
            retries=args.retries or 0,
        )
    except jobfile.JobFileError as e:
        raise UsageError(str(e)) from None
    return [spec], []


def submit_main(argv: Sequence[str] | None = None) -> int:
    """`pj-submit ...`; prints the submitted names one per line; returns the exit code."""

    quiet_grpc()

    def body() -> int:
        words = list(sys.argv[1:] if argv is None else argv)
        command: list[str] | None = None
        if "--" in words:
            i = words.index("--")
            words, command = words[:i], words[i + 1 :]
        args = submit_parser().parse_args(words)
        jobs, notes = _submit_jobs(args, command)
        for note in notes:
            _say(f"warning: {note}")
        with _connect(args) as c:
            names = c.submit(jobs, base_dir=os.getcwd())
        _print_lines(names)
        return 0

    return _guard(body)


if __name__ == "__main__":
    sys.exit(pj_main())
