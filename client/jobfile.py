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
:mod:`pj.client.qcgfile`; both read fields with :mod:`pj.client.jobfields`' :class:`FieldReader`
(which neither format's module imports back); ``pj-submit -- CMD`` is :mod:`pj.client.cmdjob`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, NoReturn

from pj.common.specbatch import SpecBatch
from pj.common.speccheck import SpecError, check_specs
from pj.v1 import pj_pb2

from .cmdjob import command_job
from .jobfields import FieldReader, FileContext, JobFileError, job_label, kind_of, suggest, unicode_ok
from .qcgfile import QCG_FIELD_NAMES, read_qcg

__all__ = ["JobFile", "JobFileError", "command_job", "load_jobfile", "parse_jobfile", "parse_objects"]

NATIVE_FIELDS = (
    "name", "exec", "script", "args", "env", "wd", "stdin", "stdout", "stderr", "cores", "nodes",
    "gpus", "memory", "iterations", "after", "model", "modules", "venv", "walltime", "retries", "attributes",
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
_NATIVE_NAMES = {"walltime_s": "walltime", "memory_request_bytes": "memory"}


@dataclass(frozen=True)
class JobFile:
    """What a job file asks for. ``warnings`` are one-line messages to show the user. ``batch``:
    the jobs as read, those alike but for their names sharing one spec (what a Submit sends)."""

    batch: SpecBatch
    kind: Literal["native", "qcg"]
    finish_after_done: bool
    warnings: list[str]

    @cached_property
    def jobs(self) -> list[pj_pb2.JobSpec]:
        """Every job's spec, a message of its own."""
        return self.batch.expand()


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
    return _read(FileContext(source, dups, strict=not isinstance(data, list)), data, allow_external, plain=True)


def parse_objects(data: Any, source: str, *, allow_external: bool = False) -> JobFile:
    """``parse_jobfile`` for a document given as Python values (what ``json.loads`` would give):
    anything JSON cannot hold is refused, as if written to a file and read back. A native list's
    jobs are taken one by one (a job alike an earlier one but for its name is only named), the
    rest goes through JSON whole."""
    if not (isinstance(data, dict) and isinstance(data.get("jobs"), list) and len(data) == 1):
        try:
            text = json.dumps(data)
        except (TypeError, ValueError) as e:
            raise JobFileError(f"{source}: a job cannot be written as JSON: {e}") from None
        return parse_jobfile(text, source, allow_external=allow_external)
    return _read(FileContext(source, {}, strict=True), data, allow_external, plain=False)


def _read(ctx: FileContext, data: Any, allow_external: bool, plain: bool) -> JobFile:
    """The jobs of a decoded document (``plain``: as JSON gave them; else Python values, each job
    made plain by ``_native_file`` as it reads it)."""
    source = ctx.source
    dups = ctx.dups
    if isinstance(data, dict):
        kind: Literal["native", "qcg"] = "native"
        batch, label = _native_file(ctx, data, plain)
        finish = False
    elif isinstance(data, list):
        kind = "qcg"
        specs, labels, finish = read_qcg(ctx, data)
        batch, label = SpecBatch.of(specs), labels.__getitem__
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
        check_specs(batch.specs, allow_external=allow_external, renamed=batch.renamed, names=batch.names)
    except SpecError as exc:
        names = _NATIVE_NAMES if kind == "native" else QCG_FIELD_NAMES
        field = names.get(exc.field, exc.field if kind == "native" else f"execution.{exc.field}")
        where = label(exc.index) if exc.index is not None else exc.label
        raise JobFileError(
            f"{source}: {where}: field {field!r}: {exc.reason}", job=exc.job, field=field
        ) from None
    return JobFile(batch=batch, kind=kind, finish_after_done=finish, warnings=ctx.finish_warnings())


# ----------------------------------------------------------------------------- shared readers


# ----------------------------------------------------------------------------- native format


def _native_file(ctx: FileContext, data: dict[str, Any], plain: bool = True) -> tuple[SpecBatch, Callable[[int], str]]:
    """The jobs, and the label of job i (0-based) for messages. ``plain``: the jobs are what JSON
    gave; else each is written as JSON and read back before it is read (``_plain``)."""
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

    def label(i: int) -> str:
        return job_label(i + 1, jobs[i])

    batch = SpecBatch()
    add_copy = batch.add_copy
    dups = ctx.dups
    # Campaigns are mostly jobs alike but for their names: a job whose other fields are the same
    # simple values as an earlier one's (which gave no warning) is that job renamed: only its name
    # and its keys are checked, here and by check_specs, and it shares that job's spec. Its
    # simple values are as JSON would give them, so it needs no round trip either.
    alike: dict[tuple[Any, ...], int] = {}
    for i, obj in enumerate(jobs):
        shape = _alike_key(obj)
        first = alike.get(shape, -1) if shape is not None else -1
        if first >= 0 and unicode_ok(obj["name"]) and not (dups and _has_dups(obj, dups)):
            add_copy(first, obj["name"])
            continue
        job = FieldReader(ctx, label(i))  # not a copy, or one that is refused: read in full
        warned = ctx.warned
        batch.add(_native_job(job, obj if plain else _plain(job, obj)))
        if shape is not None and ctx.warned == warned and first < 0:
            alike[shape] = i
    return batch, label


def _plain(job: FieldReader, obj: Any) -> Any:
    """A job given as Python values, as JSON holds it (written and read back): what JSON cannot
    hold is refused, naming the job."""
    try:
        text = json.dumps(obj)
    except (TypeError, ValueError) as e:
        raise JobFileError(f"{job.ctx.source}: {job.label}: cannot be written as JSON: {e}") from None
    try:
        return json.loads(text, parse_constant=_no_constant)
    except ValueError as e:
        raise JobFileError(f"{job.ctx.source}: {job.label}: {e}") from None


_SIMPLE = (str, int, float, bool)


def _alike_key(obj: Any) -> tuple[Any, ...] | None:
    """What a job is but for its name, when that is only simple values (None: not simple, or no
    name): strings, numbers, booleans, lists (or tuples) of strings and objects of strings (``env``,
    ``attributes``); types in the key: 1, 1.0 and true are different to the reader. Two jobs with
    equal keys read the same once written as JSON and read back."""
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return None
    key: list[Any] = []
    for k, v in obj.items():
        if k == "name":
            continue
        t = type(v)
        if t in _SIMPLE or v is None:
            key.append((k, t, v))
        elif (t is list or t is tuple) and all(type(x) is str for x in v):
            key.append((k, list, tuple(v)))
        elif t is dict and all(type(x) is str and type(y) is str for x, y in v.items()):
            key.append((k, dict, tuple(v.items())))
        else:
            return None
    return tuple(key)


def _has_dups(obj: dict[str, Any], dups: dict[int, tuple[str, object]]) -> bool:
    """Whether the text gave a key twice in ``obj`` or in an object inside it."""
    return id(obj) in dups or any(id(v) in dups for v in obj.values() if type(v) is dict)


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
    if "memory" in fields:
        spec.memory_request_bytes = job.memory("memory", fields["memory"])
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


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a number JSON allows")
