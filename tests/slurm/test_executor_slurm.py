"""pj.client.Executor inside a Slurm allocation (shared/slurm/local-cluster up 4 4 2): calls run on
warm workers of every node of the allocation, each bound to its cores, and come back."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(120)]

SCRIPT = """
import json, os, time
from pj.client import Executor, LocalCluster

def where(i):
    time.sleep(0.05)
    return os.environ["SLURMD_NODENAME"], os.getpid(), len(os.sched_getaffinity(0)), i * i

def boom():
    raise ZeroDivisionError("on a node")

with LocalCluster(workdir="W") as cluster, Executor(cluster) as ex:
    seen = list(ex.map(where, range(200)))
    try:
        ex.submit(boom).result()
        raised = ""
    except ZeroDivisionError as e:
        raised = str(e)
    chained = ex.submit(lambda a, b: a + b, ex.submit(sum, [1, 2]), ex.submit(len, "abcd")).result()
    cores = cluster.cores
print(json.dumps({"nodes": sorted({n for n, *_ in seen}), "workers": len({(n, p) for n, p, *_ in seen}),
                  "affinity": sorted({a for _, _, a, _ in seen}), "ok": [s for *_, s in seen] == [i * i for i in range(200)],
                  "raised": raised, "chained": chained, "cores": cores}))
"""


def test_calls_run_on_every_node_of_the_allocation(tmp_path: Path, slurm_tools: SimpleNamespace) -> None:
    t = slurm_tools
    t.need_cluster(nodes=4)
    (tmp_path / "script.py").write_text(SCRIPT)
    r = t.salloc_run(["-N4", "--exclusive", "--time=3"], [sys.executable, "script.py"], cwd=tmp_path, timeout=110)
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["nodes"] == ["n1", "n2", "n3", "n4"], out
    assert out["ok"] and out["affinity"] == [1], out  # each call bound to its one core
    assert out["workers"] <= out["cores"] * 4, out  # warm: at most one worker per core, reused
    assert out["raised"] == "on a node" and out["chained"] == 7
