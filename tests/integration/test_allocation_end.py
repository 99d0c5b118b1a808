"""Allocation ends with real processes (issue 17): an agent whose allocation ends in 20 s
(--ends-at) gets no task with a walltime of 1 min; those go to the other agent; short ones may go
to either; the master's resources say when each node's allocation ends."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from pj.client import Client

from .test_node_loss import eventually

pytestmark = pytest.mark.timeout(90)


def nodes_of(c: Client, name: str) -> list[str]:
    (info,) = c.info(name)
    return [s.node for t in info.tasks for s in t.shares]


def test_a_long_walltime_never_lands_on_an_agent_whose_allocation_ends_soon(cluster_factory: Any,
                                                                             tmp_path: Path) -> None:
    cluster = cluster_factory(nodes=0, expect_nodes=2)
    ends = time.time() + 20
    cluster.add_agent("soon", 2, "--ends-at", f"{ends:.0f}")
    cluster.add_agent("late", 1)
    with Client(cluster.workdir) as c:
        eventually(lambda: sum(n.online for n in c.resources().nodes) >= 2, what="2 agents")
        by_name = {n.name: n for n in c.resources().nodes}
        assert by_name["soon"].ends_at == pytest.approx(round(ends)) and by_name["late"].ends_at == 0
        long_jobs = [{"name": f"long{i}", "exec": "/bin/sleep", "args": ["0.5"], "walltime": "1m"} for i in range(3)]
        c.submit([*long_jobs, {"name": "short", "exec": "/bin/sleep", "args": ["0.5"], "walltime": "5s"},
                  {"name": "short2", "exec": "/bin/sleep", "args": ["0.5"], "walltime": "5s"}], base_dir=tmp_path)
        names = [j["name"] for j in long_jobs] + ["short", "short2"]
        assert c.wait(names, timeout=60) == dict.fromkeys(names, "SUCCEED")
        for j in long_jobs:
            assert nodes_of(c, j["name"]) == ["late"]
        # The two short ones and the long ones share one core on "late": the short ones went to "soon".
        assert "soon" in nodes_of(c, "short") + nodes_of(c, "short2")
        c.finish()
        assert cluster.master.wait(30) == 0
