"""Helpers for the tests on a real Slurm cluster (marker ``slurm``; see shared/slurm/README.md),
offered as the fixture ``slurm_tools`` (a namespace of the functions below):

- ``need_cluster(nodes, gpus)``: skip, with the reason, when there is no Slurm here, the cluster
  does not answer, or it has too few idle-able nodes or GPUs;
- ``sbatch_wait(...)``: submit a batch script and wait for its end (polling ``scontrol``, which is
  much quicker than ``sbatch --wait``'s back-off), scancel it past a timeout; returns the exit code
  and the output file's text;
- ``salloc_run(...)``: run a command under ``salloc`` with a timeout;
- ``read_report(workdir)``: DIR/jobs.jsonl as {name: record};
- ``pj_env()``: the environment for a job: PJ_VENV set to this venv, no SLURM_* inherited.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SBATCH_TEMPLATE = REPO / "scripts" / "pj.sbatch"
VENV = Path(sys.executable).parent.parent
START = "start one with: sudo shared/slurm/local-cluster up 4 4 2"
FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED",
                "BOOT_FAIL", "DEADLINE"}  # fmt: skip


def need_cluster(nodes: int = 1, gpus: int = 0) -> None:
    """Skip the test unless a Slurm cluster answers with at least ``nodes`` nodes (and ``gpus`` GPUs each)."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        pytest.skip(f"no Slurm here (sinfo/sbatch not found); {START}")
    try:
        r = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %G"], capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired:
        pytest.skip(f"the Slurm cluster does not answer (sinfo timed out); {START}")
    if r.returncode != 0:
        pytest.skip(f"the Slurm cluster does not answer: {r.stderr.strip()}; {START}")
    rows = {line.split()[0]: line for line in r.stdout.splitlines() if line.strip()}
    if len(rows) < nodes:
        pytest.skip(f"needs {nodes} nodes, the cluster has {len(rows)}; {START}")
    if gpus:
        with_gpus = [n for n, line in rows.items() if re.search(rf"gpu:(\w+:)?{gpus}\b", line)]
        if len(with_gpus) < nodes:
            pytest.skip(f"needs {nodes} nodes with {gpus} GPUs each (sinfo: {r.stdout.strip()!r}); {START}")


def pj_env(**extra: str) -> dict[str, str]:
    """This environment without SLURM_* (a test may itself run inside an allocation), PJ_VENV set;
    SLURM_CONF stays (it names the cluster, not a job: a second local cluster beside the default)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM") or k == "SLURM_CONF"}
    env["PJ_VENV"] = str(VENV)
    env.update(extra)
    return env


@dataclass
class BatchResult:
    job_id: str
    returncode: int  # the batch script's exit code (128+N when killed by signal N)
    state: str
    output: str  # the sbatch output file

    def explain(self) -> str:
        return f"job {self.job_id}: {self.state}, exit code {self.returncode}; its output:\n{self.output}"


def _job_fields(job_id: str) -> dict[str, str]:
    r = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True, timeout=10)
    return dict(f.split("=", 1) for f in r.stdout.split() if "=" in f)


def sbatch_wait(args: Sequence[str], cwd: Path, timeout: float = 60, output: str = "sbatch.out",
                env: dict[str, str] | None = None) -> BatchResult:
    """``sbatch ARGS`` (run in ``cwd``, output in cwd/output), waited for; scancel'ed past ``timeout``."""
    r = subprocess.run(["sbatch", "--parsable", f"--output={output}", *args], cwd=cwd, env=env or pj_env(),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, f"sbatch failed: {r.stderr}"
    job_id = r.stdout.strip().split(";")[0]
    deadline = time.monotonic() + timeout
    fields: dict[str, str] = {}
    while time.monotonic() < deadline:
        fields = _job_fields(job_id)
        if fields.get("JobState") in FINAL_STATES:
            break
        time.sleep(0.25)
    else:
        subprocess.run(["scancel", job_id], timeout=10)
        out = (cwd / output).read_text() if (cwd / output).exists() else ""
        pytest.fail(f"batch job {job_id} did not end within {timeout:g} s (state {fields.get('JobState')}):\n{out}")
    code, _, sig = fields.get("ExitCode", "0:0").partition(":")
    rc = int(code) if int(sig or 0) == 0 else 128 + int(sig)
    for _ in range(20):  # the output file is complete when the job is; on a shared FS give it a moment
        if (cwd / output).exists():
            break
        time.sleep(0.1)
    out = (cwd / output).read_text() if (cwd / output).exists() else ""
    return BatchResult(job_id=job_id, returncode=rc, state=fields["JobState"], output=out)


def salloc_run(args: Sequence[str], command: Sequence[str], cwd: Path, timeout: float = 60,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``salloc ARGS COMMAND`` in ``cwd``; fails the test past ``timeout``."""
    try:
        return subprocess.run(["salloc", *args, *command], cwd=cwd, env=env or pj_env(), capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"salloc {' '.join(args)} did not end within {timeout:g} s: {e.stdout!r} {e.stderr!r}")


def read_report(workdir: Path) -> dict[str, dict[str, Any]]:
    """DIR/jobs.jsonl: one record per job and per iteration, by name ("job", "job:3")."""
    lines = (workdir / "jobs.jsonl").read_text().splitlines()
    return {r["name"]: r for r in map(json.loads, lines)}


def write_jobs(path: Path, jobs: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps({"jobs": jobs}))
    return path


@pytest.fixture(scope="session")
def slurm_tools() -> SimpleNamespace:
    return SimpleNamespace(
        need_cluster=need_cluster, pj_env=pj_env, sbatch_wait=sbatch_wait, salloc_run=salloc_run,
        read_report=read_report, write_jobs=write_jobs, template=SBATCH_TEMPLATE, repo=REPO,
    )
