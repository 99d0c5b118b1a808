"""Restarts seen from the other processes (issue 13, item 5), with real master and agent processes:
an agent started while the master is down joins the one that comes back on a new port; waits and
watches begun before a master's SIGKILL end right after its --resume; a master that never comes
back ends them with MasterUnreachable after the limit."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from pj.client import AsyncClient, Client, MasterUnreachable

from .test_service import eventually, user_env

pytestmark = pytest.mark.timeout(60)

PJ = str(Path(sys.executable).parent / "pj")


def master_json(wd: Path) -> dict[str, Any]:
    try:
        return json.loads((wd / "master.json").read_text())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return {}


def restart(c: Any, *args: str) -> subprocess.Popen[bytes]:
    """A new pj-master in the cluster's workdir (a new port: listening on port 0), once it is up."""
    old = master_json(c.workdir).get("address")
    c.master = c._spawn([sys.executable, "-m", "pj.master", "--workdir", str(c.workdir), *args],
                        f"master-{len(c.procs)}.log")
    eventually(lambda: master_json(c.workdir).get("pid") == c.master.pid, what="the new master")
    assert master_json(c.workdir)["address"] != old
    return c.master  # type: ignore[no-any-return]


def online_nodes(wd: Path) -> set[str]:
    with Client(wd, timeout=5) as cl:
        return {n.name for n in cl.resources().nodes if n.online}


@pytest.mark.parametrize("tls", [[], ["--tls"]], ids=["plain", "tls"])
def test_an_agent_started_while_the_master_is_down_joins_the_one_that_comes_back(cluster_factory: Any,
                                                                                  tls: list[str]) -> None:
    c = cluster_factory(nodes=1, cores=1, master_args=tls)
    with c.client() as cl:
        cl.submit([{"name": "before", "exec": "/bin/true"}])
        assert cl.wait(timeout=30) == {"before": "SUCCEED"}
    c.master.kill()
    c.master.wait()
    assert master_json(c.workdir), "master.json of the dead master is left behind"
    # It names a dead address: the agent keeps looking (it used to dial it for --wait-master, then exit 1).
    late = c.add_agent("late", 2, "--wait-master", "1", "--reconnect-timeout", "40")
    time.sleep(2.5)
    assert late.poll() is None, (c.workdir / "agent-late.log").read_text()
    cert = (c.workdir / "tls.crt").read_bytes() if tls else b""
    restart(c, "--resume", *tls)
    if tls:  # a new certificate: the agents take it from the workdir
        assert (c.workdir / "tls.crt").read_bytes() != cert
    eventually(lambda: online_nodes(c.workdir) == {"node0", "late"}, what="node0 back and late joined")
    with c.client() as cl:
        cl.submit([{"name": "two", "exec": "/bin/true", "cores": 2}])  # only `late` has 2 cores
        assert cl.wait(timeout=30) == {"before": "SUCCEED", "two": "SUCCEED"}
        assert [j.name for j in cl.list()] == ["before", "two"]
    assert "cannot reach the master" in (c.workdir / "agent-late.log").read_text()


def test_an_agent_joins_a_fresh_master_with_a_new_token(tmp_path: Path) -> None:
    wd = tmp_path / "wd"
    wd.mkdir(mode=0o700)
    (wd / "master.json").write_text(json.dumps({"address": "127.0.0.1:1"}))  # nothing listens there
    (wd / "token").write_text("old\n")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        agent = subprocess.Popen([sys.executable, "-m", "pj.agent", "--workdir", str(wd), "--name", "n1",
                                  "--cores", "1", "--reconnect-timeout", "40"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=user_env())
        procs.append(agent)
        time.sleep(1.5)
        assert agent.poll() is None
        master = subprocess.Popen([sys.executable, "-m", "pj.master", "--workdir", str(wd)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=user_env())
        procs.append(master)
        eventually(lambda: master_json(wd).get("pid") == master.pid, what="the master")
        assert (wd / "token").read_text() != "old\n"
        eventually(lambda: online_nodes(wd) == {"n1"}, what="the agent joined")
        with Client(wd) as cl:
            cl.finish()
        assert master.wait(20) == 0 and agent.wait(20) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def _async_wait(wd: Path, results: dict[str, Any]) -> None:
    async def main() -> dict[str, str]:
        async with AsyncClient(wd) as pj:
            return await pj.wait(timeout=50)

    try:
        results["async"] = asyncio.run(main())
    except Exception as e:  # the test says which
        results["async"] = e


def _sync_wait(wd: Path, results: dict[str, Any]) -> None:
    try:
        with Client(wd) as cl:
            results["sync"] = cl.wait(timeout=50)
    except Exception as e:
        results["sync"] = e


def _watch(wd: Path, results: dict[str, Any]) -> None:
    """Follows a counts-only watch (as `pj run` does) until every job has ended."""
    try:
        with Client(wd) as cl, cl.watch(counts_only=True) as stream:
            for ev in stream:
                if ev.watched_unfinished == 0:
                    results["watch"] = dict(ev.jobs)
                    return
        results["watch"] = "the stream ended first"
    except Exception as e:
        results["watch"] = e


def test_waits_and_watches_begun_before_a_kill_end_right_after_the_resume(cluster_factory: Any,
                                                                          tmp_path: Path) -> None:
    c = cluster_factory(nodes=2, cores=2)
    for a in c.agents:
        assert a.poll() is None
    jobs = [{"name": f"s{i}", "exec": "/bin/sleep", "args": ["2"]} for i in range(4)]
    jobs += [{"name": "fails", "script": "sleep 1; exit 3"},
             {"name": "after", "exec": "/bin/true", "after": [f"s{i}" for i in range(4)]}]
    with c.client() as cl:
        cl.submit(jobs)
        eventually(lambda: len(list(cl.list(["EXECUTING"]))) >= 3, what="jobs running")
    results: dict[str, Any] = {}
    threads = [threading.Thread(target=f, args=(c.workdir, results), daemon=True)
               for f in (_sync_wait, _async_wait, _watch)]
    for t in threads:
        t.start()
    cli = subprocess.Popen([PJ, "wait", "--workdir", str(c.workdir)], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, env=user_env())
    time.sleep(0.5)  # every wait has its Watch open
    c.master.kill()
    c.master.wait()
    time.sleep(1.0)  # the waits find nobody for a while
    assert not results and cli.poll() is None
    restart(c, "--resume")
    out, err = cli.communicate(timeout=40)
    for t in threads:
        t.join(40)
    final = {f"s{i}": "SUCCEED" for i in range(4)} | {"fails": "FAILED", "after": "SUCCEED"}
    assert results["sync"] == final
    assert results["async"] == final
    assert results["watch"] == {"SUCCEED": 5, "FAILED": 1}
    assert cli.returncode == 1 and err == "", err  # a job failed
    assert out.startswith("6 jobs finished: ") and "fails  FAILED" in out, out
    assert online_nodes(c.workdir) == {"node0", "node1"}  # the agents came back (they outlive the master)


def test_a_master_that_never_comes_back_ends_the_waits_after_the_limit(cluster_factory: Any) -> None:
    c = cluster_factory(nodes=1, cores=1)
    with c.client() as cl:
        cl.submit([{"name": "long", "exec": "/bin/sleep", "args": ["60"]}])
    results: dict[str, Any] = {}

    def wait() -> None:
        with Client(c.workdir, reconnect_timeout=2) as cl:
            try:
                results["wait"] = cl.wait(timeout=50)
            except MasterUnreachable as e:
                results["wait"] = e
                results["at"] = time.monotonic()

    t = threading.Thread(target=wait, daemon=True)
    t.start()
    cli = subprocess.Popen([PJ, "wait", "--workdir", str(c.workdir), "--reconnect-timeout", "2"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=user_env())
    time.sleep(0.5)
    killed = time.monotonic()  # before the kill: the client may see its stream break before wait() returns
    c.master.kill()
    c.master.wait()
    t.join(30)
    _, err = cli.communicate(timeout=30)
    error = results["wait"]
    assert isinstance(error, MasterUnreachable), error
    assert results["at"] - killed >= 2.0
    assert str(error).endswith("; no master came back within 2s (reconnect_timeout 2s)"), error
    assert "\n" not in str(error)
    assert cli.returncode == 1 and len(err.splitlines()) == 1, err
    assert err.startswith("pj: ") and "no master came back within 2s" in err, err


def test_a_wait_given_an_address_follows_a_master_resumed_at_the_same_address(cluster_factory: Any,
                                                                              tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    listen = ["--listen", f"127.0.0.1:{port}"]
    c = cluster_factory(nodes=1, cores=1, master_args=listen)
    address = f"127.0.0.1:{port}"
    with Client(address=address, token_file=c.workdir / "token") as cl:
        cl.submit([{"name": "a", "exec": "/bin/sleep", "args": ["1"]}, {"name": "b", "exec": "/bin/true"}])
        results: dict[str, Any] = {}

        def wait() -> None:
            try:
                results["wait"] = cl.wait(timeout=50)  # the same channel throughout: nothing moved
            except Exception as e:
                results["wait"] = e

        t = threading.Thread(target=wait, daemon=True)
        t.start()
        time.sleep(0.3)
        c.master.kill()
        c.master.wait()
        time.sleep(3)  # past gRPC's first reconnect back-offs
        c.master = c._spawn([sys.executable, "-m", "pj.master", "--workdir", str(c.workdir), "--resume", *listen],
                            "master-resumed.log")
        t.join(40)
    assert results["wait"] == {"a": "SUCCEED", "b": "SUCCEED"}
