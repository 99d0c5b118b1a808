"""An agent killed -9 (as the OOM killer would), with real processes: its tasks die with it (its
watchdog, agent/guard.py), a new agent under the same name stops what is left before it registers,
and the master runs a task again only then: never two copies at once. Launches the dead agent held
(prefetch standbys) are queued again free: no retry used, their dependents run."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from pj.client import Client

from .test_node_loss import eventually

pytestmark = pytest.mark.timeout(90)


class Copies:
    """Counts, every 10 ms, the live processes whose command line holds ``tag``; keeps the most seen."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.most = 0
        self.pids: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def alive(self) -> list[int]:
        out = []
        for p in psutil.process_iter(["cmdline", "status"]):
            try:
                if p.info["status"] != psutil.STATUS_ZOMBIE and self.tag in " ".join(p.info["cmdline"] or ()):
                    out.append(p.pid)
            except psutil.Error:
                continue
        return out

    def _run(self) -> None:
        while not self._stop.is_set():
            now = self.alive()
            self.pids.update(now)
            self.most = max(self.most, len(now))
            time.sleep(0.01)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def job(name: str, out: Path, sleep: float, **kw: Any) -> dict[str, Any]:
    """Appends 'start' to out/NAME, sleeps, appends 'end': the file tells how it ran."""
    f = out / name
    script = f"echo start >> {f}; sleep {sleep}; echo end >> {f} # tag-{name}"
    return {"name": name, "exec": "/bin/sh", "args": ["-c", script], **kw}


def report(wd: Path) -> dict[str, dict[str, Any]]:
    lines = [json.loads(x) for x in (wd / "jobs.jsonl").read_text().splitlines()]
    return {x["name"]: x for x in lines if "iteration" not in x or x.get("iteration") is None}


def test_a_killed_agents_task_dies_with_it_and_runs_again_once_under_its_successor(
        cluster_factory: Any, tmp_path: Path) -> None:
    c = cluster_factory(nodes=0, expect_nodes=1)
    agent = c.add_agent("node0", 1)
    out = tmp_path / "out"
    out.mkdir()
    copies = Copies("tag-long")
    try:
        with Client(c.workdir) as cl:
            eventually(lambda: sum(n.online for n in cl.resources().nodes) == 1, what="the agent")
            cl.submit([job("long", out, 3), job("next", out, 0.1)], base_dir=tmp_path)
            eventually(lambda: copies.alive(), what="the task running")
            (first,) = copies.alive()
            # The master has heard it start (an agent killed before its batched Started went up
            # leaves it SCHEDULED, and the check below could not tell the waiting apart).
            eventually(lambda: cl.info("long")[0].state == "EXECUTING", what="the master to hear the start")
            os.kill(agent.pid, signal.SIGKILL)  # no goodbye, no cleanup of its own
            agent.wait()
            # Its watchdog stops the task (TERM, KILL after --kill-grace) though no agent returns.
            eventually(lambda: not copies.alive(), timeout=15, what="the orphaned task to die")
            assert cl.info("long")[0].state == "EXECUTING"  # the master waits: no second copy yet
            c.add_agent("node0", 1)  # restarted under the same name
            states = cl.wait(timeout=30)
            cl.finish()
        assert c.master.wait(30) == 0
    finally:
        copies.stop()
    assert copies.most == 1, f"{copies.most} copies ran at once"
    assert first in copies.pids and len(copies.pids) >= 2
    assert states == {"long": "SUCCEED", "next": "SUCCEED"}
    assert (out / "long").read_text().split() == ["start", "start", "end"]  # killed once, run again once
    assert (out / "next").read_text().split() == ["start", "end"]
    line = report(c.workdir)["long"]
    (attempt,) = line["attempts"][:-1]
    assert attempt["reason"].startswith("interrupted: its agent on node0 died")


def test_launches_a_dead_agent_held_are_queued_again_free(cluster_factory: Any, tmp_path: Path) -> None:
    c = cluster_factory(nodes=0, expect_nodes=1, master_args=["--heartbeat-timeout", "1s"])
    agent = c.add_agent("node0", 1)
    out = tmp_path / "out"
    out.mkdir()
    jobs = [job("run", out, 30), job("held", out, 0.1), job("after", out, 0.1, after=["held"])]
    with Client(c.workdir) as cl:
        eventually(lambda: sum(n.online for n in cl.resources().nodes) == 1, what="the agent")
        cl.submit(jobs, base_dir=tmp_path)
        eventually(lambda: cl.info("run")[0].state == "EXECUTING", what="run")
        assert cl.info("held")[0].state == "SCHEDULED"  # sent ahead, held by the agent for the core
        os.kill(agent.pid, signal.SIGKILL)
        agent.wait()
        eventually(lambda: cl.info("run")[0].state == "FAILED", what="node0 lost")
        assert cl.info("held")[0].state == "QUEUED" and cl.info("after")[0].state == "QUEUED"
        c.add_agent("node1", 1)
        states = cl.wait(timeout=30)
        cl.finish()
    assert c.master.wait(30) == 0
    assert states == {"run": "FAILED", "held": "SUCCEED", "after": "SUCCEED"}
    lines = report(c.workdir)
    assert lines["run"]["reason"].startswith("node lost: node0")
    assert not lines["held"].get("attempts") and lines["held"]["nodes"] == ["node1"]
    assert (out / "held").read_text().split() == ["start", "end"]
