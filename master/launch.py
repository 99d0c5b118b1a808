"""What an agent is told to run for one task: argv, environment, paths, cores.

Pure functions of the job spec, the iteration and the allocation: ``${it}`` and the other
variables are substituted per field (never in raw JSON), relative paths resolved, and the
task environment (PJ_* and the QCG_PM_* names users' scripts read) built here. How the
execution model starts the command (srun, mpirun) and the SLURM_* variables are in execmodels.py.

The hostfile (one node name per rank, which the agent turns into PJ_HOSTFILE) is sent in Slurm
mode for every task, and outside it only for the parallel models and multi-node jobs: a 1-core
local task, the hot path, costs no more than before.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from dataclasses import dataclass
from typing import NamedTuple

from pj.common.gpuenv import gpu_env

from . import execmodels
from .model import Allocation, JobSpec

# Before `module load`: QCG-PilotJob sources /etc/profile (where environment modules define
# `module`); here only when `module` is not defined yet, as /etc/profile may reset PATH.
MODULE_INIT = "command -v module >/dev/null 2>&1 || source /etc/profile; "

_VAR = re.compile(r"\$\{(it|itval|ncores|nnodes|nlist|root_wd|jname)\}")


class TaskLaunch(NamedTuple):
    """A NamedTuple: one is made per task placed (a frozen dataclass costs a call per field)."""

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
    spec: JobSpec, task_id: int, iteration: int | None, allocation: Allocation, ctx: Context, name: str = ""
) -> TaskLaunch:
    """``name``: the job's (``spec`` may be a template shared by jobs that differ only by name; "": spec's)."""
    # The hot path (one task per placement): the variables for ${...} are made only when a field
    # holds one, and a one-share allocation's strings are made once and reused.
    name = name or spec.name
    first = allocation[0]
    it = "" if iteration is None else str(iteration)
    tid = str(task_id)
    cores_s = ",".join(map(str, first.cores))
    if len(allocation) == 1:
        ncores = len(first.cores)
        nnodes = 1
        nlist = first.node
        nc = str(ncores)
        cores_per_node, tasks_per_node = cores_s, nc
    else:
        ncores = sum(len(s.cores) for s in allocation)
        nnodes = len(allocation)
        nlist = ",".join([s.node for s in allocation])
        nc = str(ncores)
        cores_per_node = ";".join([",".join(map(str, s.cores)) for s in allocation])
        tasks_per_node = ",".join([str(len(s.cores)) for s in allocation])
    nn = str(nnodes)
    variables: dict[str, str] | None = None

    def sub(text: str) -> str:
        nonlocal variables
        if "${" not in text:
            return text
        if variables is None:
            itval = "" if iteration is None or spec.iterations is None else spec.iterations.value(iteration)
            variables = {
                "it": it, "itval": itval, "ncores": nc, "nnodes": nn, "nlist": nlist,
                "root_wd": spec.base_dir, "jname": name,
            }
        return _subst(text, variables)

    base = spec.base_dir
    wd = _path(base, sub(spec.wd)) if spec.wd else base

    if spec.script:
        body = sub(spec.script)
        cmd: list[str] = []
    else:
        exe = sub(spec.exec)
        if "/" in exe:
            exe = _path(base, exe)
        cmd = [exe, *[sub(a) for a in spec.args]] if spec.args else [exe]
    # QCG-PilotJob's rule, for exec and script jobs alike: `module load`, then the venv's
    # activation, then the command, each a step of its own: a step that fails (no such module, no
    # `module` command, no venv) is reported on stderr and the command runs anyway; its exit code
    # decides. A parallel model's launcher (srun, mpirun) runs after the prefix: a module may be
    # what provides mpirun, and the ranks inherit the environment the prefix made.
    prefix = []
    if spec.modules:
        prefix.append(MODULE_INIT + "module load " + " ".join(shlex.quote(m) for m in spec.modules))
    if spec.venv:
        prefix.append(f"source {shlex.quote(_path(base, sub(spec.venv)))}/bin/activate")
    launcher = execmodels.launcher(spec, allocation, ctx.slurm) if spec.model in execmodels.PARALLEL else ()
    if spec.script and not launcher:
        argv: tuple[str, ...] = ("bash", "-c", "\n".join([*prefix, body]) if prefix else body)
    else:
        inner = (*launcher, "bash", "-c", body) if spec.script else (*launcher, *cmd)
        argv = ("bash", "-c", "\n".join([*prefix, 'exec "$@"']), name, *inner) if prefix else inner

    env = {
        "PJ_JOB": name,
        "PJ_ITERATION": it,
        "PJ_TASK_ID": tid,
        "PJ_NODES": nlist,
        "PJ_NNODES": nn,
        "PJ_NCORES": nc,
        "PJ_CORES": cores_per_node,
        **gpu_env(first.gpus),  # CUDA_, ROCR_, HIP_VISIBLE_DEVICES, ZE_AFFINITY_MASK (common/gpuenv.py)
        "PJ_MASTER": ctx.master,
        "PJ_WORKDIR": ctx.workdir,
        "QCG_PM_NNODES": nn,
        "QCG_PM_NODELIST": nlist,
        "QCG_PM_NPROCS": nc,
        "QCG_PM_NTASKS": nc,
        "QCG_PM_STEP_ID": tid,
        "QCG_PM_TASKS_PER_NODE": tasks_per_node,
        "QCG_PM_CPU_SET": cores_s,
    }
    if spec.model == "threads":
        env["OMP_NUM_THREADS"] = str(len(first.cores))
    hostfile, slurm_hostfile = "", False
    if ctx.slurm:
        if spec.model in execmodels.SLURM_SHARE:
            env.update(execmodels.slurm_env(allocation))
        else:
            env["SLURM_OVERLAP"] = "1"
        hostfile, slurm_hostfile = execmodels.hostfile(allocation), spec.model in execmodels.SLURM_HOSTFILE
    elif len(allocation) > 1 or spec.model in execmodels.PARALLEL:
        hostfile = execmodels.hostfile(allocation)
    for k, val in spec.env:
        env[k] = sub(val)
    return TaskLaunch(  # positional (the fields' order): the cheapest call
        task_id,
        first.node,
        argv,
        env,
        wd,
        _path(wd, sub(spec.stdin)) if spec.stdin else "",
        _path(wd, sub(spec.stdout)) if spec.stdout else "",
        _path(wd, sub(spec.stderr)) if spec.stderr else "",
        first.cores,
        first.gpus,
        spec.walltime_s,
        hostfile,
        slurm_hostfile,
    )
