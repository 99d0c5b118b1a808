"""QCG-PilotJob batch files (a JSON array of submit requests) run by real `pj run`: where QCG-PilotJob
carries on, PJ does too (module/venv prefix), iteration schedulers, relative paths under --workdir."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def pj_run(cwd: Path, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """`pj run ARGS` in local mode (no SLURM_* variables: the suite may run in an allocation)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SLURM")}
    return subprocess.run([str(Path(sys.executable).parent / "pj"), "run", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=timeout, env=clean)


def report(workdir: Path) -> dict[str, dict]:
    return {r["name"]: r for r in map(json.loads, (workdir / "jobs.jsonl").read_text().splitlines())}


def write(path: Path, obj: object) -> Path:
    path.write_text(json.dumps(obj))
    return path


def qcg(*jobs: dict) -> list[dict]:
    return [{"request": "submit", "jobs": list(jobs)}, {"request": "control", "command": "finishAfterAllTasksDone"}]


def test_a_missing_venv_or_module_does_not_stop_an_exec_job_its_exit_code_decides(tmp_path: Path) -> None:
    f = write(tmp_path / "q.json", qcg(
        {"name": "venv", "execution": {"exec": "/bin/sh", "args": ["-c", "echo ran > venv.txt"],
                                       "venv": "/nonexistent/venv", "wd": str(tmp_path)}},
        {"name": "module", "execution": {"exec": "/bin/sh", "args": ["-c", "echo ran > module.txt; exit 3"],
                                         "modules": ["no-such-module"], "wd": str(tmp_path)}},
        {"name": "script", "execution": {"script": "echo ran > script.txt", "modules": ["no-such-module"],
                                         "venv": "novenv", "wd": str(tmp_path)}},
    ))
    r = pj_run(tmp_path, str(f), "--workdir", "wd", "--cores", "2", "--quiet")
    assert r.returncode == 1, r.stdout + r.stderr  # `module` exits 3: the run reports it
    rep = report(tmp_path / "wd")
    assert rep["venv"]["state"] == "SUCCEED" and (tmp_path / "venv.txt").read_text() == "ran\n"
    assert rep["module"]["state"] == "FAILED" and rep["module"]["exit_code"] == 3
    assert (tmp_path / "module.txt").read_text() == "ran\n"
    assert rep["script"]["state"] == "SUCCEED" and (tmp_path / "script.txt").read_text() == "ran\n"


def test_relative_wd_and_stdio_of_a_qcg_file_resolve_under_workdir_as_under_qcg_wd(tmp_path: Path) -> None:
    jobs = qcg(
        {"name": "plain", "execution": {"exec": "/bin/sh", "args": ["-c", "pwd"], "stdout": "plain.out"}},
        {"name": "sub", "iteration": {"stop": 2},
         "execution": {"exec": "/bin/sh", "args": ["-c", "pwd; echo ${it}"], "wd": "case-${it}",
                       "stdout": "out.txt", "stderr": "../err-${it}.txt"}},
    )
    f = write(tmp_path / "q.json", jobs)
    r = pj_run(tmp_path, str(f), "--workdir", "runs/a", "--quiet")
    assert r.returncode == 0, r.stdout + r.stderr
    top = (tmp_path / "runs/a").resolve()
    assert (top / "plain.out").read_text() == f"{top}\n"  # no wd: the workdir itself, like QCG's --wd
    for i in range(2):
        assert (top / f"case-{i}/out.txt").read_text() == f"{top}/case-{i}\n{i}\n"
        assert (top / f"err-{i}.txt").exists()
    assert not (tmp_path / "case-0").exists() and not (tmp_path / "plain.out").exists()
    # Without --workdir: where pj run started (QCG's --wd defaults to its current directory).
    r = pj_run(tmp_path, str(f), "--quiet")
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "plain.out").read_text() == f"{tmp_path.resolve()}\n"
    assert (tmp_path / "case-1/out.txt").read_text() == f"{tmp_path.resolve()}/case-1\n1\n"


def test_a_native_file_with_workdir_keeps_resolving_against_the_start_directory(tmp_path: Path) -> None:
    f = write(tmp_path / "n.json", {"jobs": [{"name": "n", "exec": "/bin/pwd", "wd": "here", "stdout": "o"}]})
    r = pj_run(tmp_path, str(f), "--workdir", "wd", "--quiet")
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "here/o").read_text() == f"{tmp_path.resolve()}/here\n"


def test_iteration_schedulers_size_each_iteration_from_the_run(tmp_path: Path) -> None:
    show = {"exec": "/bin/sh", "args": ["-c", "echo $QCG_PM_NPROCS $QCG_PM_NNODES"], "stdout": "${jname}-${it}.out"}
    f = write(tmp_path / "q.json", qcg(
        {"name": "split", "iteration": {"stop": 4}, "execution": show,
         "resources": {"numCores": {"min": 1, "scheduler": {"name": "split-into", "params": {"parts": 2}}}}},
        {"name": "most", "iteration": {"stop": 4}, "execution": show,
         "resources": {"numCores": {"min": 1, "scheduler": {"name": "maximum-iters"}}}},
        {"name": "wide", "iteration": {"stop": 2}, "execution": {**show, "model": "default"},
         "resources": {"numNodes": {"min": 1, "scheduler": {"name": "split-into"}}, "numCores": 1}},
    ))
    r = pj_run(tmp_path, str(f), "--workdir", "wd", "--nodes", "2", "--cores", "4")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "warning" not in r.stderr, r.stderr  # honoured, not ignored with a warning
    out = {p.name: p.read_text().split() for p in (tmp_path / "wd").glob("*.out")}
    # split-into 2 parts of 8 cores on two 4-core nodes: 4 cores each; maximum-iters, 4 iterations: 2 each.
    assert [out[f"split-{i}.out"] for i in range(4)] == [["4", "1"]] * 4
    assert [out[f"most-{i}.out"] for i in range(4)] == [["2", "1"]] * 4
    # numNodes split-into one part per iteration: 2 iterations, 2 nodes: one node each.
    assert [out[f"wide-{i}.out"] for i in range(2)] == [["1", "1"]] * 2
    rep = report(tmp_path / "wd")
    assert [sum(map(len, rep[f"most:{i}"]["cores"].values())) for i in range(4)] == [2] * 4
