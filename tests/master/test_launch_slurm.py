"""What a task is started with, per execution model, in Slurm mode and outside it (argv, SLURM_*, hostfile)."""

from __future__ import annotations

import pytest

from pj.master import convert
from pj.master.admission import SubmitError
from pj.master.core import Core
from pj.master.expect import Expectation
from pj.master.launch import MODULE_INIT, Context, TaskLaunch, build
from pj.master.model import Allocation, JobSpec, NodeInfo, NodeShare, Range, Request

SLURM = Context(master="h:1", workdir="/w", slurm=True)
LOCAL = Context(master="h:1", workdir="/w")
ONE_NODE: Allocation = (NodeShare("n1", (4, 5, 6)),)
TWO_NODES: Allocation = (NodeShare("n3", (0, 1)), NodeShare("n4", (0, 1)))
SLURM_VARS = ("SLURM_NNODES", "SLURM_JOB_NUM_NODES", "SLURM_NODELIST", "SLURM_JOB_NODELIST", "SLURM_NTASKS",
              "SLURM_NPROCS", "SLURM_TASKS_PER_NODE", "SLURM_JOB_CPUS_PER_NODE", "SLURM_CPUS_ON_NODE")


def spec(model: str = "default", **kw: object) -> JobSpec:
    fields: dict[str, object] = {"exec": "./solver", "args": ("-i", "in.dat")}
    fields.update(kw)
    return JobSpec(name="job", model=model, base_dir="/home/u", **fields)  # type: ignore[arg-type]


def launch(model: str, allocation: Allocation, ctx: Context, **kw: object) -> TaskLaunch:
    return build(spec(model, **kw), 7, None, allocation, ctx)


def slurm_vars(t: TaskLaunch) -> dict[str, str]:
    return {k: v for k, v in t.env.items() if k.startswith("SLURM_")}


# ---------------------------------------------------------------- Slurm mode: what a task is told


def test_slurm_env_describes_a_one_node_three_core_task() -> None:
    t = launch("default", ONE_NODE, SLURM)
    assert slurm_vars(t) == {
        "SLURM_NNODES": "1", "SLURM_JOB_NUM_NODES": "1",
        "SLURM_NODELIST": "n1", "SLURM_JOB_NODELIST": "n1",
        "SLURM_NTASKS": "3", "SLURM_NPROCS": "3",
        "SLURM_TASKS_PER_NODE": "3", "SLURM_JOB_CPUS_PER_NODE": "3",
        "SLURM_CPUS_ON_NODE": "3", "SLURM_OVERLAP": "1",
    }
    assert t.hostfile == "n1\nn1\nn1\n" and t.slurm_hostfile
    assert t.argv == ("/home/u/solver", "-i", "in.dat") and t.node == "n1" and t.cores == (4, 5, 6)


def test_slurm_env_describes_a_two_node_job() -> None:
    t = launch("default", TWO_NODES, SLURM)
    env = slurm_vars(t)
    assert (env["SLURM_NNODES"], env["SLURM_JOB_NUM_NODES"]) == ("2", "2")
    assert (env["SLURM_NODELIST"], env["SLURM_JOB_NODELIST"]) == ("n[3-4]", "n[3-4]")
    assert (env["SLURM_NTASKS"], env["SLURM_NPROCS"]) == ("4", "4")
    assert (env["SLURM_TASKS_PER_NODE"], env["SLURM_JOB_CPUS_PER_NODE"]) == ("2(x2)", "2(x2)")
    assert env["SLURM_CPUS_ON_NODE"] == "2" and env["SLURM_OVERLAP"] == "1"
    assert t.hostfile == "n3\nn3\nn4\nn4\n" and t.slurm_hostfile
    assert t.argv == ("/home/u/solver", "-i", "in.dat")  # default: one process on the first node
    assert t.node == "n3"


def test_threads_in_slurm_mode_sets_omp_threads_and_the_share() -> None:
    t = launch("threads", ONE_NODE, SLURM)
    assert t.env["OMP_NUM_THREADS"] == "3" and t.env["SLURM_NTASKS"] == "3"
    assert t.hostfile == "n1\nn1\nn1\n" and t.slurm_hostfile


def test_a_users_env_still_wins_over_the_slurm_variables() -> None:
    t = launch("default", ONE_NODE, SLURM, env=(("SLURM_NTASKS", "1"),))
    assert t.env["SLURM_NTASKS"] == "1"


# ---------------------------------------------------------------- parallel models, Slurm mode


def test_srun_model_in_slurm_mode() -> None:
    t = launch("srun", TWO_NODES, SLURM)
    assert t.argv == ("srun", "--nodes=2", "--ntasks=4", "--ntasks-per-node=2", "--nodelist=n3,n4", "--overlap",
                      "--kill-on-bad-exit=1", "/home/u/solver", "-i", "in.dat")
    assert t.env["SLURM_NODELIST"] == "n[3-4]" and t.env["SLURM_NTASKS"] == "4"
    # PJ_HOSTFILE only: SLURM_HOSTFILE would fight srun's own --nodelist/--ntasks-per-node.
    assert t.hostfile == "n3\nn3\nn4\nn4\n" and not t.slurm_hostfile


def test_openmpi_in_slurm_mode_sees_the_real_allocation() -> None:
    t = launch("openmpi", TWO_NODES, SLURM)
    assert t.argv == ("mpirun", "-np", "4", "--host", "n3:2,n4:2", "--bind-to", "none",
                      "/home/u/solver", "-i", "in.dat")
    assert slurm_vars(t) == {"SLURM_OVERLAP": "1"}
    assert t.hostfile == "n3\nn3\nn4\nn4\n" and not t.slurm_hostfile


def test_intelmpi_in_slurm_mode() -> None:
    t = launch("intelmpi", TWO_NODES, SLURM)
    assert t.argv == ("mpirun", "-n", "4", "-ppn", "2", "-hosts", "n3,n4", "/home/u/solver", "-i", "in.dat")
    assert slurm_vars(t) == {"SLURM_OVERLAP": "1"}
    assert not t.slurm_hostfile


def test_a_script_job_runs_under_the_launcher_and_modules_come_first() -> None:
    t = launch("srun", TWO_NODES, SLURM, exec="", args=(), script="hostname")
    assert t.argv[:7] == ("srun", "--nodes=2", "--ntasks=4", "--ntasks-per-node=2", "--nodelist=n3,n4",
                          "--overlap", "--kill-on-bad-exit=1")
    assert t.argv[7:] == ("bash", "-c", "hostname")
    t = launch("openmpi", ONE_NODE, LOCAL, modules=("openmpi/4.1",), venv="/opt/env")
    assert t.argv[:2] == ("bash", "-c")
    assert t.argv[2] == MODULE_INIT + 'module load openmpi/4.1\nsource /opt/env/bin/activate\nexec "$@"'
    assert t.argv[3:] == ("job", "mpirun", "-np", "3", "--oversubscribe", "--bind-to", "none", "/home/u/solver",
                          "-i", "in.dat")


# ---------------------------------------------------------------- local mode


def test_local_mode_one_core_default_task_stays_lean() -> None:
    t = launch("default", (NodeShare("a", (0,)),), LOCAL)
    assert t.hostfile == "" and not t.slurm_hostfile
    assert slurm_vars(t) == {}
    assert t.argv == ("/home/u/solver", "-i", "in.dat")


def test_local_mode_multi_node_and_parallel_jobs_get_a_hostfile() -> None:
    t = launch("default", TWO_NODES, LOCAL)
    assert t.hostfile == "n3\nn3\nn4\nn4\n" and not t.slurm_hostfile and slurm_vars(t) == {}
    t = launch("srun", ONE_NODE, LOCAL)  # no Slurm: runs as default would, with its hostfile
    assert t.argv == ("/home/u/solver", "-i", "in.dat")
    assert t.hostfile == "n1\nn1\nn1\n" and not t.slurm_hostfile and slurm_vars(t) == {}


def test_mpi_models_in_local_mode() -> None:
    assert launch("openmpi", ONE_NODE, LOCAL).argv == (
        "mpirun", "-np", "3", "--oversubscribe", "--bind-to", "none", "/home/u/solver", "-i", "in.dat")
    assert launch("intelmpi", TWO_NODES, LOCAL).argv == ("mpirun", "-n", "4", "/home/u/solver", "-i", "in.dat")
    assert launch("intelmpi", TWO_NODES, LOCAL).hostfile == "n3\nn3\nn4\nn4\n"


# ---------------------------------------------------------------- through the core and the wire


def test_a_slurm_mode_core_places_an_srun_job_across_nodes_and_the_wire_carries_the_hostfile() -> None:
    c = Core(expect=Expectation(2), ctx=SLURM, now=0.0)
    for n in ("n1", "n2"):
        c.node_joined(NodeInfo(n, 4), 1.0)
    c.submit([JobSpec(name="mpi", exec="/bin/app", model="srun",
                      request=Request(Range(4, 4), Range(2, 2)))], 2.0)
    (t,) = c.step(3.0).launches["n1"]
    assert t.argv[:6] == ("srun", "--nodes=2", "--ntasks=8", "--ntasks-per-node=4", "--nodelist=n1,n2",
                          "--overlap")
    msg = convert.launch_to_pb(t)
    assert msg.hostfile == "n1\n" * 4 + "n2\n" * 4 and not msg.slurm_hostfile
    c.submit([JobSpec(name="one", exec="/bin/app")], 4.0)
    c.task_exited(t.task_id, 0, "", 5.0)
    (one,) = [x for ts in c.step(6.0).launches.values() for x in ts]
    assert convert.launch_to_pb(one).slurm_hostfile


def test_threads_on_more_than_one_node_is_refused_at_submit() -> None:
    c = Core()
    with pytest.raises(SubmitError, match=r"job 'omp': field 'nodes': model 'threads' runs .* one node"):
        c.submit([JobSpec(name="omp", exec="/bin/app", model="threads",
                          request=Request(Range(4, 4), Range(1, 2)))], 0.0)
    assert len(c.registry) == 0
