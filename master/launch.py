"""What an agent is told to run for one task: argv, environment, paths, cores.

Pure functions of the job spec, the iteration and the allocation: ``${it}`` and the other
variables are substituted per field (never in raw JSON), relative paths resolved, and the
task environment (PJ_* and the QCG_PM_* names users' scripts read) built here. How the
execution model starts the command (srun, mpirun) and the SLURM_* variables are in models.py.

The hostfile (one node name per rank, which the agent turns into PJ_HOSTFILE) is sent in Slurm
mode for every task, and outside it only for the parallel models and multi-node jobs: a 1-core
local task, the hot path, costs no more than before.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from dataclasses import dataclass

from . import models
from .model import Allocation, JobSpec

_VAR = re.compile(r"\$\{(it|itval|ncores|nnodes|nlist|root_wd|jname)\}")


@dataclass(frozen=True, slots=True)
class TaskLaunch:
    task_id: int
    node: str  # where the process starts (the first node of the allocation)
    argv: tuple[str, ...]
    env: dict[str, str]
    wd: str
    stdin: str
    stdout: str
    stderr: str
    cores: tuple[int, ...]
    gpus: tuple[str, ...]
    walltime_s: float
    hostfile: str = ""  # one node name per rank, "\n"-terminated; empty: none
    slurm_hostfile: bool = False  # the agent also gives it to the task as SLURM_HOSTFILE


@dataclass(frozen=True, slots=True)
class Context:
    """Facts of the run a task is told about."""

    master: str = ""
    workdir: str = ""
    slurm: bool = False  # inside a Slurm allocation: srun and the SLURM_* variables are real


def _subst(text: str, variables: dict[str, str]) -> str:
    if "${" not in text:
        return text
    return _VAR.sub(lambda m: variables[m.group(1)], text)


def _path(base: str, p: str) -> str:
    return p if not p or p.startswith("/") else posixpath.normpath(posixpath.join(base, p))


def build(
    spec: JobSpec, task_id: int, iteration: int | None, allocation: Allocation, ctx: Context
) -> TaskLaunch:
    first = allocation[0]
    ncores = sum(len(s.cores) for s in allocation)
    nodes = [s.node for s in allocation]
    nlist = ",".join(nodes)
    it = "" if iteration is None else str(iteration)
    itval = "" if iteration is None or spec.iterations is None else spec.iterations.value(iteration)
    v = {
        "it": it,
        "itval": itval,
        "ncores": str(ncores),
        "nnodes": str(len(nodes)),
        "nlist": nlist,
        "root_wd": spec.base_dir,
        "jname": spec.name,
    }
    wd = _path(spec.base_dir, _subst(spec.wd, v)) if spec.wd else spec.base_dir

    if spec.script:
        body = _subst(spec.script, v)
        cmd: list[str] = []
    else:
        exe = _subst(spec.exec, v)
        if "/" in exe:
            exe = _path(spec.base_dir, exe)
        cmd = [exe, *(_subst(a, v) for a in spec.args)]
    prefix = []
    if spec.venv:
        prefix.append(f"source {shlex.quote(_path(spec.base_dir, _subst(spec.venv, v)))}/bin/activate")
    if spec.modules:
        prefix.append("module load " + " ".join(shlex.quote(m) for m in spec.modules))
    # A parallel model's launcher (srun, mpirun) goes inside the venv/modules prefix: a module
    # may be what provides mpirun, and the ranks inherit the environment the prefix made.
    launcher = models.launcher(spec.model, allocation, ctx.slurm)
    if spec.script and not launcher:
        argv: tuple[str, ...] = ("bash", "-c", "\n".join([*prefix, body]) if prefix else body)
    else:
        inner = (*launcher, "bash", "-c", body) if spec.script else (*launcher, *cmd)
        argv = ("bash", "-c", " && ".join(prefix) + ' && exec "$@"', spec.name, *inner) if prefix else inner

    cores_per_node = ";".join(",".join(map(str, s.cores)) for s in allocation)
    tasks_per_node = ",".join(str(len(s.cores)) for s in allocation)
    env = {
        "PJ_JOB": spec.name,
        "PJ_ITERATION": it,
        "PJ_TASK_ID": str(task_id),
        "PJ_NODES": nlist,
        "PJ_NNODES": str(len(nodes)),
        "PJ_NCORES": str(ncores),
        "PJ_CORES": cores_per_node,
        "CUDA_VISIBLE_DEVICES": ",".join(first.gpus),
        "PJ_MASTER": ctx.master,
        "PJ_WORKDIR": ctx.workdir,
        "QCG_PM_NNODES": str(len(nodes)),
        "QCG_PM_NODELIST": nlist,
        "QCG_PM_NPROCS": str(ncores),
        "QCG_PM_NTASKS": str(ncores),
        "QCG_PM_STEP_ID": str(task_id),
        "QCG_PM_TASKS_PER_NODE": tasks_per_node,
        "QCG_PM_CPU_SET": ",".join(map(str, first.cores)),
    }
    if spec.model == "threads":
        env["OMP_NUM_THREADS"] = str(len(first.cores))
    hostfile, slurm_hostfile = "", False
    if ctx.slurm:
        if spec.model in models.SLURM_SHARE:
            env.update(models.slurm_env(allocation))
        else:
            env["SLURM_OVERLAP"] = "1"
        hostfile, slurm_hostfile = models.hostfile(allocation), spec.model in models.SLURM_HOSTFILE
    elif len(allocation) > 1 or spec.model in models.PARALLEL:
        hostfile = models.hostfile(allocation)
    for k, val in spec.env:
        env[k] = _subst(val, v)
    return TaskLaunch(
        task_id=task_id,
        node=first.node,
        argv=argv,
        env=env,
        wd=wd,
        stdin=_path(wd, _subst(spec.stdin, v)),
        stdout=_path(wd, _subst(spec.stdout, v)),
        stderr=_path(wd, _subst(spec.stderr, v)),
        cores=first.cores,
        gpus=first.gpus,
        walltime_s=spec.walltime_s,
        hostfile=hostfile,
        slurm_hostfile=slurm_hostfile,
    )
