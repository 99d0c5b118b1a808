"""pj-relay (issue 16): real agents reach a real master through a real relay process, which holds
one RelayLink stream for all of them. A campaign runs as it does on direct streams; the master's
refusals reach the agent through the relay with the master's words; a wrong token stops at the
relay; a master killed and resumed finds its agents again through the relay, every task run once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pj.client import Client

from .test_agents_outlive_master import line_job
from .test_service import eventually

pytestmark = pytest.mark.timeout(90)


def start_relay(c, *extra: str) -> tuple[subprocess.Popen[bytes], str]:  # type: ignore[no-untyped-def]
    """A pj-relay on the master of cluster ``c``: its process and the address agents dial."""
    addr_file = c.workdir / f"relay{len(c.procs)}.addr"
    p = c._spawn([sys.executable, "-m", "pj.agent.relay", "--workdir", str(c.workdir), "--listen", "127.0.0.1:0",
                  "--address-file", str(addr_file), *extra], f"relay{len(c.procs)}.log")
    eventually(lambda: addr_file.exists() or p.poll() is not None, what="the relay's address")
    assert p.poll() is None, "the relay exited at start"
    return p, addr_file.read_text().strip()


def relayed_agent(c, relay: str, name: str, cores: int, *extra: str, token: Path | None = None):  # type: ignore[no-untyped-def]
    return c._spawn([sys.executable, "-m", "pj.agent", "--master", relay,
                     "--token-file", str(token or c.workdir / "token"), "--name", name, "--cores", str(cores),
                     *extra], f"agent-{name}.log")


def online(cl: Client) -> set[str]:
    return {n.name for n in cl.resources().nodes if n.online}


def test_a_campaign_runs_through_a_relay_and_everything_stops_at_its_end(cluster_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    c = cluster_factory(nodes=0, expect_nodes=3)
    relay, addr = start_relay(c)
    agents = [relayed_agent(c, addr, f"node{i}", 2) for i in range(3)]
    out = tmp_path / "out"
    out.mkdir()
    jobs = [line_job(f"j{i:02d}", out, 0.05) for i in range(30)]
    jobs.append({"name": "wide", "exec": "/bin/true", "cores": 2, "after": ["j00"]})
    with Client(c.workdir) as cl:
        eventually(lambda: online(cl) == {"node0", "node1", "node2"}, what="3 agents through the relay")
        cl.submit(jobs)
        states = cl.wait(timeout=60)
        cl.finish()
    assert states == {j["name"]: "SUCCEED" for j in jobs}
    for j in jobs[:-1]:
        assert len((out / str(j["name"])).read_text().splitlines()) == 1
    assert c.master.wait(30) == 0
    rows = [json.loads(x) for x in (c.workdir / "jobs.jsonl").read_text().splitlines()]
    assert next(r["nodes"] for r in rows if r["name"] == "wide")[0] in {"node0", "node1", "node2"}
    assert {r["nodes"][0] for r in rows if r["name"].startswith("j")} == {"node0", "node1", "node2"}
    # The master held one stream for the three agents: the relay's.
    log = (c.workdir / "master.log").read_text()
    assert log.count("relay connected") == 1 and log.count("agent joined") == 3
    for a in agents:  # the master's Shutdown went down each link
        assert a.wait(20) == 0
    assert relay.wait(20) == 0  # the master gone after every agent had left: the relay's work is done


def test_the_masters_refusal_and_a_wrong_token_reach_the_agent_through_the_relay(cluster_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    c = cluster_factory(nodes=0, expect_nodes=1)
    relay, addr = start_relay(c)
    first = relayed_agent(c, addr, "dup", 2)
    with Client(c.workdir) as cl:
        eventually(lambda: online(cl) == {"dup"}, what="the first agent")
    # Another agent (another pid) naming the same node: the master refuses it, ALREADY_EXISTS.
    second = relayed_agent(c, addr, "dup", 2, "--wait-master", "5", "--reconnect-timeout", "0")
    assert second.wait(30) != 0
    said = (c.workdir / "agent-dup.log").read_text()
    assert "already connected" in said, said
    # A wrong token: the relay itself turns the agent away.
    bad = tmp_path / "bad-token"
    bad.write_text("not-the-token\n")
    third = relayed_agent(c, addr, "other", 2, "--wait-master", "5", "--reconnect-timeout", "0", token=bad)
    assert third.wait(30) != 0
    said = (c.workdir / "agent-other.log").read_text()
    assert "token" in said.lower(), said
    with Client(c.workdir) as cl:  # the first is untouched by either
        assert online(cl) == {"dup"}
        cl.submit([{"name": "ok", "exec": "/bin/true"}])
        assert cl.wait(timeout=30) == {"ok": "SUCCEED"}
        cl.finish()
    assert first.wait(20) == 0 and relay.wait(20) == 0
    assert "agent refused" in (c.workdir / "master.log").read_text()


def test_a_killed_master_finds_its_agents_again_through_the_relay(cluster_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    c = cluster_factory(nodes=0, expect_nodes=2)
    relay, addr = start_relay(c, "--reconnect-timeout", "60")
    agents = [relayed_agent(c, addr, f"node{i}", 4, "--reconnect-timeout", "60") for i in range(2)]
    out = tmp_path / "out"
    out.mkdir()
    slow = [line_job(f"s{i}", out, 3) for i in range(6)]
    quick = [line_job(f"q{i:02d}", out, 0.2) for i in range(20)]
    names = [str(j["name"]) for j in [*slow, *quick]]
    with Client(c.workdir) as cl:
        eventually(lambda: len(online(cl)) == 2, what="2 agents through the relay")
        cl.submit(slow + quick)
        eventually(lambda: len(list(cl.list(["EXECUTING"]))) >= 6 and len(list(cl.list(["SUCCEED"]))) >= 2,
                   what="the slow jobs running, some quick ones done")
    c.kill_master()  # no goodbye: the relay's stream breaks, it ends each agent's stream, all reconnect
    assert relay.poll() is None and all(a.poll() is None for a in agents)

    c.resume_master()
    with Client(c.workdir) as cl:
        states = cl.wait(timeout=40)
        cl.finish()
    assert c.master.wait(30) == 0
    assert states == {n: "SUCCEED" for n in names}
    for name in names:  # adopted, not run again
        lines = (out / name).read_text().splitlines()
        assert len(lines) == 1, f"{name} ran {len(lines)} times: task ids {lines}"
    log = (c.workdir / "master-resumed.log").read_text()
    assert "relay connected" in log and log.count("agent joined") == 2 and "agent refused" not in log
    for a in agents:
        assert a.wait(20) == 0
    assert relay.wait(20) == 0
