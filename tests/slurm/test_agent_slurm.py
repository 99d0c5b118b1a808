"""The agent on a real Slurm cluster (shared/slurm/local-cluster up 4 4 2): one srun step with one
agent per node, as Slurm mode starts them. Each agent finds its own node, the CPUs Slurm grants
there and the step's GPUs; what its tasks would get no longer describes the agents' step."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(40)]

START = "start one with: sudo shared/slurm/local-cluster up 4 4 2"
PY = sys.executable

# What a task may see that differs from the allocation's own environment (the salloc shell): facts
# of its node or of the job that the shell lacks. Anything else would come from the agents' step.
NODE_LEVEL = {
    "SLURMD_NODENAME", "SLURM_CONF", "SLURM_CPUS_ON_NODE", "SLURM_GPUS_ON_NODE", "SLURM_JOB_GID",
    "SLURM_JOB_UID", "SLURM_JOB_USER", "SLURM_TOPOLOGY_ADDR", "SLURM_TOPOLOGY_ADDR_PATTERN",
    "SLURM_WORKING_CLUSTER", "SLURM_JOB_GPUS",
}  # fmt: skip


def _cluster_or_skip() -> None:
    if shutil.which("sinfo") is None or shutil.which("salloc") is None:
        pytest.skip(f"no Slurm here (sinfo/salloc not found); {START}")
    try:
        r = subprocess.run(["sinfo", "-h", "-o", "%D %G"], capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired:
        pytest.skip(f"the Slurm cluster does not answer (sinfo timed out); {START}")
    if r.returncode != 0:
        pytest.skip(f"the Slurm cluster does not answer: {r.stderr.strip()}; {START}")
    fields = r.stdout.split()
    if not fields or int(fields[0]) < 2 or "gpu:2" not in r.stdout:
        pytest.skip(f"needs 2 nodes with 2 GPUs each (sinfo says {r.stdout.strip()!r}); {START}")


@pytest.fixture(scope="module")
def step(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One allocation of 2 whole nodes with 2 GPUs each; in it, the salloc shell's environment and,
    from a step with one task per node (as Slurm mode starts agents), each agent's --print-resources
    and the base environment its tasks would get."""
    _cluster_or_skip()
    d = tmp_path_factory.mktemp("slurm")
    dump_env = "import json, os, sys; json.dump(dict(os.environ), open(sys.argv[1], 'w'))"
    task_env = (
        "import json, os, sys; from pj.agent import slurm; "
        "json.dump(slurm.task_env(os.environ), open(sys.argv[1] + os.environ['SLURMD_NODENAME'], 'w'))"
    )
    srun = "srun --overlap -N2 --ntasks-per-node=1 --time=1"
    script = (
        f"set -e; {PY} -c \"{dump_env}\" {d}/alloc.json; "
        f"{srun} {PY} -m pj.agent --print-resources > {d}/resources.jsonl; "
        f"{srun} {PY} -c \"{task_env}\" {d}/task-env-"
    )
    cmd = ["salloc", "-N2", "--exclusive", "--gres=gpu:2", "--time=1", "--immediate=15",
           "bash", "-c", script]  # fmt: skip
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=30, env=os.environ.copy())
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"salloc + srun did not finish in 30 s: {e.stderr!r}")
    if r.returncode != 0 and "Immediate" in r.stderr:
        pytest.skip(f"the cluster is busy: no 2 free nodes within 15 s ({r.stderr.strip()})")
    assert r.returncode == 0, f"rc={r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    lines = [ln for ln in (d / "resources.jsonl").read_text().splitlines() if ln.startswith("{")]
    return {
        "alloc": json.loads((d / "alloc.json").read_text()),
        "resources": {x["node"]: x for x in map(json.loads, lines)},
        "task_env": {n: json.loads(p.read_text()) for n, p in _by_node(d, "task-env-").items()},
    }


def _by_node(d: Path, prefix: str) -> dict[str, Path]:
    return {p.name[len(prefix) :]: p for p in d.glob(prefix + "*")}


def test_each_agent_finds_its_node_cores_and_gpus(step: dict[str, Any]) -> None:
    res = step["resources"]
    nodes = sorted(res)
    assert len(nodes) == 2 and nodes == sorted(set(nodes))  # two agents, each on its own node
    expected = subprocess.run(
        ["scontrol", "show", "hostnames", step["alloc"]["SLURM_JOB_NODELIST"]],
        capture_output=True, text=True, timeout=10,
    ).stdout.split()  # fmt: skip
    assert nodes == sorted(expected)
    for node in nodes:
        got = res[node]
        assert got["slurm_step"] is True
        assert got["cores"] == 4  # what Slurm grants on the node, whatever the machine has
        assert got["gpus"] == ["0", "1"]
        cpus = got["cpus"]  # the kernel's ids from the agent's affinity, never Slurm's
        assert cpus == sorted(set(cpus)) and 1 <= len(cpus) <= 4 and cpus[-1] < (os.cpu_count() or 1)
        if len(got["cpus"]) < 4:
            assert any("share real CPUs" in n for n in got["notes"])


def test_tasks_see_the_allocation_not_the_agents_step(step: dict[str, Any]) -> None:
    alloc = step["alloc"]
    assert len(step["task_env"]) == 2
    for node, env in step["task_env"].items():
        assert env["SLURMD_NODENAME"] == node
        assert env["SLURM_JOB_ID"] == alloc["SLURM_JOB_ID"]
        assert env["SLURM_JOB_NODELIST"] == alloc["SLURM_JOB_NODELIST"]
        assert env["SLURM_TASKS_PER_NODE"] == alloc["SLURM_JOB_CPUS_PER_NODE"] == "4(x2)"
        assert not any(k.startswith("SLURM_STEP") for k in env)
        step_only = {
            k for k, v in env.items()
            if k.startswith("SLURM") and k not in NODE_LEVEL and alloc.get(k) != v
        }  # fmt: skip
        assert step_only == set(), f"variables of the agents' step left for tasks on {node}"
