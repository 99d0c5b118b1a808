"""`pj-master --resume`: a campaign survives a SIGKILLed master (real master and agent processes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pj.client import Client

from .test_service import eventually

pytestmark = pytest.mark.timeout(60)


def line_job(name: str, out: Path, sleep: float = 0, after: list[str] | None = None) -> dict[str, object]:
    """A job that appends one line to out/NAME (then sleeps): the file counts its runs."""
    script = f"echo ran >> {out / name}" + (f"; sleep {sleep}" if sleep else "")
    job: dict[str, object] = {"name": name, "exec": "/bin/sh", "args": ["-c", script]}
    if after:
        job["after"] = after
    return job



def test_a_killed_master_resumes_and_runs_nothing_twice(cluster_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    c = cluster_factory(nodes=1, cores=4)
    out = tmp_path / "out"
    out.mkdir()
    quick = [line_job(f"q{i:02d}", out, 0.1) for i in range(30)]
    slow = [line_job(f"s{i}", out, 2) for i in range(4)]
    last = line_job("last", out, after=[f"s{i}" for i in range(4)])
    with Client(c.workdir) as cl:
        # The slow ones first: they hold every core for 2 s, so the kill lands mid-campaign.
        cl.submit(slow + quick[:15])
        cl.submit([*quick[15:], last])
        eventually(lambda: sum(1 for j in cl.list(["SUCCEED"])) >= 6, what="6 jobs done")
        done_before = {j.name for j in cl.list(["SUCCEED"])}
    c.master.kill()  # SIGKILL: no report, no goodbye
    c.master.wait()
    assert not (c.workdir / "jobs.jsonl").exists()
    agent = c.agents[0]
    agent.terminate()  # it kills its tasks (test_agents_outlive_master.py: agents that do not)
    agent.wait(10)

    (c.workdir / "master.json").unlink()
    refused = subprocess.run([sys.executable, "-m", "pj.master", "--workdir", str(c.workdir)],
                             capture_output=True, text=True, timeout=20)
    assert refused.returncode == 2 and "--resume" in refused.stderr and "journal.db" in refused.stderr

    # The tasks running at the kill wait --node-timeout for their node (node0) to come back with
    # them; it never does (another node joins), so they run again after 2 s.
    c.master = c._spawn([sys.executable, "-m", "pj.master", "--workdir", str(c.workdir), "--resume",
                         "--node-timeout", "2s"], "master-resumed.log")
    eventually(lambda: (c.workdir / "master.json").exists(), what="the resumed master")
    c.add_agent("node1", 4)
    with Client(c.workdir) as cl:
        states = cl.wait(timeout=30)
        cl.finish()
    assert c.master.wait(30) == 0
    names = [str(j["name"]) for j in [*quick, *slow, last]]
    assert states == {n: "SUCCEED" for n in names}
    for name in done_before:
        assert (out / name).read_text().count("ran") == 1, f"{name} ran again after the resume"
    for name in names:
        assert (out / name).read_text().count("ran") >= 1
    report = [json.loads(line) for line in (c.workdir / "jobs.jsonl").read_text().splitlines()]
    assert sorted(r["name"] for r in report) == sorted(names)
    assert all(r["state"] == "SUCCEED" for r in report)
