"""A retried job's budget survives a SIGKILLed master (issue 13, item 7): real master and agent processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pj.client import Client

from .test_service import eventually

pytestmark = pytest.mark.timeout(60)


def test_a_resumed_master_continues_the_retry_budget(cluster_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    c = cluster_factory(nodes=0, expect_nodes=1)
    agent = c.add_agent("node0", 1, "--reconnect-timeout", "30")
    runs = tmp_path / "runs"
    # Every attempt writes one line, stays a while (the kill lands during the second), then fails.
    job = {"name": "flaky", "exec": "/bin/sh", "args": ["-c", f"echo $PJ_TASK_ID >> {runs}; sleep 1.5; exit 3"],
           "retries": 2}
    with Client(c.workdir) as cl:
        cl.submit([job])
        eventually(lambda: runs.exists() and len(runs.read_text().splitlines()) == 2,
                   what="the first attempt failed, the second runs")
    c.kill_master()  # SIGKILL, after the first failure was journaled (before the retry's launch went out)
    assert agent.poll() is None

    c.resume_master()
    with Client(c.workdir) as cl:
        states = cl.wait(timeout=40)
        cl.finish()
    assert c.master.wait(30) == 0
    assert states == {"flaky": "FAILED"}
    assert len(runs.read_text().splitlines()) == 3, "3 attempts in all (retries: 2), across the restart"
    (line,) = [json.loads(s) for s in (c.workdir / "jobs.jsonl").read_text().splitlines()]
    assert [a["exit_code"] for a in line["attempts"]] == [3, 3, 3]
    assert [a["state"] for a in line["attempts"]] == ["FAILED"] * 3
    assert all(a["nodes"] == ["node0"] and a["started"] and a["ended"] for a in line["attempts"])
    assert "retry 1 of 2 follows" in line["attempts"][0]["reason"]
    assert "retry 2 of 2 follows" in line["attempts"][1]["reason"]
