"""The `openmpi` model on a real cluster: mpirun started by an agent on the job's first node places
its ranks on exactly the job's nodes, P per node, next to one-core tasks that keep other cores busy.

Needs Open MPI's mpirun (CI installs openmpi-bin); mpirun starts its daemons with the allocation's
own srun, which is what the agents' `--overlap` step makes possible.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(120)]

RANK = "echo $SLURMD_NODENAME $OMPI_COMM_WORLD_RANK"
ROOT_OK = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}  # CI runs as root


def test_openmpi_ranks_land_on_the_job_s_nodes(tmp_path: Path, slurm_tools: SimpleNamespace) -> None:
    t = slurm_tools
    t.need_cluster(nodes=3)
    if shutil.which("mpirun") is None:
        pytest.skip("no mpirun here (apt-get install openmpi-bin)")
    env = ROOT_OK if os.geteuid() == 0 else {}
    jobs = t.write_jobs(tmp_path / "c.json", [
        {"name": "busy", "exec": "sleep", "args": ["1"], "iterations": 4},
        {"name": "wide", "exec": "sh", "args": ["-c", RANK], "nodes": 2, "cores": 2, "model": "openmpi",
         "env": env, "stdout": "wide.out", "stderr": "wide.err"},
        {"name": "one", "exec": "sh", "args": ["-c", RANK], "cores": 2, "model": "openmpi",
         "env": env, "stdout": "one.out", "stderr": "one.err"},
    ])  # fmt: skip
    pj = str(Path(t.pj_env()["PJ_VENV"]) / "bin" / "pj")
    r = t.salloc_run(["-N3", "--exclusive", "--time=2"], [pj, "run", str(jobs), "--workdir", "W", "--quiet"],
                     cwd=tmp_path, timeout=100)  # fmt: skip
    report = t.read_report(tmp_path / "W")
    for name in ("wide", "one"):
        err = (tmp_path / f"{name}.err").read_text()
        assert report[name]["state"] == "SUCCEED", (report[name], err, r.stderr)
    assert r.returncode == 0, r.stdout + r.stderr

    wide = [line.split() for line in (tmp_path / "wide.out").read_text().splitlines()]
    assert sorted(int(rank) for _, rank in wide) == [0, 1, 2, 3]
    assert Counter(node for node, _ in wide) == dict.fromkeys(report["wide"]["nodes"], 2)

    one = [line.split() for line in (tmp_path / "one.out").read_text().splitlines()]
    assert sorted(int(rank) for _, rank in one) == [0, 1]
    assert {node for node, _ in one} == set(report["one"]["nodes"]) and len(report["one"]["nodes"]) == 1
