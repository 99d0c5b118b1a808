"""Why a job does not run, end to end: a real pj-master in service mode (no --expect-nodes), real
pj-agents, and the real `pj info`, `pj list` and `pj status` a user types (issue 12, item 3)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pj.client import Client

pytestmark = pytest.mark.timeout(60)

BIN = Path(sys.executable).parent


def pj(cmd: str, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PJ_WORKDIR", "PJ_MASTER")}
    r = subprocess.run([str(BIN / cmd), *args], env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, f"{cmd} {args}: rc={r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return r.stdout


def eventually(check: Callable[[], Any], what: str, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while not (got := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)
    return got


TOO_BIG = ("no agent that has joined has 4 cores (largest: 2 cores); start an agent with --cores 4 or more, "
           "or cancel the job")


def test_service_mode_says_why_jobs_wait_in_info_list_and_status(cluster_factory: Any) -> None:
    c = cluster_factory(nodes=1, cores=2, expect=False)  # pj-master without --expect-nodes
    wd = str(c.workdir)
    with Client(wd) as cl:
        eventually(lambda: cl.resources().nodes, "the agent")
    pj("pj-submit", "--workdir", wd, "--name", "prep", "--", "sleep", "60")
    pj("pj-submit", "--workdir", wd, "--name", "big", "--cores", "4", "--", "/bin/true")
    pj("pj-submit", "--workdir", wd, "--name", "sim", "--iterations", "3", "--after", "prep", "--", "/bin/true")
    pj("pj-submit", "--workdir", wd, "--name", "post", "--after", "big", "--after", "sim", "--", "/bin/true")
    with Client(wd) as cl:
        eventually(lambda: cl.info("prep")[0].state == "EXECUTING", "prep to run")

    info = pj("pj", "info", "--workdir", wd, "big")
    assert "  state       QUEUED\n" in info and f"  reason      {TOO_BIG}\n" in info, info
    sim = pj("pj", "info", "--workdir", wd, "sim")
    assert "  reason      waiting for prep (EXECUTING)\n" in sim, sim

    rows = {line.split()[0]: line for line in pj("pj", "list", "--workdir", wd).splitlines()}
    assert rows["NAME"].split() == ["NAME", "STATE", "ITERATIONS", "REASON"]
    assert rows["big"].rstrip().endswith(TOO_BIG), rows["big"]
    assert rows["post"].rstrip().endswith("waiting for big (QUEUED), sim (QUEUED)"), rows["post"]
    assert rows["prep"].split() == ["prep", "EXECUTING", "-"]  # it runs: nothing to say
    listed = {j["name"]: j["reason"] for j in json.loads(pj("pj", "list", "--workdir", wd, "--json"))}
    assert listed["sim"] == "waiting for prep (EXECUTING)" and listed["big"] == TOO_BIG

    status = pj("pj", "status", "--workdir", wd)
    assert "waiting 2 for dependencies, 1 too big for any node\n" in status, status
    assert json.loads(pj("pj", "status", "--workdir", wd, "--json"))["waiting"] == {"dependencies": 2, "too big": 1}

    c.add_agent("bigger", 4)  # the fix the reason names: big runs
    with Client(wd) as cl:
        assert cl.wait(["big"], timeout=30) == {"big": "SUCCEED"}
        assert cl.info("big")[0].reason == ""
        assert cl.status().waiting == {"dependencies": 2}
        cl.cancel(["prep"])
        assert cl.wait(timeout=30)["post"] == "OMITTED"
        assert cl.status().waiting == {}
    assert "waiting" not in pj("pj", "status", "--workdir", wd)
