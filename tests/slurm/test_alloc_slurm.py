"""Allocations on demand (`pj alloc`) on a real Slurm cluster (shared/slurm/local-cluster up 4 4 2): a
pj-master in service mode outside any allocation asks Slurm for allocations as work waits, each
running one srun of agents that join it; idle ones are released; a refused sbatch is reported and
backs off; a campaign longer than one allocation's time limit runs to its end over several."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(120)]

BIN = Path(sys.executable).parent
PJ, MASTER = str(BIN / "pj"), str(BIN / "pj-master")


def eventually(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``check`` until it returns something true (a bound on hanging, no timing asserted)."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.5)


class Service:
    """A pj-master in service mode (no allocation around it) and the `pj` commands a user types."""

    def __init__(self, wd: Path, env: dict[str, str]) -> None:
        self.wd, self.env = wd, env

    def pj(self, *args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        r = subprocess.run([PJ, *args[:2], "--workdir", str(self.wd), *args[2:]] if args[0] == "alloc" else
                           [PJ, args[0], "--workdir", str(self.wd), *args[1:]],
                           env=self.env, capture_output=True, text=True, timeout=timeout)
        if check:
            assert r.returncode == 0, f"pj {' '.join(args)}: rc={r.returncode}\n{r.stdout}\n{r.stderr}"
        return r

    def json(self, *args: str) -> Any:
        return json.loads(self.pj(*args, "--json").stdout)

    def allocs(self) -> list[dict[str, Any]]:
        return list(self.json("alloc", "list")["allocations"])


@pytest.fixture
def service(tmp_path: Path, slurm_tools: Any) -> Iterator[Service]:
    slurm_tools.need_cluster(nodes=2)
    wd = tmp_path / "campaign"
    env = slurm_tools.pj_env()
    log = (tmp_path / "master.log").open("w")
    proc = subprocess.Popen([MASTER, "--workdir", str(wd), "--listen", "127.0.0.1:0"], env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    s = Service(wd, env)
    job_ids: list[str] = []
    try:
        eventually(lambda: (wd / "master.json").exists(), 20, "master.json")
        yield s
        job_ids = [a["job_id"] for a in s.allocs() if a["job_id"]]
        s.pj("finish", "--cancel")
        proc.wait(timeout=30)  # it cancels its live allocations as it stops
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
        if job_ids:
            subprocess.run(["scancel", *job_ids], env=env, capture_output=True, timeout=10)


def follows_schema(doc: Any, kind: str) -> None:
    import jsonschema

    schema = json.loads((Path(__file__).parents[2] / "common" / "schemas" / "cli-output.v1.schema.json").read_text())
    jsonschema.validate(doc, {**schema, "$ref": f"#/$defs/{kind}"})


def slurm_state(job_id: str, env: dict[str, str]) -> str:
    r = subprocess.run(["scontrol", "-o", "show", "job", job_id], env=env, capture_output=True, text=True, timeout=10)
    fields = dict(f.split("=", 1) for f in r.stdout.split() if "=" in f)
    return fields.get("JobState", "")


def test_two_allocations_share_the_work_and_idle_ones_are_released(service: Service) -> None:
    out = service.pj("alloc", "add", "--nodes", "1", "--time", "2", "--max-allocations", "2",
                     "--idle-timeout", "3").stdout
    assert "alloc queue 1" in out
    service.pj("submit", "--name", "spread", "--iterations", "24", "--", "sleep", "2")
    eventually(lambda: sum(a["state"] == "RUNNING" for a in service.allocs()) == 2, 60, "two allocations running")
    service.pj("wait", "--timeout", "60")
    (info,) = service.json("info", "spread", "--tasks")
    nodes = {share["node"] for t in info["tasks"] for share in t["shares"]}
    assert len(nodes) == 2, f"tasks ran on {nodes}, not spread over both allocations"
    # Nothing waits: both allocations' agents leave after 3 s idle, and Slurm ends their jobs.
    allocs = eventually(lambda: (a := service.allocs()) and all(x["state"] == "ENDED" for x in a) and a, 40,
                        "both allocations ended")
    assert len(allocs) == 2
    assert {a["why"] for a in allocs} == {"idle: released"}
    for a in allocs:
        eventually(lambda a=a: slurm_state(a["job_id"], service.env) == "COMPLETED", 20, f"job {a['job_id']} ended")
    follows_schema(service.json("alloc", "list"), "alloc_list")
    script = (service.wd / "allocs" / "1" / "alloc.sbatch").read_text()
    assert script.count("srun ") == 1 and "-m pj.agent --workdir" in script


def test_walltime_longer_than_every_allocation_waits_with_its_reason(service: Service) -> None:
    service.pj("alloc", "add", "--nodes", "1", "--time", "2", "--max-allocations", "3", "--idle-timeout", "60")
    service.pj("submit", "--name", "short", "--walltime", "60s", "--", "sleep", "30")
    eventually(lambda: any(a["state"] == "RUNNING" for a in service.allocs()), 60, "an allocation running")
    service.pj("submit", "--name", "long", "--walltime", "1h", "--", "true")
    reason = eventually(
        lambda: next((j["reason"] for j in service.json("list") if j["name"] == "long" and "outlasts" in j["reason"]),
                     ""), 20, "the long job's reason")
    assert "walltime" in reason
    time.sleep(5)  # a few of the master's rounds: the long job asks for no allocation
    (job,) = [j for j in service.json("list") if j["name"] == "long"]
    assert job["state"] == "QUEUED"
    assert len(service.allocs()) == 1


def test_a_refused_sbatch_is_reported_and_backs_off(service: Service) -> None:
    service.pj("alloc", "add", "--nodes", "1", "--time", "2", "--partition", "nosuch")
    service.pj("submit", "--name", "stuck", "--", "true")
    refused = eventually(lambda: [a for a in service.allocs() if a["state"] == "REFUSED"], 20, "a refusal")
    assert "invalid partition" in refused[0]["why"].lower()
    follows_schema(service.json("status"), "status")
    status = service.pj("status").stdout
    assert "alloc   alloc queue 1: allocation 1: sbatch refused it" in status
    assert "backing off" in status or "tries again" in status
    listed = service.pj("alloc", "list").stdout
    assert "REFUSED" in listed and "nosuch" in listed
    time.sleep(8)  # backoff 5 s then 10 s: two or three tries so far, never a loop
    assert 2 <= len(service.allocs()) <= 3
    assert service.json("list")[0]["state"] == "QUEUED"


def test_bad_alloc_options_are_one_line_naming_the_option(service: Service) -> None:
    r = service.pj("alloc", "add", "--nodes", "1", "--time", "soon", check=False)
    assert r.returncode == 2 and r.stderr.startswith("pj: --time:") and r.stderr.count("\n") == 1
    r = service.pj("alloc", "remove", "7", check=False)
    assert r.returncode != 0 and "no alloc queue 7" in r.stderr
    assert service.json("alloc", "list") == {"queues": [], "allocations": []}


@pytest.mark.timeout(200)
def test_a_campaign_longer_than_one_allocation_runs_to_its_end(service: Service) -> None:
    # 24 tasks of 10 s (walltime 15 s) on one 4-core node: one 1-minute allocation holds five waves of
    # four at most (a task starts only if its walltime ends before the allocation), so the campaign
    # needs a second allocation, asked for once the first can run nothing more (max one at a time).
    service.pj("alloc", "add", "--nodes", "1", "--time", "1", "--max-allocations", "1", "--idle-timeout", "2")
    service.pj("submit", "--name", "long-campaign", "--iterations", "24", "--walltime", "15s", "--", "sleep", "10")
    service.pj("wait", "--timeout", "170", timeout=180)
    allocs = service.allocs()
    joined = [a for a in allocs if a["started_at"] and a["state"] in ("ENDED", "RUNNING", "RELEASING")]
    assert len(joined) >= 2, allocs
    (info,) = service.json("info", "long-campaign", "--tasks")
    assert info["summary"]["iterations_done"] == 24
    assert all(t["state"] == "SUCCEED" for t in info["tasks"])
    assert len(info["tasks"]) == 24  # no task ran twice: none was cut short by an allocation's end
