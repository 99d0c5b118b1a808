"""Agents outlive the master: SIGKILL the master mid-campaign, restart it with --resume; the agents
keep their tasks running, reconnect by themselves, and the master adopts what still runs and records
what ended meanwhile. Every task runs exactly once (real master and agent processes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pj.client import Client

from .test_service import eventually

pytestmark = pytest.mark.timeout(60)

RECONNECT = "--reconnect-timeout"


def _agent_reconnects() -> bool:
    out = subprocess.run([sys.executable, "-m", "pj.agent", "--help"], capture_output=True, text=True)
    return RECONNECT in out.stdout


def line_job(name: str, out: Path, sleep: float) -> dict[str, object]:
    """Appends one line (its task id) to out/NAME, then sleeps: the file counts its runs."""
    script = f"echo $PJ_TASK_ID >> {out / name}; sleep {sleep}"
    return {"name": name, "exec": "/bin/sh", "args": ["-c", script]}



@pytest.mark.skipif(not _agent_reconnects(), reason=f"pj.agent has no {RECONNECT} option yet")
def test_a_killed_master_resumes_and_adopts_what_the_agents_still_run(cluster_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    c = cluster_factory(nodes=0, expect_nodes=2)
    agents = [c.add_agent(f"node{i}", 4, RECONNECT, "30") for i in range(2)]
    out = tmp_path / "out"
    out.mkdir()
    slow = [line_job(f"s{i}", out, 3) for i in range(6)]
    quick = [line_job(f"q{i:02d}", out, 0.2) for i in range(20)]
    names = [str(j["name"]) for j in [*slow, *quick]]
    with Client(c.workdir) as cl:
        eventually(lambda: sum(n.online for n in cl.resources().nodes) == 2, what="2 agents")
        cl.submit(slow + quick)  # the slow ones first: they hold 6 of the 8 cores for 3 s
        eventually(lambda: len(list(cl.list(["EXECUTING"]))) >= 6 and len(list(cl.list(["SUCCEED"]))) >= 2,
                 what="the slow jobs running, some quick ones done")
    c.kill_master()  # SIGKILL: no report, no goodbye; the agents keep their tasks running
    assert all(a.poll() is None for a in agents), "an agent did not outlive the master"

    c.resume_master()
    with Client(c.workdir) as cl:
        states = cl.wait(timeout=30)
        cl.finish()
    assert c.master.wait(30) == 0
    assert states == {n: "SUCCEED" for n in names}
    for name in names:
        lines = (out / name).read_text().splitlines()
        assert len(lines) == 1, f"{name} ran {len(lines)} times: task ids {lines}"
    report = [json.loads(line) for line in (c.workdir / "jobs.jsonl").read_text().splitlines()]
    assert sorted(r["name"] for r in report) == sorted(names)
    assert all(r["state"] == "SUCCEED" for r in report)
    log = (c.workdir / "master-resumed.log").read_text()
    assert "agent refused" not in log
    for a in agents:  # told to stop by the resumed master at the end
        assert a.wait(15) == 0
