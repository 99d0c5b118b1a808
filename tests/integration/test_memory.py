"""Memory as a resource (issue 18 item 8) with a real pj-master and a real pj-agent --memory 4G:
two 3G tasks run one after the other, two 1G tasks together, and a 5G job fails naming memory."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pj.client import Client

pytestmark = pytest.mark.timeout(60)


def _times(workdir: Any) -> dict[str, tuple[float, float]]:
    out = {}
    for text in (workdir / "jobs.jsonl").read_text().splitlines():
        rec = json.loads(text)
        times = rec.get("times") or {}
        if "EXECUTING" in times and "SUCCEED" in times:
            out[rec["name"]] = (times["EXECUTING"], times["SUCCEED"])
    return out


def test_memory_packs_tasks_on_a_real_agent(cluster_factory) -> None:  # type: ignore[no-untyped-def]
    c = cluster_factory(nodes=0, expect_nodes=1)
    c.add_agent("node0", 4, "--memory", "4G")
    sleep = {"exec": "/bin/sleep", "args": ["1"]}
    with Client(c.workdir) as cl:
        cl.submit([{"name": "big1", "memory": "3G", **sleep}, {"name": "big2", "memory": "3072", **sleep}])
        assert cl.wait(timeout=30) == {"big1": "SUCCEED", "big2": "SUCCEED"}
        cl.submit([{"name": "small1", "memory": "1G", **sleep}, {"name": "small2", "memory": "1GiB", **sleep}])
        assert cl.wait(["small1", "small2"], timeout=30) == {"small1": "SUCCEED", "small2": "SUCCEED"}
        (n,) = cl.resources().nodes  # every task has ended: all of it free again
        assert (n.memory_bytes, n.memory_free_bytes) == (4 * 2**30, 4 * 2**30)
        cl.submit([{"name": "huge", "memory": "5G", **sleep}])
        assert cl.wait(["huge"], timeout=30) == {"huge": "FAILED"}
        cl.finish()
    assert c.wait_exit(30) == 0
    t = _times(c.workdir)
    (_a0, a1), (b0, _b1) = sorted([t["big1"], t["big2"]])
    assert b0 >= a1, f"two 3G tasks on a 4G node overlapped: {t}"
    (_s0, s1), (u0, _u1) = sorted([t["small1"], t["small2"]])
    assert u0 < s1, f"two 1G tasks on a 4G node did not overlap: {t}"
    lines = {json.loads(x)["name"]: json.loads(x) for x in (c.workdir / "jobs.jsonl").read_text().splitlines()}
    huge = lines["huge"]
    assert huge["state"] == "FAILED" and "can never fit" in huge["reason"] and "memory" in huge["reason"], huge
    assert "5 GiB memory" in huge["reason"] and "4 GiB memory per node" in huge["reason"], huge


def test_pj_run_agents_offer_pj_agent_memory(tmp_path: Any) -> None:
    """`PJ_AGENT_MEMORY=2G pj run`: its local agent offers 2 GiB, so a 1G job runs and a 3G one
    FAILS naming memory, in the report a user reads."""
    import os
    import subprocess
    import sys

    jobs = tmp_path / "jobs.json"
    jobs.write_text(json.dumps({"jobs": [
        {"name": "big", "exec": "/bin/true", "memory": "3G"},
        {"name": "small", "exec": "/bin/true", "memory": "1G"},
    ]}))
    wd = tmp_path / "wd"
    env = {**os.environ, "PJ_AGENT_MEMORY": "2G"}
    cmd = [sys.executable, "-c", "import sys; from pj.client.cli import pj_main; sys.exit(pj_main())",
           "run", str(jobs), "--workdir", str(wd), "--cores", "1"]
    subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    rows = {r["name"]: r for r in map(json.loads, (wd / "jobs.jsonl").read_text().splitlines())}
    assert rows["small"]["state"] == "SUCCEED"
    assert rows["big"]["state"] == "FAILED"
    assert "3 GiB memory" in json.dumps(rows["big"]) and "at most 2 GiB memory per node" in json.dumps(rows["big"])
