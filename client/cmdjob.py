"""``pj-submit [options] -- CMD ARGS...``: one job from a command line, checked like a job file's;
errors name the option at fault."""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Sequence

from pj.common.durations import DurationError, parse_duration
from pj.common.sizes import SizeError, parse_size
from pj.common.speccheck import NAME_MAX, SpecError, check_specs
from pj.v1 import pj_pb2

from .jobfields import UINT32, JobFileError, show, unicode_ok

# JobSpec field -> the option that sets it, for errors found by check_specs.
_OPTION_NAMES = {
    "name": "--name", "exec": "command", "args": "command", "cores": "--cores", "nodes": "--nodes",
    "gpus": "--gpus", "after": "--after", "iterations": "--iterations", "wd": "--wd",
    "stdout": "--stdout", "stderr": "--stderr", "env": "--env", "walltime_s": "--walltime",
    "retries": "--retries", "memory_request_bytes": "--memory",
}  # fmt: skip


def command_job(
    argv: Sequence[str],
    name: str | None = None,
    cores: str | None = None,
    nodes: str | None = None,
    gpus: int = 0,
    after: Sequence[str] = (),
    iterations: str | None = None,
    wd: str | None = None,
    stdout: str | None = None,
    stderr: str | None = None,
    env: Sequence[str] = (),
    walltime: str | None = None,
    retries: int = 0,
    memory: str | None = None,
) -> pj_pb2.JobSpec:
    """The job for ``pj-submit [options] -- CMD ARGS...``; errors name the option at fault.

    ``cores``/``nodes``: ``"4"``, ``"2:8"`` (min:max), ``"2:"`` (at least 2) or ``":8"`` (1..8).
    ``iterations``: ``"N"`` (0..N-1) or ``"A:B"`` (A..B-1). ``after`` entries may be comma-separated.
    The default name is the command's base name and a short random suffix. Dependencies may name
    jobs already submitted: the master checks them.
    """
    if not argv or not argv[0]:
        raise JobFileError("command: no command given (pj-submit [options] -- CMD ARGS...)", field="command")
    texts = [("command", a) for a in argv] + [("--after", a) for a in after] + [("--env", e) for e in env]
    texts += [
        (o, v) for o, v in (("--name", name), ("--wd", wd), ("--stdout", stdout), ("--stderr", stderr)) if v
    ]
    for option, text in texts:
        if not unicode_ok(text):
            raise JobFileError(f"{option}: {show(text)} is not valid UTF-8", field=option)
    spec = pj_pb2.JobSpec(name=name if name is not None else _default_name(argv[0]), exec=argv[0])
    spec.args.extend(argv[1:])
    for option, value, rng in (("--cores", cores, spec.cores), ("--nodes", nodes, spec.nodes)):
        if value is not None:
            rng.min, rng.max = _cli_range(option, value)
    if gpus < 0:
        raise JobFileError(f"--gpus: must not be negative, got {gpus}", field="--gpus")
    spec.gpus = min(gpus, UINT32)
    spec.after.extend(a.strip() for entry in after for a in entry.split(",") if a.strip())
    if iterations is not None:
        spec.iterations.start, spec.iterations.stop = _cli_iterations(iterations)
    for key, value in (("wd", wd), ("stdout", stdout), ("stderr", stderr)):
        if value:
            setattr(spec, key, value)
    for item in env:
        key, sep, val = item.partition("=")
        if not sep or not key:
            raise JobFileError(f"--env: expected KEY=VALUE, got {show(item)}", field="--env")
        spec.env[key] = val
    if walltime is not None:
        try:
            spec.walltime_s = parse_duration(walltime, "--walltime")
        except DurationError as exc:
            raise JobFileError(str(exc), field="--walltime") from None
    if retries < 0:
        raise JobFileError(f"--retries: must not be negative, got {retries}", field="--retries")
    spec.retries = min(retries, UINT32)
    if memory is not None:
        try:
            spec.memory_request_bytes = parse_size(memory)
        except SizeError as exc:
            raise JobFileError(f"--memory: {exc.reason}", field="--memory") from None
    try:
        check_specs([spec], allow_external=True)
    except SpecError as exc:
        option = _OPTION_NAMES.get(exc.field, exc.field)
        raise JobFileError(f"{option}: {exc.reason}", job=spec.name, field=option) from None
    return spec


_CLI_RANGE = re.compile(r"(\d{1,10})?(:)?(\d{1,10})?", re.ASCII)
_CLI_ITERATIONS = re.compile(r"(?:(\d{1,18}):)?(\d{1,18})", re.ASCII)


def _cli_range(option: str, text: str) -> tuple[int, int]:
    m = _CLI_RANGE.fullmatch(text.strip())
    if not m or not (m[1] or m[3]) or (m[3] and not m[2]):
        raise JobFileError(
            f"{option}: expected N or MIN:MAX (or MIN: for at least MIN), got {show(text)}", field=option
        )
    lo = int(m[1]) if m[1] else 1
    hi = lo if not m[2] else int(m[3]) if m[3] else 0  # 0: no upper bound
    for n in (lo, hi):
        if n > UINT32:
            raise JobFileError(f"{option}: {n} is too large", field=option)
    if lo < 1 or (m[3] and hi < 1):
        raise JobFileError(f"{option}: must be at least 1, got {show(text)}", field=option)
    return lo, hi


def _cli_iterations(text: str) -> tuple[int, int]:
    m = _CLI_ITERATIONS.fullmatch(text.strip())
    if not m:
        raise JobFileError(f"--iterations: expected N or START:STOP, got {show(text)}", field="--iterations")
    start, stop = int(m[1] or 0), int(m[2])
    if stop <= start:
        raise JobFileError(
            f"--iterations: {show(text)} is empty (STOP must be greater than START)", field="--iterations"
        )
    return start, stop


def _default_name(command: str) -> str:
    base = re.sub(r"[^A-Za-z0-9_.+-]", "_", os.path.basename(command.rstrip("/"))).lstrip(".") or "job"
    return f"{base[: NAME_MAX - 8]}-{secrets.token_hex(3)}"
