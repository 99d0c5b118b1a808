"""`pj run` in Slurm mode on a real cluster (shared/slurm/local-cluster up 4 4 2): the sbatch
template end to end, `pj run` under salloc, a task's own srun, GPUs, and the srun model.

What a user would check: the batch job's exit code, the report (DIR/jobs.jsonl), and what the
tasks themselves saw (their node from SLURMD_NODENAME, inherited from the agent of that node, their
CPU affinity, CUDA_VISIBLE_DEVICES, PJ_*). Allocations are kept small: the cluster is shared.
"""

from __future__ import annotations

import re
from itertools import combinations
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(120)]

# Each task tells where it ran and what it saw; it lasts a moment so that tasks overlap.
SHOW = "echo node=$SLURMD_NODENAME; grep Cpus_allowed_list /proc/self/status; env | grep '^PJ_' | sort; sleep 0.4"


def seen(path: Path) -> dict[str, str]:
    """A task's output (``key=value`` and ``Key:\\tvalue`` lines) as a dict."""
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=") if "=" in line.split(":")[0] else line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


def test_the_sbatch_template_runs_a_campaign_on_every_node(tmp_path: Path, slurm_tools: SimpleNamespace) -> None:
    t = slurm_tools
    t.need_cluster(nodes=4)
    jobs = t.write_jobs(tmp_path / "c.json", [{"name": "t", "script": SHOW, "iterations": 40, "stdout": "t-${it}.out"}])
    res = t.sbatch_wait(["-N4", "--exclusive", "--time=2", str(t.template), str(jobs), "--workdir", "W"],
                        cwd=tmp_path, timeout=90)
    assert res.returncode == 0, res.explain()
    assert "pj run finished: 1 job: SUCCEED 1" in res.output, res.explain()
    assert f"Slurm job {res.job_id}: 4 nodes n[1-4]" in res.output
    report = t.read_report(tmp_path / "W")
    tasks = [report[f"t:{i}"] for i in range(40)]
    assert all(r["state"] == "SUCCEED" for r in tasks), [r for r in tasks if r["state"] != "SUCCEED"]
    nodes = set()
    for i, rec in enumerate(tasks):
        got = seen(tmp_path / f"t-{i}.out")
        nodes.add(got["node"])
        assert rec["nodes"] == [got["node"]] == [got["PJ_NODES"]]  # the report and the task agree
        assert got["PJ_NCORES"] == "1" and got["PJ_JOB"] == "t" and got["PJ_ITERATION"] == str(i)
        assert re.fullmatch(r"\d+", got["Cpus_allowed_list"]), f"t:{i} may run on {got['Cpus_allowed_list']}"
    assert nodes == {"n1", "n2", "n3", "n4"}
    assert sorted(p.name for p in (tmp_path / "W").glob("agent-*.log")) == [f"agent-n{i}.log" for i in range(1, 5)]


def test_a_failing_job_fails_the_batch_job(tmp_path: Path, slurm_tools: SimpleNamespace) -> None:
    t = slurm_tools
    t.need_cluster(nodes=1)
    jobs = t.write_jobs(tmp_path / "c.json", [
        {"name": "ok", "exec": "/bin/true"},
        {"name": "bad", "script": "exit 3"},
    ])
    res = t.sbatch_wait(["-N1", "--time=2", str(t.template), str(jobs), "--workdir", "W"], cwd=tmp_path, timeout=60)
    assert res.returncode == 1, res.explain()
    assert "FAILED 1" in res.output and "bad" in res.output
    report = t.read_report(tmp_path / "W")
    assert report["ok"]["state"] == "SUCCEED" and report["bad"]["state"] == "FAILED"
    assert report["bad"]["exit_code"] == 3


def test_the_template_refuses_local_options(tmp_path: Path, slurm_tools: SimpleNamespace) -> None:
    t = slurm_tools
    t.need_cluster(nodes=1)
    jobs = t.write_jobs(tmp_path / "c.json", [{"name": "ok", "exec": "/bin/true"}])
    res = t.sbatch_wait(["-N1", "--time=2", str(t.template), str(jobs), "--nodes", "4"], cwd=tmp_path, timeout=60)
    assert res.returncode == 2, res.explain()
    assert "pj: --nodes 4: only for local mode" in res.output and "--local" in res.output


# ---------------------------------------------------------------- under salloc: one allocation, three checks


@pytest.fixture(scope="module")
def salloc_campaign(tmp_path_factory: pytest.TempPathFactory, slurm_tools: SimpleNamespace) -> dict[str, Any]:
    """`salloc -N2 --exclusive pj run FILE`: one-core tasks, a task that calls srun itself on 2 cores,
    and a 2-node job with the srun model."""
    t = slurm_tools
    t.need_cluster(nodes=2)
    d = tmp_path_factory.mktemp("salloc")
    jobs = t.write_jobs(d / "c.json", [
        {"name": "t", "script": SHOW, "iterations": 12, "stdout": "t-${it}.out"},
        {"name": "inner", "script": "srun printenv SLURMD_NODENAME SLURM_STEP_NUM_TASKS", "cores": 2,
         "stdout": "inner.out", "stderr": "inner.err"},
        {"name": "mpi", "exec": "printenv", "args": ["SLURMD_NODENAME"], "nodes": 2, "cores": 2, "model": "srun",
         "stdout": "mpi.out", "stderr": "mpi.err"},
    ])
    pj = str(Path(t.pj_env()["PJ_VENV"]) / "bin" / "pj")
    r = t.salloc_run(["-N2", "--exclusive", "--time=2"], [pj, "run", str(jobs), "--workdir", "W", "--quiet"],
                     cwd=d, timeout=90)
    return {"dir": d, "run": r, "report": t.read_report(d / "W") if (d / "W" / "jobs.jsonl").exists() else {}}


def test_pj_run_under_salloc_uses_both_nodes(salloc_campaign: dict[str, Any]) -> None:
    r, d, report = salloc_campaign["run"], salloc_campaign["dir"], salloc_campaign["report"]
    assert r.returncode == 0, r.stdout + r.stderr
    assert "pj run finished: 3 jobs: SUCCEED 3" in r.stdout
    nodes = set()
    for i in range(12):
        got = seen(d / f"t-{i}.out")
        assert report[f"t:{i}"]["nodes"] == [got["node"]]
        assert re.fullmatch(r"\d+", got["Cpus_allowed_list"])
        nodes.add(got["node"])
    assert len(nodes) == 2 and nodes <= {"n1", "n2", "n3", "n4"}


def test_a_task_srun_runs_its_step_on_its_own_node(salloc_campaign: dict[str, Any]) -> None:
    d, report = salloc_campaign["dir"], salloc_campaign["report"]
    rec = report["inner"]
    assert rec["state"] == "SUCCEED", (rec, (d / "inner.err").read_text())
    lines = (d / "inner.out").read_text().split()
    # printenv prints its two values once per rank: the task's node, and 2 ranks in the step.
    assert sorted(lines) == sorted([rec["nodes"][0], "2"] * 2), lines


def test_the_srun_model_runs_two_ranks_on_each_of_two_nodes(salloc_campaign: dict[str, Any]) -> None:
    d, report = salloc_campaign["dir"], salloc_campaign["report"]
    rec = report["mpi"]
    assert rec["state"] == "SUCCEED", (rec, (d / "mpi.err").read_text())
    lines = (d / "mpi.out").read_text().split()
    assert len(lines) == 4 and len(set(lines)) == 2, lines
    assert all(lines.count(n) == 2 for n in set(lines)) and sorted(set(lines)) == sorted(rec["nodes"])


# ---------------------------------------------------------------- GPUs


def test_each_gpu_task_sees_its_own_gpu(tmp_path: Path, slurm_tools: SimpleNamespace) -> None:
    t = slurm_tools
    t.need_cluster(nodes=2, gpus=2)
    jobs = t.write_jobs(tmp_path / "c.json", [{
        "name": "g", "iterations": 12, "gpus": 1, "stdout": "g-${it}.out",
        "script": "echo node=$SLURMD_NODENAME; echo cuda=$CUDA_VISIBLE_DEVICES; sleep 0.5",
    }])
    res = t.sbatch_wait(["-N2", "--exclusive", "--gres=gpu:2", "--time=2", str(t.template), str(jobs),
                         "--workdir", "W"], cwd=tmp_path, timeout=90)
    assert res.returncode == 0, res.explain()
    report = t.read_report(tmp_path / "W")
    spans = []
    for i in range(12):
        rec, got = report[f"g:{i}"], seen(tmp_path / f"g-{i}.out")
        assert got["cuda"] in ("0", "1"), got
        assert rec["nodes"] == [got["node"]] and rec["gpus"] == {got["node"]: [got["cuda"]]}
        spans.append((got["node"], got["cuda"], rec["times"]["EXECUTING"], rec["times"]["SUCCEED"]))
    for (n1, g1, s1, e1), (n2, g2, s2, e2) in combinations(spans, 2):
        if n1 == n2 and s1 < e2 and s2 < e1:  # ran at the same time on one node
            assert g1 != g2, (spans, "two concurrent tasks shared a GPU")
    assert len({s[0] for s in spans}) == 2  # both nodes' GPUs were used


def test_agents_that_cannot_start_end_the_run_with_srun_s_words(tmp_path: Path, slurm_tools: SimpleNamespace) -> None:
    t = slurm_tools
    t.need_cluster(nodes=1)
    jobs = t.write_jobs(tmp_path / "c.json", [{"name": "ok", "exec": "/bin/true"}])
    res = t.sbatch_wait(["-N1", "--time=2", str(t.template), str(jobs), "--workdir", "W"], cwd=tmp_path, timeout=60,
                        env=t.pj_env(PJ_SRUN_ARGS="--no-such-option"))
    assert res.returncode == 1, res.explain()
    assert f"the agents' srun (a step of Slurm job {res.job_id}) exited with code" in res.output, res.explain()
    assert "no-such-option" in res.output  # srun's own complaint, from W/srun.log


def test_a_node_that_never_registers_is_a_warning_and_the_run_goes_on(tmp_path: Path,
                                                                      slurm_tools: SimpleNamespace) -> None:
    t = slurm_tools
    t.need_cluster(nodes=2)
    jobs = t.write_jobs(tmp_path / "c.json", [{"name": "ok", "exec": "/bin/sleep", "args": ["2.5"]}])
    # The agents' srun told (after PJ's own options) to start one agent only: the second node never comes.
    res = t.sbatch_wait(["-N2", "--time=2", str(t.template), str(jobs), "--workdir", "W", "--node-timeout", "1"],
                        cwd=tmp_path, timeout=60, env=t.pj_env(PJ_SRUN_ARGS="--nodes=1 --ntasks=1"))
    assert res.returncode == 0, res.explain()
    warning = re.search(r"^pj: warning: node\(s\) (\S+) did not register within 1 s\b.*$", res.output, re.M)
    assert warning, res.explain()
    assert t.read_report(tmp_path / "W")["ok"]["state"] == "SUCCEED"


# ---------------------------------------------------------------- relays (issue 16)


def test_relays_carry_the_agents_streams_of_their_group(tmp_path: Path, slurm_tools: SimpleNamespace) -> None:
    """`pj run --relays 2` over 4 nodes: a pj-relay on n1 and on n3, each carrying two agents'
    streams; the master holds two streams, every agent joined through its group's relay, and the
    campaign runs on all four nodes."""
    t = slurm_tools
    t.need_cluster(nodes=4)
    jobs = t.write_jobs(tmp_path / "c.json", [{"name": "t", "script": SHOW, "iterations": 16,
                                               "stdout": "t-${it}.out"}])
    pj = str(Path(t.pj_env()["PJ_VENV"]) / "bin" / "pj")
    r = t.salloc_run(["-N4", "--exclusive", "--time=2"],
                     [pj, "run", str(jobs), "--workdir", "W", "--quiet", "--relays", "2"], cwd=tmp_path, timeout=100)
    wd = tmp_path / "W"
    assert r.returncode == 0, r.stdout + r.stderr
    assert "pj run finished: 1 job: SUCCEED 1" in r.stdout
    log = (wd / "master.log").read_text()
    assert log.count("relay connected") == 2 and log.count("agent joined") == 4, log[-3000:]
    addrs = {i: (wd / "relays" / f"relay-{i}.addr").read_text().strip() for i in (0, 1)}
    assert addrs[0] != addrs[1]
    for k, node in enumerate(sorted(p.name[len("agent-"):-len(".log")] for p in wd.glob("agent-*.log"))):
        starting = [line for line in (wd / f"agent-{node}.log").read_text().splitlines() if "agent starting" in line]
        assert starting and addrs[k // 2] in starting[0], starting  # nodes 0, 1 dial relay 0; 2, 3 relay 1
    report = t.read_report(wd)
    assert {report[f"t:{i}"]["nodes"][0] for i in range(16)} == {"n1", "n2", "n3", "n4"}
