"""pj.client.LocalCluster inside a Slurm allocation (shared/slurm/local-cluster up 4 4 2): one agent
per node of the allocation, every node listed as soon as LocalCluster() returns, a job runs there,
and nothing of the run is left once the script ends."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(120)]

SCRIPT = """
import json, os
from pj.client import LocalCluster
from pj.client.slurm import SlurmModeError

try:
    LocalCluster(nodes=2)
except SlurmModeError as e:
    refused = str(e)
with LocalCluster(workdir="W") as cluster, cluster.client() as pj:
    res = pj.resources()
    pj.submit([{"name": "where", "script": "echo $SLURMD_NODENAME", "stdout": "where.out"}])
    state = pj.wait("where", timeout=60)["where"]
print(json.dumps({"job": os.environ["SLURM_JOB_ID"], "nodes": sorted(n.name for n in res.nodes),
                  "count": cluster.nodes, "slurm": cluster.slurm, "state": state, "refused": refused,
                  "codes": cluster.exit_codes}))
"""


def test_local_cluster_uses_every_node_of_the_allocation(tmp_path: Path, slurm_tools: SimpleNamespace) -> None:
    t = slurm_tools
    t.need_cluster(nodes=2)
    (tmp_path / "script.py").write_text(SCRIPT)
    r = t.salloc_run(["-N2", "--exclusive", "--time=2"], [sys.executable, "script.py"], cwd=tmp_path, timeout=90)
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert len(out["nodes"]) == 2 and set(out["nodes"]) <= {"n1", "n2", "n3", "n4"}
    assert out["count"] == 2 and out["slurm"] is True and out["state"] == "SUCCEED"
    assert (tmp_path / "where.out").read_text().strip() in out["nodes"]
    assert out["refused"].startswith("--nodes 2: only for local mode")
    assert out["codes"] == {"master": 0, "srun": 0}  # the master and the agents' srun ended cleanly
    assert sorted(p.name for p in (tmp_path / "W").glob("agent-*.log")) == [f"agent-{n}.log" for n in out["nodes"]]


QCG_SCRIPT = """
import json
from pj.qcg import Jobs, LocalManager  # a QCG-PilotJob script: only this import is PJ's

m = LocalManager()
res = m.resources()
ids = m.submit(Jobs().add(name="wide", script="srun sh -c 'echo $SLURMD_NODENAME' | sort -u > wide.out", numNodes=2, numCores=1))
state = m.wait4(ids)
info = m.info_parsed("wide")["wide"]
m.finish()
print(json.dumps({"res": res, "state": state, "nodes": sorted(info.nodes)}))
"""


def test_qcg_local_manager_uses_the_allocation(tmp_path: Path, slurm_tools: SimpleNamespace) -> None:
    t = slurm_tools
    t.need_cluster(nodes=2)
    (tmp_path / "script.py").write_text(QCG_SCRIPT)
    r = t.salloc_run(["-N2", "--exclusive", "--time=2"], [sys.executable, "script.py"], cwd=tmp_path, timeout=90)
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["res"]["total_nodes"] == 2 and out["res"]["used_cores"] == 0
    assert out["state"] == {"wide": "SUCCEED"} and len(out["nodes"]) == 2
    assert sorted((tmp_path / "wide.out").read_text().split()) == out["nodes"]  # one step over both nodes
