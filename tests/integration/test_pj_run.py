"""`pj run`: whole campaigns in local mode, with a real master, real agents and real processes."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parents[2]


def pj_run(cwd: Path, *args: str, timeout: float = 90, env: dict[str, str] | None = None
           ) -> subprocess.CompletedProcess[str]:
    """`pj run ARGS` in local mode: no SLURM_* variables (the suite may itself run in an allocation)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SLURM")}
    return subprocess.run(
        [str(Path(sys.executable).parent / "pj"), "run", *args],
        cwd=cwd, capture_output=True, text=True, timeout=timeout, env={**clean, **(env or {})},
    )


def report(workdir: Path) -> dict[str, dict]:
    lines = (workdir / "jobs.jsonl").read_text().splitlines()
    return {r["name"]: r for r in map(json.loads, lines)}


def write(path: Path, obj: object) -> Path:
    path.write_text(json.dumps(obj))
    return path


def test_example_campaign_runs_to_success(tmp_path: Path) -> None:
    r = pj_run(tmp_path, str(REPO / "examples" / "campaign.json"), "--workdir", "wd", "--quiet")
    assert r.returncode == 0, r.stdout + r.stderr
    rep = report(tmp_path / "wd")
    assert all(rec["state"] == "SUCCEED" for rec in rep.values()), rep
    assert "SUCCEED" in r.stdout


def test_native_file_paths_env_iterations_and_dependencies(tmp_path: Path) -> None:
    (tmp_path / "tool.sh").write_text('#!/bin/sh\necho "$1 $PJ_JOB $PJ_ITERATION $PJ_NCORES $QCG_PM_NPROCS $MYVAR"\n')
    (tmp_path / "tool.sh").chmod(0o755)
    f = write(tmp_path / "c.json", {"jobs": [
        {"name": "prep", "script": "echo ready > prep.txt", "wd": "data"},
        {"name": "sim", "exec": "./tool.sh", "args": ["case-${it}"], "iterations": 3, "after": ["prep"],
         "wd": "data/sim-${it}", "stdout": "out.txt", "env": {"MYVAR": "v${it}"}, "cores": {"min": 1, "max": 1}},
        {"name": "post", "script": "cat ../prep.txt > got-${it}.txt", "iterations": 3, "after": ["sim:${it}"],
         "wd": "data/sim-${it}"},
    ]})
    r = pj_run(tmp_path, str(f), "--workdir", "wd", "--cores", "2", "--quiet")
    assert r.returncode == 0, r.stdout + r.stderr
    for i in range(3):
        assert (tmp_path / f"data/sim-{i}/out.txt").read_text() == f"case-{i} sim {i} 1 1 v{i}\n"
        assert (tmp_path / f"data/sim-{i}/got-{i}.txt").read_text() == "ready\n"
    rep = report(tmp_path / "wd")
    assert rep["sim"]["state"] == "SUCCEED" and rep["sim"]["iterations"] == 3
    assert rep["sim:2"]["exit_code"] == 0 and rep["sim:2"]["nodes"] == ["node0"]
    times = rep["post:1"]["times"]
    assert times["QUEUED"] <= times["SCHEDULED"] <= times["EXECUTING"] <= times["SUCCEED"]
    assert rep["post:1"]["times"]["SCHEDULED"] >= rep["sim:1"]["times"]["SUCCEED"]


def test_qcg_batch_file_runs_unchanged(tmp_path: Path) -> None:
    f = write(tmp_path / "qcg.json", [
        {"request": "submit", "jobs": [
            {"name": "gen", "iteration": {"start": 0, "stop": 4},
             "execution": {"exec": "/bin/sh", "args": ["-c", "echo ${it} > gen-${it}.txt"]},
             "resources": {"numCores": {"exact": 1}}},
            {"name": "sum", "execution": {"script": "cat gen-*.txt | wc -l > total.txt", "stdout": "sum.out"},
             "resources": {"numCores": {"min": 1, "max": 2}}, "dependencies": {"after": ["gen"]}},
        ]},
        {"request": "control", "command": "finishAfterAllTasksDone"},
    ])
    r = pj_run(tmp_path, str(f), "--workdir", "wd", "--quiet")
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "wd" / "total.txt").read_text().strip() == "4"  # QCG: relative to its --wd
    assert report(tmp_path / "wd")["gen:3"]["state"] == "SUCCEED"


def test_failures_are_reported_and_dependents_omitted(tmp_path: Path) -> None:
    f = write(tmp_path / "c.json", {"jobs": [
        {"name": "bad", "exec": "/bin/sh", "args": ["-c", "exit 3"]},
        {"name": "next", "exec": "/bin/true", "after": ["bad"]},
        {"name": "missing", "exec": "./does-not-exist"},
        {"name": "huge", "exec": "/bin/true", "cores": 64},
        {"name": "ok", "exec": "/bin/true"},
    ]})
    r = pj_run(tmp_path, str(f), "--workdir", "wd", "--cores", "2", "--quiet")
    assert r.returncode == 1
    rep = report(tmp_path / "wd")
    assert rep["bad"]["state"] == "FAILED" and rep["bad"]["exit_code"] == 3
    assert rep["next"]["state"] == "OMITTED"
    assert rep["missing"]["state"] == "FAILED" and "does-not-exist" in rep["missing"]["reason"]
    assert rep["huge"]["state"] == "FAILED" and "never fit" in rep["huge"]["reason"]
    assert rep["ok"]["state"] == "SUCCEED"
    assert "never fit" in r.stdout and "exit code 3" in r.stdout


@pytest.mark.parametrize("content, words", [
    ("{not json", ["line 1"]),
    ('{"jobs": [{"name": "a"}]}', ["'a'", "exec"]),
    ('{"jobs": [{"name": "a", "exec": "x"}, {"name": "a", "exec": "y"}]}', ["'a'", "name"]),
    ('{"jobs": [{"name": "a", "exec": "x", "after": ["zz"]}]}', ["'a'", "after", "zz"]),
    ('{"jobs": [{"name": "a", "exec": "x", "after": ["b"]}, {"name": "b", "exec": "x", "after": ["a"]}]}',
     ["cycle"]),
    ('{"jobs": [{"name": "a", "exec": "x", "cores": -2}]}', ["'a'", "cores"]),
    ('{"jobs": [{"name": "a", "exec": "x", "iterations": 100000000000}]}', ["'a'", "iterations"]),
])
def test_bad_input_is_refused_in_one_line_and_runs_nothing(tmp_path: Path, content: str, words: list[str]) -> None:
    f = tmp_path / "bad.json"
    f.write_text(content)
    r = pj_run(tmp_path, str(f), "--workdir", "wd", "--quiet")
    assert r.returncode == 2
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, err
    # The master and agent started while the file was read are stopped, and their workdir is gone.
    assert not (tmp_path / "wd").exists()
    leftovers = [p.info["pid"] for p in psutil.process_iter(["pid", "cmdline"])
                 if str(tmp_path / "wd") in " ".join(p.info["cmdline"] or ())]
    assert leftovers == []


def test_bad_input_in_an_existing_workdir_leaves_it_as_it_was(tmp_path: Path) -> None:
    (tmp_path / "wd").mkdir()
    (tmp_path / "wd" / "notes.txt").write_text("mine\n")
    f = tmp_path / "bad.json"
    f.write_text("{not json")
    r = pj_run(tmp_path, str(f), "--workdir", "wd", "--quiet")
    assert r.returncode == 2 and "line 1" in r.stderr
    assert sorted(p.name for p in (tmp_path / "wd").iterdir()) == ["notes.txt"]  # nothing started there


def test_emulated_nodes_spread_tasks_and_place_multi_node_jobs(tmp_path: Path) -> None:
    f = write(tmp_path / "c.json", {"jobs": [
        {"name": "many", "exec": "/bin/sleep", "args": ["0.3"], "iterations": 6},
        {"name": "wide", "exec": "/bin/sh", "args": ["-c", "echo $PJ_NODES $PJ_NNODES $PJ_NCORES"],
         "nodes": 2, "cores": 2, "stdout": "wide.out", "after": ["many"]},
        {"name": "gpu", "script": "echo \"[$CUDA_VISIBLE_DEVICES]\" $ROCR_VISIBLE_DEVICES $HIP_VISIBLE_DEVICES "
         "$ZE_AFFINITY_MASK", "gpus": 1, "stdout": "gpu.out"},
    ]})
    r = pj_run(tmp_path, str(f), "--workdir", "wd", "--nodes", "3", "--cores", "2", "--gpus", "2", "--quiet")
    assert r.returncode == 0, r.stdout + r.stderr
    rep = report(tmp_path / "wd")
    used = {rep[f"many:{i}"]["nodes"][0] for i in range(6)}
    assert used == {"node0", "node1", "node2"}
    nodes, nnodes, ncores = (tmp_path / "wide.out").read_text().split()
    assert nnodes == "2" and ncores == "4" and len(nodes.split(",")) == 2
    assert (tmp_path / "gpu.out").read_text().strip() in ("[0] 0 0 0", "[1] 1 0 1")


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to see binding")
def test_one_core_task_is_bound_to_one_cpu(tmp_path: Path) -> None:
    f = write(tmp_path / "c.json", {"jobs": [
        {"name": "aff", "exec": sys.executable, "args": ["-c", "import os; print(len(os.sched_getaffinity(0)))"],
         "stdout": "aff.out"},
    ]})
    r = pj_run(tmp_path, str(f), "--workdir", "wd", "--quiet")
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "aff.out").read_text().strip() == "1"


def test_node_options_reach_the_master_and_local_works_inside_an_allocation(tmp_path: Path) -> None:
    f = write(tmp_path / "c.json", {"jobs": [{"name": "a", "script": "echo $PJ_NODES", "stdout": "a.out"}]})
    fake_allocation = {"SLURM_JOB_ID": "999999", "SLURM_JOB_NODELIST": "nx[1-2]"}
    r = pj_run(tmp_path, str(f), "--local", "--nodes", "2", "--node-timeout", "30", "--missing-nodes", "fail",
               "--workdir", "wd", "--quiet", env=fake_allocation)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "a.out").read_text().strip() in ("node0", "node1")


def test_resume_continues_a_cut_campaign_and_submits_only_new_jobs(tmp_path: Path) -> None:
    import signal
    import time

    out = tmp_path / "out"
    out.mkdir()

    def job(name: str, sleep: float = 0) -> dict[str, object]:
        return {"name": name, "script": f"echo ran >> {out / name}; sleep {sleep}"}

    first = write(tmp_path / "c1.json", {"jobs": [job("a"), job("b", 3)]})
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SLURM")}
    run = subprocess.Popen([str(Path(sys.executable).parent / "pj"), "run", str(first), "--workdir", "wd",
                            "--quiet"], cwd=tmp_path, env=clean, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wd = tmp_path / "wd"
    deadline = time.monotonic() + 30
    while not ((out / "a").exists() and (out / "b").exists()):
        assert time.monotonic() < deadline and run.poll() is None, "the first run did not get going"
        time.sleep(0.05)
    time.sleep(0.3)  # a's end reaches the journal
    os.kill(json.loads((wd / "master.json").read_text())["pid"], signal.SIGKILL)  # the allocation ends
    assert run.wait(60) == 1

    assert pj_run(tmp_path, str(first), "--resume").returncode == 2  # --resume needs --workdir
    grown = write(tmp_path / "c2.json", {"jobs": [job("a"), job("b"), job("c")]})
    r = pj_run(tmp_path, str(grown), "--workdir", "wd", "--resume")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "resumed with 2 jobs journaled, 1 new submitted" in r.stderr, r.stderr
    assert (out / "a").read_text() == "ran\n", "a finished job ran again"
    assert (out / "c").read_text() == "ran\n"
    assert {n: rec["state"] for n, rec in report(wd).items()} == {"a": "SUCCEED", "b": "SUCCEED", "c": "SUCCEED"}


def test_prefetched_tasks_never_share_a_core_and_each_runs_once(tmp_path: Path) -> None:
    jobs: list[dict[str, object]] = [
        {"name": f"s{i}", "exec": "/bin/sleep", "args": [f"0.0{i % 7}"]} for i in range(60)
    ]
    jobs += [{"name": f"two{i}", "exec": "/bin/sleep", "args": ["0.05"], "cores": 2} for i in range(4)]
    jobs += [{"name": f"gpu{i}", "exec": "/bin/sleep", "args": ["0.02"], "gpus": 1} for i in range(6)]
    f = write(tmp_path / "c.json", {"jobs": jobs})
    r = pj_run(tmp_path, str(f), "--workdir", "wd", "--nodes", "2", "--cores", "2", "--gpus", "1", "--quiet")
    assert r.returncode == 0, r.stdout + r.stderr
    rep = report(tmp_path / "wd")
    assert len(rep) == 70 and all(j["state"] == "SUCCEED" for j in rep.values())
    by_core: dict[tuple[str, object], list[tuple[float, float, float]]] = {}
    for j in rep.values():
        t = j["task_times"]
        node = j["nodes"][0]
        for c in j["cores"][node]:
            by_core.setdefault((node, c), []).append((t["EXECUTING"], t["SUCCEED"], t["SCHEDULED"]))
    waited = 0
    for runs in by_core.values():
        runs.sort()
        for (_, end, _), (start, _, placed) in itertools.pairwise(runs):
            assert start >= end  # the next task on a core starts only once the one before has ended
            waited += placed < end  # it was sent to the agent before that core was free
    assert waited > 10  # prefetch did put tasks in line behind running ones
