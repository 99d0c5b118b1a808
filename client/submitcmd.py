"""`pj-submit` and `pj submit`: a job file, or one command given after ``--``, to a running master.

    pj-submit [--workdir DIR] [--wait] [--json] FILE
    pj-submit [--workdir DIR] [--name N] [--cores C] ... [--wait] -- CMD ARGS...
    pj submit ... (the same)

Prints the submitted names one per line (``--json``: ``{"submitted": [...], "warnings": [...]}``);
``--wait`` then waits for them as `pj wait` does and exits 0 only if every one succeeded.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pj import __version__

from . import cliparse
from .cliparse import Parser, add_connection, add_json, count
from .commands import UsageError, _connect, _json, _print_lines, _say, show_final, wait_result
from .redial import RECONNECT_TIMEOUT_S

if TYPE_CHECKING:
    from .calls import Jobs

COMMAND_OPTIONS = ("name", "cores", "nodes", "gpus", "after", "iterations", "wd", "stdout", "stderr",
                   "env", "walltime", "retries", "memory")  # fmt: skip
USAGE = ("{prog} [--workdir DIR] [--wait] [--json] FILE\n"
         "       {prog} [--workdir DIR] [--name N] [--cores C] [...] [--wait] -- CMD ARGS...")  # fmt: skip
DESCRIPTION = "Submit a job file, or one command, to a running PJ master; print the job names."


def add_arguments(p: argparse.ArgumentParser, top: bool) -> None:
    """The options of a submission (on pj-submit's parser, ``top``, or on `pj submit`'s)."""
    add_connection(p)
    add_json(p, top=top)
    p.add_argument("file", nargs="*", metavar="FILE", help="a job file (PJ's format or QCG-PilotJob's)")
    p.add_argument("--wait", action="store_true",
                   help="then wait until the submitted jobs have ended, as `pj wait`: exit 0 only if all succeeded")
    g = p.add_argument_group("one command (after --)")
    g.add_argument("--name", help="job name (default: the command's name and a random suffix)")
    g.add_argument("--cores", metavar="C", help="cores per node: 4, 2:8 (min:max), 2: (at least 2)")
    g.add_argument("--nodes", metavar="N", help="nodes: like --cores")
    g.add_argument("--gpus", metavar="G", type=count(0), help="GPUs per node")
    g.add_argument("--memory", metavar="M", help='memory per node of each task: 512M, 4G, 1.5GiB; a bare number is MiB')
    g.add_argument("--after", metavar="J", action="extend", nargs="+", help="run after these jobs")
    g.add_argument("--iterations", metavar="I", help="N (0..N-1) or A:B (A..B-1)")
    g.add_argument("--wd", metavar="D", help="working directory")
    g.add_argument("--stdout", metavar="F")
    g.add_argument("--stderr", metavar="F")
    g.add_argument("--env", metavar="K=V", action="extend", nargs="+", help="environment variables")
    g.add_argument("--walltime", metavar="T",
                   help="time limit: 90s, 10min, 1h30m, '1h 30min', HH:MM:SS; a bare number is minutes (Slurm)")
    g.add_argument("--retries", metavar="R", type=count(0), help="times to retry a failed task")
    p.set_defaults(reconnect_timeout=RECONNECT_TIMEOUT_S)  # --wait looks for a master that went away


def submit_parser() -> Parser:
    p = Parser(prog="pj-submit", usage=USAGE.format(prog="pj-submit"), description=DESCRIPTION)
    p.add_argument("--version", action="version", version=f"pj-submit {__version__}")
    add_arguments(p, top=True)
    return p


def split_command(words: list[str]) -> tuple[list[str], list[str] | None]:
    """The words before ``--`` and the command after it (None without ``--``)."""
    if "--" in words:
        i = words.index("--")
        return words[:i], words[i + 1 :]
    return words, None


def _jobs(args: argparse.Namespace, command: list[str] | None, prog: str) -> tuple[Jobs, list[str]]:
    from . import jobfile

    given = [f"--{o}" for o in COMMAND_OPTIONS if getattr(args, o) is not None]
    if command is None:
        if len(args.file) != 1:
            if not args.file:
                raise UsageError(f"give a job file, or a command after --: {prog} [options] -- CMD ARGS...")
            raise UsageError(f"give one job file; to submit a command put it after --: {prog} -- {' '.join(args.file)}")
        if given:
            raise UsageError(f"{', '.join(given)}: only for a command given after --, not for a job file")
        try:
            jf = jobfile.load_jobfile(args.file[0], allow_external=True)
        except jobfile.JobFileError as e:
            raise UsageError(str(e)) from None
        notes = list(jf.warnings)
        if jf.finish_after_done:
            notes.append(f"the file asks the master to finish once its jobs are done; "
                         f"{prog} does not: run `pj wait && pj finish`")
        return jf.batch, notes
    if args.file:
        raise UsageError(f"give a job file or a command after --, not both ({args.file[0]!r} and {command[0]!r})")
    if not command:
        raise UsageError("nothing after --: give the command to run")
    try:
        spec = jobfile.command_job(
            command, name=args.name, cores=args.cores, nodes=args.nodes, gpus=args.gpus or 0,
            after=args.after or (), iterations=args.iterations, wd=args.wd, stdout=args.stdout,
            stderr=args.stderr, env=args.env or (), walltime=args.walltime, retries=args.retries or 0,
            memory=args.memory,
        )  # fmt: skip
    except jobfile.JobFileError as e:
        raise UsageError(str(e)) from None
    return [spec], []


def cmd_submit(args: argparse.Namespace, command: list[str] | None, prog: str = "pj submit") -> int:
    jobs, notes = _jobs(args, command, prog)
    as_json = bool(getattr(args, "json", False))
    if not as_json:
        for note in notes:
            _say(f"warning: {note}")
    with _connect(args) as c:
        names = c.submit(jobs, base_dir=os.getcwd())
        if not args.wait:
            if as_json:
                _json({"submitted": names, "warnings": notes})
            else:
                _print_lines(names)
            return 0
        if not as_json:
            _print_lines(names)
            sys.stdout.flush()
        final = c.wait(names)
    if as_json:
        result = wait_result(final)
        _json({"submitted": names, "warnings": notes, **result})
        return 0 if result["all_succeeded"] else 1
    return show_final(final, False)


def submit_main(argv: Sequence[str] | None = None) -> int:
    """`pj-submit ...`; prints the submitted names one per line; returns the exit code."""
    cliparse.quiet_grpc()
    words, command = split_command(list(sys.argv[1:] if argv is None else argv))

    def body() -> int:
        return cmd_submit(submit_parser().parse_args(words), command, prog="pj-submit")

    return cliparse.guard(body, cliparse.wants_json(words))
