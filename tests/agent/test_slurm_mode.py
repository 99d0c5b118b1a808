"""Slurm mode: what an agent started by srun offers, and the environment its tasks get.

Pure functions first, then a real pj-agent process in a faked step environment with a real master.
The environment below is what Slurm 22.05 gives a task of ``srun --overlap -N2 --ntasks-per-node=1``
in an ``salloc -N2 --exclusive --gres=gpu:2`` allocation (plus a few variables other sites add).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from pj.agent import slurm
from pj.agent.resources import ResourceError, plan, usable_cpus

pytestmark = pytest.mark.timeout(10)

# The step environment of node n2 (SLURM_NODEID=1), trimmed of nothing that matters here.
STEP_ENV = {
    "PATH": "/usr/bin:/bin",
    "HOME": "/home/u",
    "CUDA_VISIBLE_DEVICES": "0,1",
    "GPU_DEVICE_ORDINAL": "0,1",
    "SLURMD_NODENAME": "n2",
    "SLURM_CLUSTER_NAME": "localcluster",
    "SLURM_CONF": "/tmp/local-slurm/etc/slurm.conf",
    "SLURM_CPUS_ON_NODE": "4",
    "SLURM_DISTRIBUTION": "cyclic",
    "SLURM_GPUS_ON_NODE": "2",
    "SLURM_GTIDS": "1",
    "SLURM_JOBID": "3",
    "SLURM_JOB_CPUS_PER_NODE": "4(x2)",
    "SLURM_JOB_CPUS_PER_NODE_PACK_GROUP_0": "4(x2)",
    "SLURM_JOB_ID": "3",
    "SLURM_JOB_NAME": "interactive",
    "SLURM_JOB_NODELIST": "n[1-2]",
    "SLURM_JOB_NUM_NODES": "2",
    "SLURM_JOB_PARTITION": "debug",
    "SLURM_LAUNCH_NODE_IPADDR": "127.0.0.1",
    "SLURM_LOCALID": "0",
    "SLURM_NNODES": "2",
    "SLURM_NODEID": "1",
    "SLURM_NODELIST": "n[1-2]",
    "SLURM_NPROCS": "2",
    "SLURM_NTASKS": "2",
    "SLURM_NTASKS_PER_NODE": "1",
    "SLURM_PRIO_PROCESS": "0",
    "SLURM_PROCID": "1",
    "SLURM_SRUN_COMM_HOST": "127.0.0.1",
    "SLURM_SRUN_COMM_PORT": "41121",
    "SLURM_STEPID": "0",
    "SLURM_STEP_GPUS": "0,1",
    "SLURM_STEP_ID": "0",
    "SLURM_STEP_LAUNCHER_PORT": "41121",
    "SLURM_STEP_NODELIST": "n[1-2]",
    "SLURM_STEP_NUM_NODES": "2",
    "SLURM_STEP_NUM_TASKS": "2",
    "SLURM_STEP_TASKS_PER_NODE": "1(x2)",
    "SLURM_SUBMIT_DIR": "/tmp",
    "SLURM_TASKS_PER_NODE": "1(x2)",
    "SLURM_TASK_PID": "18306",
    "SLURM_TOPOLOGY_ADDR": "n2",
    "SLURM_UMASK": "0022",
    # Seen on clusters with task/affinity and an MPI plugin:
    "SLURM_CPU_BIND": "quiet,mask_cpu:0x3",
    "SLURM_CPU_BIND_LIST": "0x3",
    "SLURM_CPU_BIND_TYPE": "mask_cpu:",
    "SLURM_CPUS_PER_TASK": "4",
    "PMI_RANK": "1",
    "PMIX_RANK": "1",
    "PMIX_NAMESPACE": "slurm.pmix.3.0",
    "PMIX_MCA_gds": "hash",
}


def env(**changes: str | None) -> dict[str, str]:
    out = dict(STEP_ENV)
    for k, v in changes.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = v
    return out


# ---------------------------------------------------------------- cores and CPUs


def test_not_in_slurm_offers_the_affinity() -> None:
    p = plan((0, 1, 2, 3), None, None, {"PATH": "/bin"})
    assert (p.cores, p.cpus, p.gpus, p.notes) == (4, (0, 1, 2, 3), (), ())


def test_a_batch_script_is_not_a_step() -> None:
    # SLURM_JOB_ID without SLURM_STEP_ID: the batch script or an salloc shell, not srun.
    p = plan((0, 1), None, None, {"SLURM_JOB_ID": "3", "SLURM_CPUS_ON_NODE": "8"})
    assert (p.cores, p.cpus) == (2, (0, 1))
    assert not slurm.in_step({"SLURM_JOB_ID": "3"})
    assert slurm.in_step(STEP_ENV)


def test_granted_more_than_the_affinity_shares_real_cpus_and_warns() -> None:
    p = plan((0, 1), None, None, env())
    assert p.cores == 4
    assert p.cpus == (0, 1)  # the kernel's CPUs, never Slurm's ids
    [(level, message)] = p.notes
    assert level == "warning"
    assert "Slurm grants 4 CPUs on n2 but this agent may run on 2 (0-1)" in message
    assert "share real CPUs" in message


def test_affinity_wider_than_the_grant_uses_the_first_cpus() -> None:
    affinity = (4, 5, 6, 7, 8, 9, 10, 11)
    p = plan(affinity, None, None, env())
    assert p.cores == 4
    assert p.cpus == (4, 5, 6, 7)
    [(level, message)] = p.notes
    assert level == "info"
    assert "Slurm grants 4 CPUs on n2" in message and "4-7" in message and "4-11" in message


def test_affinity_equal_to_the_grant_says_nothing() -> None:
    p = plan((2, 3, 6, 7), None, None, env())
    assert (p.cores, p.cpus, p.notes) == (4, (2, 3, 6, 7), ())


def test_counts_fallback_picks_this_nodes_entry() -> None:
    e = env(SLURM_CPUS_ON_NODE=None, SLURM_JOB_CPUS_PER_NODE="4(x2),2", SLURM_NODEID="2")
    assert plan(tuple(range(16)), None, None, e).cores == 2
    e = env(SLURM_CPUS_ON_NODE=None, SLURM_JOB_CPUS_PER_NODE="4(x2),2", SLURM_NODEID="1")
    assert plan(tuple(range(16)), None, None, e).cores == 4
    # Same count everywhere: which node this is does not matter.
    e = env(SLURM_CPUS_ON_NODE=None, SLURM_JOB_CPUS_PER_NODE="6(x3)", SLURM_NODEID=None)
    assert plan(tuple(range(16)), None, None, e).cores == 6


def test_no_count_at_all_falls_back_to_the_affinity() -> None:
    e = env(SLURM_CPUS_ON_NODE=None, SLURM_JOB_CPUS_PER_NODE=None)
    p = plan((0, 1, 2), None, None, e)
    assert (p.cores, p.cpus, p.notes) == (3, (0, 1, 2), ())


def test_cores_option_wins_over_slurm() -> None:
    p = plan((0, 1), 16, None, env())
    assert (p.cores, p.cpus, p.notes) == (16, (0, 1), ())
    # ... and a broken Slurm variable does not matter then.
    assert plan((0, 1), 3, None, env(SLURM_CPUS_ON_NODE="lots")).cores == 3


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"SLURM_CPUS_ON_NODE": "lots"}, "SLURM_CPUS_ON_NODE='lots'"),
        ({"SLURM_CPUS_ON_NODE": "0"}, "SLURM_CPUS_ON_NODE=0"),
        ({"SLURM_CPUS_ON_NODE": None, "SLURM_JOB_CPUS_PER_NODE": "4(y2)"}, "SLURM_JOB_CPUS_PER_NODE"),
        ({"SLURM_CPUS_ON_NODE": None, "SLURM_JOB_CPUS_PER_NODE": "4,2", "SLURM_NODEID": "5"}, "SLURM_NODEID=5"),
        ({"SLURM_CPUS_ON_NODE": None, "SLURM_JOB_CPUS_PER_NODE": "4,2", "SLURM_NODEID": None}, "SLURM_NODEID"),
    ],
)
def test_unreadable_slurm_values_name_the_variable_and_the_fix(
    changes: dict[str, str | None], needle: str
) -> None:
    with pytest.raises(ResourceError) as e:
        plan((0, 1), None, None, env(**changes))
    assert needle in str(e.value)
    assert "--cores" in str(e.value)


# ---------------------------------------------------------------- GPUs


@pytest.mark.parametrize(
    ("option", "changes", "expected"),
    [
        ("3", {}, ("3",)),  # --gpus first
        ("", {}, ()),  # --gpus "" means none, whatever the environment says
        (None, {"CUDA_VISIBLE_DEVICES": "1"}, ("1",)),
        (None, {"CUDA_VISIBLE_DEVICES": None}, ("0", "1")),  # SLURM_STEP_GPUS
        (None, {"CUDA_VISIBLE_DEVICES": None, "SLURM_STEP_GPUS": None, "SLURM_JOB_GPUS": "2,3"}, ("2", "3")),
        (None, {"CUDA_VISIBLE_DEVICES": None, "SLURM_STEP_GPUS": None}, ()),
        (None, {"CUDA_VISIBLE_DEVICES": "NoDevFiles"}, ()),  # Slurm's "no GPU" marker
        # AMD: ROCm's variables, where Slurm (gres Flags=amd_gpu_env) or a site sets only those
        (None, {"CUDA_VISIBLE_DEVICES": None, "ROCR_VISIBLE_DEVICES": "2,3"}, ("2", "3")),
        (None, {"CUDA_VISIBLE_DEVICES": None, "HIP_VISIBLE_DEVICES": "1"}, ("1",)),
        # HIP selects positions in what ROCR left: the ids the ROCm runtime numbers
        (None, {"CUDA_VISIBLE_DEVICES": None, "ROCR_VISIBLE_DEVICES": "4,5,6", "HIP_VISIBLE_DEVICES": "0,2"},
         ("4", "6")),
        (None, {"ROCR_VISIBLE_DEVICES": "5"}, ("0", "1")),  # CUDA_VISIBLE_DEVICES=0,1 comes first
    ],
)
def test_gpu_precedence(option: str | None, changes: dict[str, str | None], expected: tuple[str, ...]) -> None:
    assert plan((0, 1), None, option, env(**changes)).gpus == expected


def test_gpus_outside_slurm() -> None:
    assert plan((0,), None, None, {"CUDA_VISIBLE_DEVICES": "0,2"}).gpus == ("0", "2")
    assert plan((0,), None, None, {}).gpus == ()


# ---------------------------------------------------------------- the tasks' environment


def test_task_env_drops_what_describes_the_agent_step() -> None:
    out = slurm.task_env(STEP_ENV)
    for var in (
        "SLURM_STEP_ID", "SLURM_STEPID", "SLURM_STEP_NODELIST", "SLURM_STEP_NUM_NODES",
        "SLURM_STEP_NUM_TASKS", "SLURM_STEP_TASKS_PER_NODE", "SLURM_STEP_LAUNCHER_PORT",
        "SLURM_STEP_GPUS", "SLURM_PROCID", "SLURM_LOCALID", "SLURM_NODEID", "SLURM_GTIDS",
        "SLURM_TASK_PID", "SLURM_NTASKS_PER_NODE", "SLURM_DISTRIBUTION", "SLURM_SRUN_COMM_HOST",
        "SLURM_SRUN_COMM_PORT", "SLURM_LAUNCH_NODE_IPADDR", "SLURM_PRIO_PROCESS", "SLURM_CPU_BIND",
        "SLURM_CPU_BIND_LIST", "SLURM_CPU_BIND_TYPE", "SLURM_CPUS_PER_TASK", "SLURM_NTASKS",
        "SLURM_NPROCS", "SLURM_UMASK", "SLURM_JOB_CPUS_PER_NODE_PACK_GROUP_0", "PMI_RANK",
        "PMIX_RANK", "PMIX_NAMESPACE",
    ):  # fmt: skip
        assert var not in out, var


def test_task_env_keeps_the_allocation() -> None:
    out = slurm.task_env(STEP_ENV)
    for var in (
        "PATH", "HOME", "SLURM_JOB_ID", "SLURM_JOBID", "SLURM_CONF", "SLURM_JOB_NODELIST",
        "SLURM_NODELIST", "SLURMD_NODENAME", "SLURM_CLUSTER_NAME", "SLURM_JOB_NUM_NODES",
        "SLURM_NNODES", "SLURM_JOB_CPUS_PER_NODE", "SLURM_CPUS_ON_NODE", "PMIX_MCA_gds",
    ):  # fmt: skip
        assert out[var] == STEP_ENV[var], var
    # An mpirun (or srun) in a task sees the allocation's tasks per node, not the agents' 1(x2).
    assert out["SLURM_TASKS_PER_NODE"] == "4(x2)"
    assert STEP_ENV["SLURM_STEP_ID"] == "0"  # the input is left alone


def test_task_env_without_cpus_per_node_drops_the_step_tasks_per_node() -> None:
    out = slurm.task_env(env(SLURM_JOB_CPUS_PER_NODE=None))
    assert "SLURM_TASKS_PER_NODE" not in out


# ---------------------------------------------------------------- a real agent process


def wait_for(check: Any, what: str, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while not (got := check()):
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)
    return got


@pytest.mark.timeout(30)
def test_agent_in_a_slurm_step(cluster_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    c = cluster_factory(nodes=0, expect=False)
    granted = len(usable_cpus()) + 2  # more than this machine lets the agent use: cores are shared
    for k, v in STEP_ENV.items():
        if k != "PATH" and k != "HOME":
            monkeypatch.setenv(k, v)
    monkeypatch.setenv("SLURM_CPUS_ON_NODE", str(granted))
    monkeypatch.setenv("SLURM_JOB_CPUS_PER_NODE", f"{granted}(x2)")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")  # the GPUs come from SLURM_STEP_GPUS then
    c._spawn([sys.executable, "-m", "pj.agent", "--workdir", str(c.workdir)], "agent-n2.log")

    with c.client() as client:
        [node] = wait_for(lambda: [n for n in client.resources().nodes if n.online], "the agent")
        assert (node.name, node.cores, node.gpus) == ("n2", granted, ("0", "1"))
        out = tmp_path / "task.env"
        client.submit([{"name": "e", "exec": "/bin/sh", "args": ["-c", f"env > {out}"]}])
        assert client.wait(["e"], timeout=20) == {"e": "SUCCEED"}
    env = dict(line.split("=", 1) for line in out.read_text().splitlines() if "=" in line)
    for gone in ("SLURM_STEP_ID", "SLURM_STEP_NODELIST", "SLURM_PROCID", "SLURM_NODEID", "SLURM_NTASKS",
                 "SLURM_CPU_BIND", "SLURM_SRUN_COMM_PORT", "PMIX_RANK"):
        assert gone not in env, gone
    assert env["SLURM_JOB_ID"] == "3" and env["SLURM_JOB_NODELIST"] == "n[1-2]"
    assert env["SLURM_TASKS_PER_NODE"] == f"{granted}(x2)"
    log = (c.workdir / "agent-n2.log").read_text()
    assert f"Slurm grants {granted} CPUs on n2 but this agent may run on {len(usable_cpus())}" in log
    assert os.environ["SLURM_STEP_ID"] == "0"  # (the test's own environment, restored after)
