"""Job files read into ``pj.v1.JobSpec``: PJ's native format and QCG-PilotJob batch files.

- **Native** (design.md section 3): a JSON object ``{"jobs": [...]}``.
- **QCG-PilotJob**: a JSON array of requests (``submit``, ``control``, ...), read unchanged.

Both end in the same ``JobSpec`` list, checked by :func:`pj.common.speccheck.check_specs`. Fields
are kept verbatim: ``${it}``, ``${itval}``, ``${ncores}``, ``${nnodes}``, ``${nlist}``, ``${root_wd}``
and ``${jname}`` are substituted by the master, per task, when it launches. The only substitution
done here is QCG's submit-time variables (``${rcnt}``, ``${uniq}``, ``${sname}``, ``${date}``,
``${time}``, ``${dateTime}``), field by field, as QCG-PilotJob does when it accepts a request.

Ranges (``cores``, ``nodes``): an integer is exact (``min == max``); ``{"min": a}`` alone means "at
least a, as many as fit" and is sent as ``max = 0``, the wire's "no upper bound"; ``{"max": b}``
alone means ``1..b``.

Every error is a :class:`JobFileError` whose message is one line naming the file, the job (name and
1-based position) and the field, e.g. ``jobs.json: job 'sim' (#2): unknown field 'core'; did you
mean 'cores'?``. ``null`` stands for an absent field. A key given twice in one object is an error
(native) or a warning (QCG-PilotJob took the last value). The QCG format lives in
:mod:`pj.client.qcgfile`, built on this module's :class:`FieldReader`.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NoReturn

from pj.common.durations import DurationError, parse_duration
from pj.common.speccheck import NAME_MAX, SpecError, check_specs
from pj.v1 import pj_pb2

__all__ = ["JobFile", "JobFileError", "command_job", "load_jobfile", "parse_jobfile"]

_UINT32 = 2**32 - 1
_INT64 = 2**63 - 1

NATIVE_FIELDS = (
    "name", "exec", "script", "args", "env", "wd", "stdin", "stdout", "stderr", "cores", "nodes",
    "gpus", "iterations", "after", "model", "modules", "venv", "walltime", "retries", "attributes",
)  # fmt: skip
_NATIVE_HINTS = {
    "execution": "this is QCG-PilotJob's layout; in PJ's format put 'exec', 'args', ... in the job itself",
    "resources": "this is QCG-PilotJob's layout; in PJ's format use 'cores', 'nodes', 'gpus', 'walltime'",
    "dependencies": "use 'after': [\"job\", ...]",
    "numCores": "did you mean 'cores'?",
    "numNodes": "did you mean 'nodes'?",
    "wt": "did you mean 'walltime'?",
    "time": "did you mean 'walltime'?",
    "command": "did you mean 'exec' (a program) or 'script' (a shell script)?",
    "cmd": "did you mean 'exec' (a program) or 'script' (a shell script)?",
    "cwd": "did you mean 'wd'?",
    "workdir": "did you mean 'wd'?",
    "depends": "did you mean 'after'?",
}

# JobSpec field -> how each format spells it, for errors found by check_specs.
_NATIVE_NAMES = {"walltime_s": "walltime"}
_OPTION_NAMES = {
    "name": "--name", "exec": "command", "args": "command", "cores": "--cores", "nodes": "--nodes",
    "gpus": "--gpus", "after": "--after", "iterations": "--iterations", "wd": "--wd",
    "stdout": "--stdout", "stderr": "--stderr", "env": "--env", "walltime_s": "--walltime",
    "retries": "--retries",
}  # fmt: skip


class JobFileError(ValueError):
    """A job file (or ``pj-submit`` command line) that cannot be used; ``str()`` is one line."""

    def __init__(self, message: str, *, job: str | None = None, field: str | None = None) -> None:
        super().__init__(" ".join(message.splitlines()))
        self.job = job
        self.field = field


@dataclass(frozen=True)
class JobFile:
    """What a job file asks for. ``warnings`` are one-line messages to show the user."""

    jobs: list[pj_pb2.JobSpec]
    kind: Literal["native", "qcg"]
    finish_after_done: bool
    warnings: list[str]


def load_jobfile(path: str | Path, *, allow_external: bool = False) -> JobFile:
    """Read and check the job file at ``path`` (native or QCG-PilotJob format, told apart by shape).

    ``allow_external``: dependencies may name jobs outside the file (submitting to a running master,
    which checks them); otherwise every dependency must be in the file.
    """
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise JobFileError(f"{source}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise JobFileError(f"{source}: cannot read it: {exc.strerror or exc}") from None
    return parse_jobfile(text, source, allow_external=allow_external)


def parse_jobfile(text: str, source: str = "<string>", *, allow_external: bool = False) -> JobFile:
    """Parse and check a job file given as text; ``source`` names it in messages."""
    dups: dict[int, tuple[str, object]] = {}
    try:
        data = json.loads(text, object_pairs_hook=_pairs_hook(dups), parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise JobFileError(
            f"{source}: not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except RecursionError:
        raise JobFileError(f"{source}: not valid JSON: nested too deeply") from None
    except ValueError as exc:
        raise JobFileError(f"{source}: not valid JSON: {exc}") from None
    ctx = FileContext(source, dups, strict=not isinstance(data, list))
    if isinstance(data, dict):
        kind: Literal["native", "qcg"] = "native"
        specs, labels = _native_file(ctx, data)
        finish = False
    elif isinstance(data, list):
        from pj.client.qcgfile import QCG_FIELD_NAMES, read_qcg  # qcgfile builds on this module

        kind = "qcg"
        specs, labels, finish = read_qcg(ctx, data)
    else:
        raise JobFileError(
            f'{source}: expected a JSON object {{"jobs": [...]}} (PJ\'s format) or an array of requests '
            f"(QCG-PilotJob's), got {kind_of(data)}"
        )
    for key, _obj in dups.values():
        if ctx.strict:
            raise JobFileError(f"{source}: key {key!r} is given twice in one object")
        ctx.warn(f"key {key!r} is given twice in one object; the last value is used, as QCG-PilotJob does")
    try:
        check_specs(specs, allow_external=allow_external)
    except SpecError as exc:
        names = _NATIVE_NAMES if kind == "native" else QCG_FIELD_NAMES
        field = names.get(exc.field, exc.field if kind == "native" else f"execution.{exc.field}")
        label = labels[exc.index] if exc.index is not None else exc.label
        raise JobFileError(
            f"{source}: {label}: field {field!r}: {exc.reason}", job=exc.job, field=field
        ) from None
    return JobFile(jobs=specs, kind=kind, finish_after_done=finish, warnings=ctx.finish_warnings())


# ----------------------------------------------------------------------------- shared readers


class FileContext:
    """The file being read: its name, duplicate keys found by the JSON reader, and warnings."""

    def __init__(self, source: str, dups: dict[int, tuple[str, object]], strict: bool) -> None:
        self.source = source
        self.dups = dups
        self.strict = strict
        self._warnings: list[str] = []
        self._grouped: dict[str, list[str]] = {}

    def warn(self, message: str) -> None:
        self._warnings.append(f"{self.source}: {message}")

    def warn_job(self, message: str, label: str) -> None:
        """One warning per kind of problem, naming the jobs it concerns."""
        self._grouped.setdefault(message, []).append(label)

    def finish_warnings(self) -> list[str]:
        out = list(self._warnings)
        for message, labels in self._grouped.items():
            shown = ", ".join(labels[:3]) + (f" and {len(labels) - 3} more" if len(labels) > 3 else "")
            out.append(f"{self.source}: {shown}: {message}")
        return out


class FieldReader:
    """One job being read: where it is (for messages) and typed access to its fields."""

    def __init__(self, ctx: FileContext, label: str, prefix: str = "") -> None:
        self.ctx = ctx
        self.label = label
        self.prefix = prefix  # "execution." etc. in QCG jobs

    def fail(self, field: str, message: str) -> NoReturn:
        raise JobFileError(
            f"{self.ctx.source}: {self.label}: field {self.prefix + field!r}: {message}",
            field=self.prefix + field,
        )

    def sub(self, prefix: str) -> FieldReader:
        return FieldReader(self.ctx, self.label, prefix)

    def obj(self, field: str, value: Any, what: str = "an object") -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(field, f"expected {what}, got {kind_of(value)}")
        self.check_dups(field, value)
        return value

    def check_dups(self, field: str | None, value: dict[str, Any]) -> None:
        """Refuse (native) or warn about (QCG: it took the last value) a key given twice in ``value``."""
        found = self.ctx.dups.pop(id(value), None)
        if found is None:
            return
        key = found[0]
        where = f" in {self.prefix + field!r}" if field else ""
        if self.ctx.strict:
            raise JobFileError(
                f"{self.ctx.source}: {self.label}: key {key!r} is given twice{where}",
                field=self.prefix + (field or key),
            )
        self.ctx.warn_job(f"key {key!r} is given twice{where}; the last value is used", self.label)

    def known(
        self, value: dict[str, Any], fields: Sequence[str], hints: Mapping[str, str] | None = None
    ) -> None:
        """Refuse the first key of ``value`` not in ``fields``, suggesting the likely one."""
        for key in value:
            if key not in fields:
                hint = (hints or {}).get(key) or suggest(key, fields)
                where = f" in {self.prefix[:-1]!r}" if self.prefix else ""
                raise JobFileError(
                    f"{self.ctx.source}: {self.label}: unknown field {key!r}{where}{'; ' + hint if hint else ''}",
                    field=self.prefix + key,
                )

    def job_head(
        self, obj: Any, fields: Sequence[str], hints: Mapping[str, str] | None = None
    ) -> pj_pb2.JobSpec:
        """Start a job of either format: an object, no key twice, a name, only ``fields``."""
        if not isinstance(obj, dict):
            raise JobFileError(f"{self.ctx.source}: {self.label}: expected a job object, got {kind_of(obj)}")
        self.check_dups(None, obj)
        if obj.get("name") is None:
            raise JobFileError(f"{self.ctx.source}: {self.label}: missing field 'name'", field="name")
        spec = pj_pb2.JobSpec(name=self.string("name", obj["name"]))
        self.known(obj, fields, hints)
        return spec

    def string(self, field: str, value: Any) -> str:
        if not isinstance(value, str):
            self.fail(field, f"expected a string, got {kind_of(value)}")
        if not unicode_ok(value):
            self.fail(field, f"{show(value)} is not valid Unicode (a lone surrogate escape)")
        return value

    def integer(self, field: str, value: Any, lo: int = 0, hi: int = _UINT32) -> int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(field, f"expected an integer, got {kind_of(value)}")
        if value < lo:
            self.fail(field, f"must be at least {lo}, got {show(value)}")
        if value > hi:
            self.fail(field, f"must be at most {hi}, got {show(value)}")
        return value

    def text(self, field: str, value: Any, bools: bool = False) -> str:
        """A string, or a number (or with ``bools``, true/false) written as text."""
        if isinstance(value, str):
            return self.string(field, value)
        if isinstance(value, bool):
            if bools:
                return str(value)
        elif isinstance(value, int | float):
            return str(value)
        self.fail(field, f"expected a string or a number, got {kind_of(value)}")

    def texts(self, field: str, value: Any, bools: bool = False) -> list[str]:
        if not isinstance(value, list):
            self.fail(field, f"expected a list, got {kind_of(value)}")
        return [self.text(f"{field}[{k}]", v, bools) for k, v in enumerate(value)]

    def strings(self, field: str, value: Any) -> list[str]:
        if isinstance(value, str):
            return [self.string(field, value)]
        if not isinstance(value, list):
            self.fail(field, f"expected a list of strings or one string, got {kind_of(value)}")
        return [self.string(f"{field}[{k}]", v) for k, v in enumerate(value)]

    def mapping(self, field: str, value: Any, what: str = "an object") -> dict[str, Any]:
        """An object whose keys are valid Unicode (keys of ``env``, ``attributes``)."""
        obj = self.obj(field, value, what)
        for key in obj:
            self.string(f"{field}.{key}", key)
        return obj

    def env(self, field: str, value: Any) -> dict[str, str]:
        env = self.mapping(field, value, 'an object {"NAME": "value", ...}')
        return {k: self.text(f"{field}.{k}", v) for k, v in env.items()}

    def attributes(self, field: str, value: Any) -> dict[str, str]:
        """Strings stay as they are; other JSON values are kept as compact JSON text."""
        out = {}
        for key, v in self.mapping(field, value).items():
            try:
                out[key] = self.string(f"{field}.{key}", v) if isinstance(v, str) else _compact(v)
            except RecursionError:
                self.fail(f"{field}.{key}", "nested too deeply")
        return out

    def walltime(self, field: str, value: Any) -> float:
        try:
            return parse_duration(value, field)
        except DurationError as exc:
            self.fail(field, exc.reason)

    def count(self, field: str, value: Any, spec: pj_pb2.Range, qcg: bool = False) -> list[str]:
        """Fill ``spec`` from an int or a {min, max} object (QCG: also exact, scheduler).

        Returns ``["scheduler"]`` when a QCG range has one (:mod:`pj.client.qcgfile` reads it).
        """
        form = '{"exact": n}, {"min": a, "max": b}' if qcg else '{"min": a, "max": b}'
        if not isinstance(value, dict):
            if isinstance(value, bool) or not isinstance(value, int | float):
                self.fail(field, f"expected an integer or {form}, got {kind_of(value)}")
            n = self.integer(field, value, 1)
            spec.min, spec.max = n, n
            return []
        rng = self.obj(field, value)
        keys = ("exact", "min", "max", "scheduler") if qcg else ("min", "max")
        hints = None if qcg else {"exact": "give an integer for an exact count"}
        self.sub(self.prefix + field + ".").known(rng, keys, hints)
        exact, lo, hi = rng.get("exact"), rng.get("min"), rng.get("max")
        ignored = ["scheduler"] if rng.get("scheduler") is not None else []  # read by qcgfile
        if exact is not None:
            if lo is not None or hi is not None or ignored:
                self.fail(field, "'exact' cannot be combined with 'min', 'max' or 'scheduler'")
            n = self.integer(f"{field}.exact", exact, 1)
            spec.min, spec.max = n, n
            return []
        if lo is None and hi is None:
            self.fail(field, f"give {'exact, ' if qcg else ''}'min', 'max' or both")
        spec.min = self.integer(f"{field}.min", lo, 1) if lo is not None else 1
        spec.max = self.integer(f"{field}.max", hi, 1) if hi is not None else 0  # 0: no upper bound
        if spec.max and spec.max < spec.min:
            self.fail(field, f"min {spec.min} is greater than max {spec.max}")
        return ignored

    def iterations(self, field: str, value: Any, spec: pj_pb2.Iterations, allow_int: bool) -> None:
        if allow_int and not isinstance(value, dict):
            if isinstance(value, bool) or not isinstance(value, int | float):
                self.fail(
                    field,
                    f'expected an integer, {{"start": a, "stop": b}} or {{"values": [...]}}, got {kind_of(value)}',
                )
            spec.start, spec.stop = 0, self.integer(field, value, 1, _INT64)
            return
        it = self.obj(field, value, '{"start": a, "stop": b} or {"values": [...]}')
        self.sub(self.prefix + field + ".").known(it, ("start", "stop", "values"))
        stop, values = it.get("stop"), it.get("values")
        if stop is not None and values is not None:
            self.fail(field, "'stop' and 'values' exclude each other")
        if values is not None:
            spec.values.extend(self.texts(f"{field}.values", values))
            if not spec.values:
                self.fail(f"{field}.values", "must not be empty")
            spec.start, spec.stop = 0, len(spec.values)
            if it.get("start") is not None:
                self.fail(f"{field}.start", "cannot be combined with 'values'")
            return
        if stop is None:
            self.fail(field, "give 'stop' (and optionally 'start') or 'values'")
        start = it.get("start")
        spec.start = self.integer(f"{field}.start", start, 0, _INT64) if start is not None else 0
        spec.stop = self.integer(f"{field}.stop", stop, 0, _INT64)
        if spec.stop <= spec.start:
            self.fail(field, f"stop {spec.stop} must be greater than start {spec.start}")


def job_label(index: int, obj: Any, prefix: str = "") -> str:
    name = obj.get("name") if isinstance(obj, dict) else None
    if isinstance(name, str) and name:
        return f"{prefix}job {show(name)} (#{index})"
    return f"{prefix}job #{index}"


# ----------------------------------------------------------------------------- native format


def _native_file(ctx: FileContext, data: dict[str, Any]) -> tuple[list[pj_pb2.JobSpec], list[str]]:
    top = FieldReader(ctx, "top level")
    top.check_dups(None, data)
    for key in data:
        if key != "jobs":
            hint = (
                "this looks like one QCG-PilotJob request; a QCG file is an array of requests: [ {...} ]"
                if "request" in data
                else suggest(key, ("jobs",)) or 'a PJ job file is {"jobs": [...]}'
            )
            raise JobFileError(f"{ctx.source}: unknown top-level field {key!r}; {hint}", field=key)
    if "jobs" not in data:
        raise JobFileError(
            f"{ctx.source}: missing 'jobs': a PJ job file is {{\"jobs\": [...]}}", field="jobs"
        )
    jobs = data["jobs"]
    if not isinstance(jobs, list):
        raise JobFileError(
            f"{ctx.source}: 'jobs' must be a list of job objects, got {kind_of(jobs)}", field="jobs"
        )
    if not jobs:
        raise JobFileError(f"{ctx.source}: 'jobs' is empty: nothing to run", field="jobs")
    specs, labels = [], []
    for index, obj in enumerate(jobs, 1):
        label = job_label(index, obj)
        specs.append(_native_job(FieldReader(ctx, label), obj))
        labels.append(label)
    return specs, labels


def _native_job(job: FieldReader, obj: Any) -> pj_pb2.JobSpec:
    spec = job.job_head(obj, NATIVE_FIELDS, _NATIVE_HINTS)
    fields = {k: v for k, v in obj.items() if v is not None}  # null: as if absent
    for key in ("exec", "script", "wd", "stdin", "stdout", "stderr", "venv"):
        if key in fields:
            value = job.string(key, fields[key])
            if not value:
                job.fail(key, "must not be empty (leave the field out instead)")
            setattr(spec, key, value)
    if "exec" in fields and "script" in fields:
        job.fail("script", "cannot be combined with 'exec'; give one of them")
    if "args" in fields:
        spec.args.extend(job.texts("args", fields["args"]))
    if "env" in fields:
        spec.env.update(job.env("env", fields["env"]))
    for key in ("cores", "nodes"):
        if key in fields:
            job.count(key, fields[key], getattr(spec, key))
    if "gpus" in fields:
        spec.gpus = job.integer("gpus", fields["gpus"])
    if "iterations" in fields:
        job.iterations("iterations", fields["iterations"], spec.iterations, allow_int=True)
    if "after" in fields:
        spec.after.extend(job.strings("after", fields["after"]))
    if "model" in fields:
        spec.model = job.string("model", fields["model"]).lower()
    if "modules" in fields:
        spec.modules.extend(job.strings("modules", fields["modules"]))
    if "walltime" in fields:
        spec.walltime_s = job.walltime("walltime", fields["walltime"])
    if "retries" in fields:
        spec.retries = job.integer("retries", fields["retries"])
    if "attributes" in fields:
        spec.attributes.update(job.attributes("attributes", fields["attributes"]))
    return spec


# ----------------------------------------------------------------------------- pj-submit -- CMD


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
    spec.gpus = min(gpus, _UINT32)
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
    spec.retries = min(retries, _UINT32)
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
        if n > _UINT32:
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


# ----------------------------------------------------------------------------- helpers


def _pairs_hook(dups: dict[int, tuple[str, object]]) -> Callable[[list[tuple[str, Any]]], dict[str, Any]]:
    """Build objects as json does, noting the first key given twice in each (by the object's id;
    the object is kept alive so that its id cannot be reused)."""

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        for key, value in pairs:
            if key in obj and id(obj) not in dups:
                dups[id(obj)] = (key, obj)
            obj[key] = value
        return obj

    return hook


def unicode_ok(text: str) -> bool:
    """False for strings that protobuf cannot carry (JSON lets a lone surrogate in as an escape)."""
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a number JSON allows")


def suggest(key: str, choices: Sequence[str]) -> str | None:
    close = difflib.get_close_matches(key, choices, n=1, cutoff=0.6)
    if not close:
        lowered = {c.lower(): c for c in choices}
        close = [lowered[key.lower()]] if key.lower() in lowered else []
    return f"did you mean {close[0]!r}?" if close else None


def kind_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"the string {show(value)}"
    if isinstance(value, int | float):
        return f"the number {show(value)}"
    if isinstance(value, list):
        return "a list"
    return "an object"


def show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
