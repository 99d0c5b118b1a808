"""Execution models: how a task's command is started across its allocation, and what it is told.

Pure functions of the allocation (no I/O). The launch always happens on the first node of the
allocation, as for every task; a parallel model turns the job's command into a launcher command
that places the ranks:

- ``default``: one process on the first node, told its allocation through the environment.
- ``threads``: the same, with OMP_NUM_THREADS = its cores (one node only; checked at submit).
- ``srun`` (Slurm mode): ``srun --nodes=K --ntasks=T --ntasks-per-node=P --nodelist=a,b --overlap
  --kill-on-bad-exit=1 CMD``. Outside Slurm mode there is no srun to call: the task runs as with
  ``default`` (one process, its allocation in PJ_* and PJ_HOSTFILE), so a job file written for a
  cluster still runs on a laptop.
- ``openmpi``: Slurm mode ``mpirun -np T --host a:P,b:P --bind-to none CMD``; local mode
  ``mpirun -np T --oversubscribe --bind-to none CMD`` (the ranks inherit the task's core binding
  from the agent; without --oversubscribe OpenMPI 4.1 counts the machine's cores, not the task's,
  and refuses T above that, which emulated nodes (`pj run --nodes 2 --cores 8`) reach easily).
- ``intelmpi``: Slurm mode ``mpirun -n T -ppn P -hosts a,b CMD``; local mode ``mpirun -n T CMD``.
- A job's ``mpirun`` (QCG-PilotJob's ``model_opts.mpirun``) is called instead of ``mpirun``, and its
  ``model_args`` (``model_opts.mpirun_args``, or ``srun_args`` for srun) come after PJ's own options,
  just before CMD, as QCG-PilotJob places them.

No ``--cpu-bind`` is given to srun: the core ids PJ hands out are the kernel's (the agent's
affinity), and Slurm's abstract CPU ids may number them differently, so a core list could bind
ranks to other tasks' cores.

In Slurm mode a task of the ``default``, ``threads`` and ``srun`` models gets the ``SLURM_*``
variables rewritten to describe its own share (``slurm_env``), so that tools reading them see the
task, not the whole allocation. ``openmpi`` and ``intelmpi`` get only ``SLURM_OVERLAP=1``: their
``mpirun`` starts its daemons with srun and must see the real allocation (OpenMPI 4.1 with a
rewritten SLURM_NODELIST puts its daemons on the wrong nodes).
"""

from __future__ import annotations

from pj.common import hostlist

from .model import Allocation, JobSpec

# The model names themselves are checked at submit (pj.common.speccheck.MODELS).
PARALLEL = frozenset({"srun", "openmpi", "intelmpi"})  # models that start several ranks
# In Slurm mode, models whose task is told its own share through SLURM_* and, for the two
# one-process models, whose `srun` calls land on that share through SLURM_HOSTFILE.
SLURM_SHARE = frozenset({"default", "threads", "srun"})
SLURM_HOSTFILE = frozenset({"default", "threads"})


def per_node(allocation: Allocation) -> int:
    """Cores per node of a multi-node allocation (the pool gives every node the same number)."""
    counts = {len(s.cores) for s in allocation}
    if len(counts) != 1:
        shares = ", ".join(f"{s.node}:{len(s.cores)}" for s in allocation)
        raise ValueError(f"allocation {shares}: a parallel model needs the same cores on every node")
    return counts.pop()


def hostfile(allocation: Allocation) -> str:
    """One line per rank (core): ``n1\\nn1\\nn2\\nn2\\n``."""
    return "".join(f"{s.node}\n" * len(s.cores) for s in allocation)


def slurm_env(allocation: Allocation) -> dict[str, str]:
    """The SLURM_* variables describing the task's share rather than the whole allocation."""
    nodes = [s.node for s in allocation]
    counts = [len(s.cores) for s in allocation]
    nnodes, ntasks = str(len(nodes)), str(sum(counts))
    nodelist, per = hostlist.compress(nodes), hostlist.compress_counts(counts)
    return {
        "SLURM_NNODES": nnodes,
        "SLURM_JOB_NUM_NODES": nnodes,
        "SLURM_NODELIST": nodelist,
        "SLURM_JOB_NODELIST": nodelist,
        "SLURM_NTASKS": ntasks,
        "SLURM_NPROCS": ntasks,
        "SLURM_TASKS_PER_NODE": per,
        "SLURM_JOB_CPUS_PER_NODE": per,
        "SLURM_CPUS_ON_NODE": str(counts[0]),
        "SLURM_OVERLAP": "1",
    }


def launcher(spec: JobSpec, allocation: Allocation, slurm: bool) -> tuple[str, ...]:
    """What goes before the job's command (argv) for its model; empty: the command runs as it is.
    ``spec.mpirun`` replaces ``mpirun`` and ``spec.model_args`` follow PJ's own options (QCG-PilotJob's
    ``model_opts``: ``mpirun``, ``mpirun_args``; ``srun_args`` for srun, in Slurm mode only)."""
    model, extra = spec.model, spec.model_args
    nodes = [s.node for s in allocation]
    total = sum(len(s.cores) for s in allocation)
    if model == "srun":
        if not slurm:
            return ()
        p = per_node(allocation)
        return (
            "srun",
            f"--nodes={len(nodes)}",
            f"--ntasks={total}",
            f"--ntasks-per-node={p}",
            f"--nodelist={','.join(nodes)}",
            "--overlap",
            "--kill-on-bad-exit=1",
            *extra,
        )
    mpirun = spec.mpirun or "mpirun"
    if model == "openmpi":
        if not slurm:
            return (mpirun, "-np", str(total), "--oversubscribe", "--bind-to", "none", *extra)
        hosts = ",".join(f"{s.node}:{len(s.cores)}" for s in allocation)
        return (mpirun, "-np", str(total), "--host", hosts, "--bind-to", "none", *extra)
    if model == "intelmpi":
        if not slurm:
            return (mpirun, "-n", str(total), *extra)
        p = per_node(allocation)
        return (mpirun, "-n", str(total), "-ppn", str(p), "-hosts", ",".join(nodes), *extra)
    return ()

