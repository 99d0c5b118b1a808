"""What a Slurm step tells the agent, read from a plain mapping (pure: no I/O, no os.environ).

In Slurm mode ONE ``srun --overlap --ntasks-per-node=1 ... pj-agent`` starts an agent per node, so
the agent's environment describes two things: the allocation (job id, node list, CPUs per node),
which tasks should see, and the agent's own step (one task per node), which would mislead an
``srun`` or ``mpirun`` a task calls. This module reads the first and scrubs the second.

Never bind to Slurm's CPU ids: they can differ from the kernel's. Slurm says how MANY CPUs this
node grants; which ones the agent may use is its own affinity (resources.py maps one onto the other).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from pj.common.hostlist import HostlistError, expand_counts

# A step task sees all of these; a batch script or an salloc shell sees none of SLURM_STEP_ID.
STEP_MARKERS = ("SLURM_JOB_ID", "SLURM_STEP_ID")

# Variables that describe the agent's own step (srun --ntasks-per-node=1 over every node), not the
# allocation. Checked against `srun --overlap -N2 --ntasks-per-node=1 env` on Slurm 22.05.
STEP_VARIABLES = frozenset(
    {
        "SLURM_STEP_ID",
        "SLURM_STEPID",
        "SLURM_STEP_NODELIST",
        "SLURM_STEP_NUM_NODES",
        "SLURM_STEP_NUM_TASKS",
        "SLURM_STEP_TASKS_PER_NODE",
        "SLURM_STEP_LAUNCHER_PORT",
        "SLURM_STEP_GPUS",
        "SLURM_STEP_RESV_PORTS",
        "SLURM_PROCID",
        "SLURM_LOCALID",
        "SLURM_NODEID",
        "SLURM_GTIDS",
        "SLURM_TASK_PID",
        "SLURM_NTASKS_PER_NODE",
        "SLURM_DISTRIBUTION",
        "SLURM_SRUN_COMM_HOST",
        "SLURM_SRUN_COMM_PORT",
        "SLURM_LAUNCH_NODE_IPADDR",
        "SLURM_PRIO_PROCESS",
        "SLURM_CPUS_PER_TASK",
        "SLURM_NTASKS",
        "SLURM_NPROCS",
        "SLURM_UMASK",
        "SLURM_JOB_CPUS_PER_NODE_PACK_GROUP_0",
        "SLURM_PMIX_MAPPING_SERV",
    }
)
# Whole families: CPU binding of the agent's task, and the process-management interface of the
# agent's step (an MPI program would take itself for rank N of the agents). PMIX_MCA_* is user
# configuration and stays.
STEP_PREFIXES = ("SLURM_CPU_BIND", "PMI_", "PMIX_")
KEEP_PREFIXES = ("PMIX_MCA_",)


class SlurmEnvError(ValueError):
    """A Slurm variable the agent cannot read (the message names it and the way around it)."""


@dataclass(frozen=True)
class Share:
    """What Slurm grants this agent's node."""

    node: str  # $SLURMD_NODENAME ("" when not set)
    cpus: int | None  # CPUs granted on this node; None: Slurm does not say


def in_step(env: Mapping[str, str]) -> bool:
    """True inside a Slurm step (srun), where SLURM_JOB_ID and SLURM_STEP_ID are both set."""
    return all(env.get(v) for v in STEP_MARKERS)


def share(env: Mapping[str, str]) -> Share:
    """CPUs granted on this node: $SLURM_CPUS_ON_NODE, else this node's entry (by $SLURM_NODEID)
    of $SLURM_JOB_CPUS_PER_NODE. Raises SlurmEnvError for a value that does not parse."""
    node = env.get("SLURMD_NODENAME", "")
    text = env.get("SLURM_CPUS_ON_NODE", "").strip()
    if text:
        return Share(node, _count("SLURM_CPUS_ON_NODE", text))
    per_node = env.get("SLURM_JOB_CPUS_PER_NODE", "").strip()
    if not per_node:
        return Share(node, None)
    try:
        counts = expand_counts(per_node)
    except HostlistError as e:
        raise SlurmEnvError(f"SLURM_JOB_CPUS_PER_NODE: {e}; give --cores N") from None
    index_text = env.get("SLURM_NODEID", "").strip()
    if not index_text:
        if len(set(counts)) == 1:  # every node alike: no need to know which one this is
            return Share(node, counts[0])
        raise SlurmEnvError(
            f"SLURM_JOB_CPUS_PER_NODE={per_node} differs between nodes and SLURM_NODEID is not set; "
            "give --cores N"
        )
    index = _count("SLURM_NODEID", index_text, minimum=0)
    if index >= len(counts):
        raise SlurmEnvError(
            f"SLURM_NODEID={index} but SLURM_JOB_CPUS_PER_NODE={per_node} lists {len(counts)} nodes; "
            "give --cores N"
        )
    return Share(node, _check_positive("SLURM_JOB_CPUS_PER_NODE", counts[index]))


def gpus_text(env: Mapping[str, str]) -> str | None:
    """The GPU list this node's agent may use, spelled as the runtimes in this environment number the
    GPUs: $CUDA_VISIBLE_DEVICES (NVIDIA; Slurm sets it for every vendor), else $ROCR_VISIBLE_DEVICES
    (AMD; narrowed further by $HIP_VISIBLE_DEVICES's positions in it when both are set, as HIP
    applies them), else $HIP_VISIBLE_DEVICES, else $SLURM_STEP_GPUS, else $SLURM_JOB_GPUS; None when
    none of them is set. Tasks get subsets of these ids (common/gpuenv.py)."""
    if "CUDA_VISIBLE_DEVICES" in env:
        return env["CUDA_VISIBLE_DEVICES"]
    rocr, hip = env.get("ROCR_VISIBLE_DEVICES"), env.get("HIP_VISIBLE_DEVICES")
    if rocr is not None:
        return _positions_in(rocr, hip) if hip is not None else rocr
    if hip is not None:
        return hip
    for var in ("SLURM_STEP_GPUS", "SLURM_JOB_GPUS"):
        if var in env:
            return env[var]
    return None


def _positions_in(outer: str, positions: str) -> str:
    """HIP_VISIBLE_DEVICES=positions applied to ROCR_VISIBLE_DEVICES=outer: '4,5,6' and '0,2' ->
    '4,6'. A position that is not a number or not in the list is left out (HIP ignores it too)."""
    ids = [g.strip() for g in outer.split(",") if g.strip()]
    out = []
    for p in positions.split(","):
        p = p.strip()
        if p.isdigit() and int(p) < len(ids):
            out.append(ids[int(p)])
    return ",".join(out)


def task_env(env: Mapping[str, str]) -> dict[str, str]:
    """The base environment of tasks in Slurm mode: ``env`` without what describes the agent's
    step, and with SLURM_TASKS_PER_NODE describing the allocation ($SLURM_JOB_CPUS_PER_NODE)
    rather than the agent step's one task per node."""
    out = {
        k: v
        for k, v in env.items()
        if k not in STEP_VARIABLES and (not k.startswith(STEP_PREFIXES) or k.startswith(KEEP_PREFIXES))
    }
    per_node = env.get("SLURM_JOB_CPUS_PER_NODE")
    if per_node:
        out["SLURM_TASKS_PER_NODE"] = per_node
    else:
        out.pop("SLURM_TASKS_PER_NODE", None)
    return out


def _count(var: str, text: str, minimum: int = 1) -> int:
    try:
        n = int(text)
    except ValueError:
        raise SlurmEnvError(f"{var}={text!r} is not a whole number; give --cores N") from None
    return _check_positive(var, n, minimum)


def _check_positive(var: str, n: int, minimum: int = 1) -> int:
    if n < minimum:
        raise SlurmEnvError(f"{var}={n} must be at least {minimum}; give --cores N")
    return n


END_TIME_ENV = "SLURM_JOB_END_TIME"  # set by newer Slurm in a job's environment (epoch seconds)
_NO_END = frozenset({"", "0", "n/a", "unknown", "none", "unlimited", "infinite"})


def parse_end(text: str) -> float:
    """An allocation's end as epoch seconds: ``text`` is epoch seconds or an ISO time (Slurm's
    ``squeue -o %e`` prints local time without a zone: taken as this machine's local time).
    0 for what Slurm prints when there is no end ("N/A", "Unknown", "UNLIMITED", ...).
    Raises ValueError for anything else."""
    t = text.strip()
    if t.lower() in _NO_END:
        return 0.0
    try:
        s = float(t)
    except ValueError:
        try:
            when = datetime.fromisoformat(t)
        except ValueError:
            raise ValueError(f"not an end time (epoch seconds or ISO like 2026-05-01T14:30:00): {text!r}") from None
        s = when.timestamp()  # a naive time is local time
    if not 0 <= s < 253402300800:  # (also NaN) after the year 9999 a datetime cannot say it
        raise ValueError(f"not an end time: {text!r}")
    return s


def job_id(env: Mapping[str, str]) -> str:
    """The Slurm job the agent runs in ("" outside one)."""
    return env.get("SLURM_JOB_ID", "").strip()
