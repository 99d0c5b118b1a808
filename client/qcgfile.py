"""QCG-PilotJob batch files: a JSON array of requests, read unchanged into ``pj.v1.JobSpec``.

What each request becomes:

- ``submit``: its jobs. A QCG job is ``{"name", "execution": {exec, args, env, script, stdin,
  stdout, stderr, wd, model, model_opts, modules, venv}, "resources": {numCores, numNodes, wt,
  nodeCrs}, "dependencies": {"after": [...]}, "iteration": {start, stop | values}, "attributes"}``.
  ``numCores``/``numNodes`` are an integer or ``{exact | min, max}``; a ``min`` alone means "at least
  min" (``max = 0`` on the wire); ``nodeCrs.gpu`` becomes ``gpus`` (per node); ``nodeCrs.mem`` is
  ignored with a warning; model ``srunmpi`` becomes ``srun``; no ``resources`` means one core.
  ``numNodes`` without ``numCores`` (QCG: whole nodes) becomes "1 core or more per node", with a
  warning.
- A range's iteration ``scheduler`` (``{"name": "split-into" | "maximum-iters", "params": {"parts":
  N}}``) goes into ``Range.scheduler``: the master sizes every iteration from the run's resources
  (``master/itersize.py``). As in QCG it needs ``iteration`` (else it is ignored, with a warning)
  and no ``max``; unlike QCG an unknown name or param is refused, not taken for maximum-iters, and
  on ``numCores`` it needs a one-node job.
- ``model_opts``: ``mpirun`` becomes ``JobSpec.mpirun`` and ``mpirun_args`` ``JobSpec.model_args``
  for openmpi and intelmpi, ``srun_args`` ``model_args`` for srunmpi (PJ's srun), as QCG uses them;
  a key the job's model does not use is ignored with a warning (QCG ignores it), an unknown key is
  refused.
- ``control`` ``finishAfterAllTasksDone`` and ``finish``: ``finish_after_done``.
- ``jobStatus``, ``jobInfo``, ``listJobs``, ``resourcesInfo``, ``status``, ``notify``, ``register``,
  ``cancelJob``, ``removeJob``: ignored, with a warning naming each.

Paths: ``pj run FILE --workdir DIR`` resolves a QCG file's relative ``exec``, ``wd`` and ``venv``
against DIR, and a job without ``wd`` runs in DIR, as QCG-PilotJob does under its ``--wd``
(``client/run.py``; without ``--workdir``, and for native files, the directory ``pj run`` started
in). Relative stdio paths are relative to the job's wd, as in QCG-PilotJob.

QCG's submit-time variables (``${rcnt}``, ``${uniq}``, ``${sname}``, ``${date}``, ``${time}``,
``${dateTime}``) are substituted here, in each string field, as QCG-PilotJob does when it accepts a
request; ``${it}``, ``${itval}``, ``${jname}`` and the others are left to the master. The rules
follow QCG-PilotJob 0.14 (``exec`` xor ``script``; ``script`` excludes ``args`` and ``env``; names
without ``:``); PJ's own checks (:mod:`pj.common.speccheck`) then apply as to any job.
"""

from __future__ import annotations

import datetime
import re
import uuid
from collections.abc import Mapping
from typing import Any

from pj.client.jobfields import FieldReader, FileContext, JobFileError, job_label, kind_of, show, suggest
from pj.common.speccheck import COUNT_MAX, ITER_SCHEDULERS
from pj.v1 import pj_pb2

__all__ = ["QCG_FIELD_NAMES", "read_qcg"]

QCG_JOB_FIELDS = ("name", "execution", "resources", "iteration", "dependencies", "attributes")
QCG_EXECUTION_FIELDS = (
    "exec", "args", "env", "script", "stdin", "stdout", "stderr", "modules", "venv", "wd", "model",
    "model_opts",
)  # fmt: skip
QCG_RESOURCES_FIELDS = ("numCores", "numNodes", "wt", "nodeCrs")
QCG_MODEL_OPTS = ("mpirun", "mpirun_args", "srun_args")
QCG_MODEL_OPTS_USED = {"openmpi": ("mpirun", "mpirun_args"), "intelmpi": ("mpirun", "mpirun_args"), "srun": ("srun_args",)}
QCG_IGNORED_REQUESTS = {
    "jobStatus", "jobInfo", "listJobs", "resourcesInfo", "status", "notify", "register", "cancelJob",
    "removeJob",
}  # fmt: skip
QCG_REQUESTS = ("submit", "control", "finish", *sorted(QCG_IGNORED_REQUESTS))

QCG_FIELD_NAMES = {  # JobSpec field -> its place in a QCG job, for messages
    "cores": "resources.numCores", "nodes": "resources.numNodes", "gpus": "resources.nodeCrs.gpu",
    "walltime_s": "resources.wt", "iterations": "iteration", "after": "dependencies.after",
    "attributes": "attributes", "name": "name", "mpirun": "execution.model_opts.mpirun",
    "model_args": "execution.model_opts",
}  # fmt: skip


def read_qcg(ctx: FileContext, data: list[Any]) -> tuple[list[pj_pb2.JobSpec], list[str], bool]:
    specs: list[pj_pb2.JobSpec] = []
    labels: list[str] = []
    finish = False
    submits = 0
    for r, req in enumerate(data, 1):
        where = f"{ctx.source}: request #{r}"
        if not isinstance(req, dict):
            raise JobFileError(
                f'{where}: expected an object like {{"request": "submit", "jobs": [...]}}, got {kind_of(req)}'
            )
        FieldReader(ctx, f"request #{r}").check_dups(None, req)
        kind = req.get("request")
        if kind is None:
            hint = (
                '; this looks like a job: QCG-PilotJob jobs go in {"request": "submit", "jobs": [...]}, '
                'PJ\'s own format is {"jobs": [...]}'
                if "name" in req
                else ""
            )
            raise JobFileError(f"{where}: missing 'request'{hint}", field="request")
        if kind == "submit":
            submits += 1
            for key in req:
                if key not in ("request", "jobs"):
                    ctx.warn(f"request #{r}: key {key!r} ignored (QCG-PilotJob ignores it too)")
            jobs = req.get("jobs")
            if not isinstance(jobs, list) or not jobs:
                raise JobFileError(f"{where}: a submit request needs a non-empty 'jobs' list", field="jobs")
            variables = _submit_vars(submits)
            for j, obj in enumerate(jobs, 1):
                _substitute(obj, variables)
                label = job_label(j, obj, f"request #{r}, ")
                specs.append(_qcg_job(FieldReader(ctx, label), obj))
                labels.append(label)
        elif kind == "control":
            command = req.get("command")
            if command != "finishAfterAllTasksDone":
                raise JobFileError(
                    f"{where}: unknown control command {show(command)}; QCG-PilotJob knows 'finishAfterAllTasksDone'",
                    field="command",
                )
            finish = True
        elif kind == "finish":
            finish = True
            ctx.warn(
                f"request #{r} 'finish': PJ finishes once every job is done (QCG-PilotJob stopped after 2 s)"
            )
        elif isinstance(kind, str) and kind in QCG_IGNORED_REQUESTS:
            ctx.warn(
                f"request #{r} {kind!r} ignored: ask a running PJ with 'pj status', 'pj info', 'pj cancel'"
            )
        else:
            hint = (suggest(kind, QCG_REQUESTS) if isinstance(kind, str) else None) or (
                "known: " + ", ".join(QCG_REQUESTS)
            )
            raise JobFileError(
                f"{where}: unknown request {show(kind)}; {hint}",
                field="request",
            )
    if not specs:
        raise JobFileError(f"{ctx.source}: no submit request: nothing to run")
    return specs, labels, finish


def _qcg_job(job: FieldReader, obj: Any) -> pj_pb2.JobSpec:
    spec = job.job_head(obj, QCG_JOB_FIELDS, {"exec": "put it in 'execution'", "args": "put it in 'execution'"})
    if obj.get("execution") is None:
        raise JobFileError(f"{job.ctx.source}: {job.label}: missing field 'execution'", field="execution")
    _qcg_execution(job.sub("execution."), job.obj("execution", obj["execution"]), spec)
    if obj.get("resources") is not None:
        _qcg_resources(job.sub("resources."), job.obj("resources", obj["resources"]), spec)
    if obj.get("iteration") is not None:
        job.iterations("iteration", obj["iteration"], spec.iterations, allow_int=False)
    elif any(r.HasField("scheduler") for r in (spec.cores, spec.nodes)):
        for r in (spec.cores, spec.nodes):
            if r.HasField("scheduler"):
                r.ClearField("scheduler")
        job.ctx.warn_job("the resources' 'scheduler' is ignored: the job has no 'iteration' (as in QCG-PilotJob)", job.label)
    if obj.get("dependencies") is not None:
        deps = job.obj("dependencies", obj["dependencies"])
        job.sub("dependencies.").known(deps, ("after",))
        if deps.get("after") is not None:
            spec.after.extend(job.sub("dependencies.").strings("after", deps["after"]))
    if obj.get("attributes") is not None:
        spec.attributes.update(job.attributes("attributes", obj["attributes"]))
    return spec


def _qcg_execution(ex: FieldReader, obj: dict[str, Any], spec: pj_pb2.JobSpec) -> None:
    ex.known(obj, QCG_EXECUTION_FIELDS)
    fields = {k: v for k, v in obj.items() if v is not None}
    for key in ("exec", "script", "wd", "stdin", "stdout", "stderr", "venv"):
        if key in fields:
            setattr(spec, key, ex.string(key, fields[key]))
    if "args" in fields:
        spec.args.extend(ex.texts("args", fields["args"], bools=True))
    if "env" in fields:
        spec.env.update(ex.env("env", fields["env"]))
    if not spec.exec and not spec.script:
        ex.fail("exec", "give 'exec' (a program) or 'script' (a shell script)")
    if spec.script and (spec.exec or spec.args or spec.env):
        ex.fail("script", "cannot be combined with exec, args or env (QCG-PilotJob refuses this too)")
    if "modules" in fields:
        spec.modules.extend(ex.strings("modules", fields["modules"]))
    if "model" in fields:
        model = ex.string("model", fields["model"]).lower()
        spec.model = "srun" if model == "srunmpi" else model
    if "model_opts" in fields:
        _model_opts(ex, ex.obj("model_opts", fields["model_opts"]), spec)


def _model_opts(ex: FieldReader, opts: dict[str, Any], spec: pj_pb2.JobSpec) -> None:
    """QCG's ``model_opts``: ``mpirun`` (the mpirun to call) and ``mpirun_args`` (more of its options,
    before the command) for openmpi and intelmpi, ``srun_args`` for srunmpi (PJ's srun)."""
    ex.sub("execution.model_opts.").known(opts, QCG_MODEL_OPTS)
    model = spec.model or "default"
    for key, value in opts.items():
        if value is None:
            continue
        if key not in QCG_MODEL_OPTS_USED.get(model, ()):
            ex.ctx.warn_job(
                f"'execution.model_opts.{key}' is ignored with model {model!r} (QCG-PilotJob ignores it too)",
                ex.label,
            )
        elif key == "mpirun":
            spec.mpirun = ex.string("model_opts.mpirun", value)
            if not spec.mpirun:
                ex.fail("model_opts.mpirun", "must not be empty (leave it out for the mpirun on PATH)")
        else:
            spec.model_args.extend(ex.texts(f"model_opts.{key}", value, bools=True))


def _qcg_resources(res: FieldReader, obj: dict[str, Any], spec: pj_pb2.JobSpec) -> None:
    res.known(
        obj, QCG_RESOURCES_FIELDS, {"cores": "did you mean 'numCores'?", "nodes": "did you mean 'numNodes'?"}
    )
    ignored: list[str] = []  # the ranges with an iteration scheduler
    if obj.get("numCores") is not None and res.count("numCores", obj["numCores"], spec.cores, qcg=True):
        ignored.append("numCores")
    if obj.get("numNodes") is not None:
        if res.count("numNodes", obj["numNodes"], spec.nodes, qcg=True):
            ignored.append("numNodes")
        if not spec.HasField("cores"):
            spec.cores.min, spec.cores.max = 1, 0
            res.ctx.warn_job(
                "'numNodes' without 'numCores' asks QCG-PilotJob for whole nodes; PJ gives each node "
                "as many of its cores as are free (at least 1)",
                res.label,
            )
    for key, rng in (("numCores", spec.cores), ("numNodes", spec.nodes)):
        if key in ignored:
            _scheduler(res.sub(f"resources.{key}."), obj[key]["scheduler"], rng.scheduler)
    if obj.get("wt") is not None:
        spec.walltime_s = res.walltime("wt", obj["wt"])
    if obj.get("nodeCrs") is not None:
        seen: set[str] = set()
        for key, count in res.obj("nodeCrs", obj["nodeCrs"]).items():
            kind = key.lower()
            if kind not in ("gpu", "mem"):
                res.fail(f"nodeCrs.{key}", "unknown consumable resource; QCG-PilotJob knows 'gpu' and 'mem'")
            if kind in seen:
                res.fail(f"nodeCrs.{key}", "given twice")
            seen.add(kind)
            n = res.integer(f"nodeCrs.{key}", count, 1)
            if kind == "gpu":
                spec.gpus = n
            else:
                res.ctx.warn_job(
                    "'resources.nodeCrs.mem' is ignored (PJ's own job format has 'memory', e.g. \"4G\")", res.label
                )


def _scheduler(res: FieldReader, value: Any, out: pj_pb2.IterScheduler) -> None:
    """``{"name": "split-into" | "maximum-iters", "params": {"parts": N}}``: the master sizes each iteration."""
    sched = res.obj("scheduler", value)
    res.sub(res.prefix + "scheduler.").known(sched, ("name", "params"))
    if sched.get("name") is None:
        res.fail("scheduler", "give its 'name': 'split-into' or 'maximum-iters'")
    name = res.string("scheduler.name", sched["name"]).lower()
    if name not in ITER_SCHEDULERS:
        hint = suggest(name, ITER_SCHEDULERS) or "use 'split-into' or 'maximum-iters'"
        res.fail("scheduler.name", f"unknown iteration scheduler {show(name)}; {hint}")
    out.name = name
    if sched.get("params") is not None:
        params = res.obj("scheduler.params", sched["params"])
        res.sub(res.prefix + "scheduler.params.").known(params, ("parts",) if name == "split-into" else ())
        if params.get("parts") is not None:
            out.parts = res.integer("scheduler.params.parts", params["parts"], 1, COUNT_MAX)


def _submit_vars(rcnt: int) -> dict[str, str]:
    """QCG-PilotJob's per-request variables, substituted when a submit request is accepted."""
    now = datetime.datetime.now()
    return {
        "rcnt": str(rcnt),
        "uniq": str(uuid.uuid4()),
        "sname": "local",
        "date": str(now),
        "time": str(now.time()),
        "dateTime": str(now),
    }


_VAR = re.compile(r"\$(?:\$|\{([_a-z][_a-z0-9]*)\}|([_a-z][_a-z0-9]*))", re.ASCII | re.IGNORECASE)


def _substitute(value: Any, variables: Mapping[str, str]) -> Any:
    """Replace Paths: ``pj run FILE --workdir DIR`` resolves a QCG file's relative ``exec``, ``wd`` and ``venv``
against DIR, and a job without ``wd`` runs in DIR, as QCG-PilotJob does under its ``--wd``
(``client/run.py``; without ``--workdir``, and for native files, the directory ``pj run`` started
in). Relative stdio paths are relative to the job's wd, as in QCG-PilotJob.

QCG's submit-time variables in every string of ``value``, in place (never in raw
    JSON text); containers keep their identity. Other variables (``${it}``, a shell's ``$HOME``)
    and ``$$`` are left as they are. Iterative: the JSON may be deeply nested."""
    todo: list[Any] = [value]
    while todo:
        item = todo.pop()
        keys = range(len(item)) if isinstance(item, list) else list(item) if isinstance(item, dict) else ()
        for k in keys:
            v = item[k]
            if isinstance(v, str):
                if "$" in v:
                    item[k] = _VAR.sub(lambda m: variables.get(m[1] or m[2] or "", m[0]), v)
            elif isinstance(v, list | dict):
                todo.append(v)
    return value
