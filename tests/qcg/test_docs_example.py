"""QCG-PilotJob's documented API example (docs/examples.rst) runs on PJ with only its imports
changed: examples/qcg_api_example.py, in a fresh directory, as a user would run it."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import psutil

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "qcg_api_example.py"


def test_the_qcg_api_example_runs_unchanged(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "PJ_"))}
    proc = subprocess.run([sys.executable, str(EXAMPLE)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = {line.split(":  ", 1)[0]: line.split(":  ", 1)[1] for line in proc.stdout.splitlines() if ":  " in line}
    cores = len(os.sched_getaffinity(0))
    assert ast.literal_eval(lines["available resources"]) == {
        "total_nodes": 1, "total_cores": cores, "used_cores": 0, "free_cores": cores,
    }
    (name,) = ast.literal_eval(lines["submited jobs"])
    status = ast.literal_eval(lines["job status"])
    assert status["jobs"][name]["data"]["jobName"] == name
    info = ast.literal_eval(lines["job detailed information"])["jobs"][name]["data"]
    assert info["status"] == "SUCCEED" and info["iterations"]["finished"] == 4
    for it in range(4):
        assert (tmp_path / f"job.out.{it}").read_text().startswith(f"job {it} executed at ")
    (run,) = tmp_path.glob(".qcgpjm-service-pj.*")
    assert (run / "jobs.jsonl").exists() and (run / "master.log").exists()
    leftover = [p for p in psutil.process_iter(["cmdline"]) if str(run) in " ".join(p.info["cmdline"] or [])]
    assert not leftover, f"processes left behind: {leftover}"
