"""Node loss with real processes: an agent killed (its stream breaks) or stopped (it falls silent past
--heartbeat-timeout) is disconnected, then lost when it has not come back within --heartbeat-timeout,
and its task is retried on another agent, every attempt in jobs.jsonl."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pj.client import Client

pytestmark = pytest.mark.timeout(60)

JOB = {"name": "long", "exec": "/bin/sleep", "args": ["3"], "retries": 1}


def eventually(check: Callable[[], Any], timeout: float = 20, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while not (got := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what or check}")
        time.sleep(0.05)
    return got


def running_on(c: Client, name: str) -> str:
    """The node the job's task runs on, once it runs."""
    def node() -> str:
        (info,) = c.info(name)
        tasks = [t for t in info.tasks if t.state == "EXECUTING" and t.shares]
        return tasks[0].shares[0].node if tasks else ""
    return str(eventually(node, what=f"{name} running"))


def report_line(wd: Path, name: str) -> dict[str, Any]:
    lines = [json.loads(x) for x in (wd / "jobs.jsonl").read_text().splitlines()]
    (line,) = [x for x in lines if x["name"] == name]
    return line


def lose_and_retry(cluster: Any, how: signal.Signals, tmp_path: Path) -> tuple[dict[str, Any], str, str]:
    wd = cluster.workdir
    with Client(wd) as c:
        eventually(lambda: sum(n.online for n in c.resources().nodes) >= 2, what="2 agents")
        c.submit([JOB], base_dir=tmp_path)
        first = running_on(c, "long")
        victim = cluster.agents[int(first.removeprefix("node"))]
        os.kill(victim.pid, how)
        try:
            assert c.wait("long", timeout=30) == {"long": "SUCCEED"}
            c.finish()
            assert cluster.master.wait(30) == 0
        finally:
            if how == signal.SIGSTOP:
                os.kill(victim.pid, signal.SIGKILL)
                victim.wait(10)
    return report_line(wd, "long"), first, (wd / "master.log").read_text()


def test_a_killed_agents_task_is_retried_on_another(cluster_factory: Any, tmp_path: Path) -> None:
    # A broken stream makes the node disconnected, not lost: its agent may come back within
    # --heartbeat-timeout (default 30 s) with its task still running. This one never does.
    cluster = cluster_factory(nodes=2, cores=1, master_args=["--heartbeat-timeout", "1s"])
    line, first, log = lose_and_retry(cluster, signal.SIGKILL, tmp_path)
    assert f"node {first} did not come back within 1 s: lost" in log
    other = "node1" if first == "node0" else "node0"
    assert line["state"] == "SUCCEED" and line["nodes"] == [other]
    a1, a2 = line["attempts"]
    assert a1["state"] == "FAILED" and a1["reason"].startswith(f"node lost: {first}") and a1["nodes"] == [first]
    assert a2["state"] == "SUCCEED" and a2["nodes"] == [other] and a2["exit_code"] == 0


def test_a_silent_agent_is_lost_after_the_heartbeat_timeout(cluster_factory: Any, tmp_path: Path) -> None:
    cluster = cluster_factory(nodes=2, cores=1, master_args=["--heartbeat-timeout", "1s"])
    line, first, log = lose_and_retry(cluster, signal.SIGSTOP, tmp_path)
    assert line["state"] == "SUCCEED" and [a["state"] for a in line["attempts"]] == ["FAILED", "SUCCEED"]
    assert line["attempts"][0]["reason"].startswith(f"node lost: {first}")
    assert f"node {first} lost: its agent said nothing for" in log
