"""pj.client.LocalCluster with real processes: ready once every agent has joined, and never leaves a
process behind (master, agents, tasks), however the block is left."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from pj.client import ClusterError, LocalCluster

pytestmark = pytest.mark.timeout(90)

NAP = {"name": "nap", "script": "echo $$ > nap.pid; exec sleep 60"}


def alive(pids: list[int]) -> list[int]:
    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.NoSuchProcess:
            pass
    return out


def start_nap(cluster: LocalCluster, where: Path) -> int:
    """Submit a 60 s sleep and return its pid once it runs."""
    with cluster.client() as pj:
        pj.submit([NAP], base_dir=where)
    deadline = time.monotonic() + 20
    while not (where / "nap.pid").exists() or not (where / "nap.pid").read_text().strip():
        assert time.monotonic() < deadline, "the task did not start"
        time.sleep(0.02)
    return int((where / "nap.pid").read_text())


def test_ready_with_every_node_and_a_job_runs(tmp_path: Path) -> None:
    with LocalCluster(nodes=3, cores=2, workdir=tmp_path / "wd") as cluster:
        assert cluster.workdir == tmp_path / "wd" and (cluster.nodes, cluster.cores) == (3, 2)
        assert cluster.address.startswith("127.0.0.1:")
        with cluster.client() as pj:
            res = pj.resources()  # right away: no waiting for the agents here
            assert sorted((n.name, n.cores) for n in res.nodes) == [("node0", 2), ("node1", 2), ("node2", 2)]
            pj.submit([{"name": "hello", "exec": "/bin/echo", "args": ["hi"], "stdout": "hello.out"}],
                      base_dir=tmp_path)
            assert pj.wait("hello", timeout=30) == {"hello": "SUCCEED"}
        assert (tmp_path / "hello.out").read_text() == "hi\n"
        pids = [p.pid for p in psutil.Process().children(recursive=True)]
        assert len(pids) >= 4  # the master and three agents
    assert alive(pids) == [] and cluster.closed
    report = [json.loads(line) for line in (tmp_path / "wd" / "jobs.jsonl").read_text().splitlines()]
    assert [(r["name"], r["state"]) for r in report] == [("hello", "SUCCEED")]


def test_default_workdir_and_cores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with LocalCluster(heartbeat_timeout=5, prefetch=False) as cluster:
        assert cluster.workdir.parent == tmp_path / "pj-runs"
        assert cluster.nodes == 1 and cluster.cores == len(os.sched_getaffinity(0))
        with cluster.client() as pj:
            assert [n.cores for n in pj.resources().nodes] == [cluster.cores]
    assert "master ready" in (cluster.workdir / "master.log").read_text()
    assert cluster.workdir.is_dir()  # kept, with its logs


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_leaving_the_block_by_an_exception_stops_everything_tasks_included(
    tmp_path: Path, error: type[BaseException]
) -> None:
    with pytest.raises(error):
        with LocalCluster(nodes=2, cores=1, workdir=tmp_path / "wd") as cluster:
            nap = start_nap(cluster, tmp_path)
            pids = [p.pid for p in psutil.Process().children(recursive=True)]
            assert nap in pids and len(pids) >= 4  # master, two agents, the sleep (under an agent)
            raise error("boom")
    assert alive(pids) == []
    with pytest.raises(Exception, match="master"):  # the master is gone: nobody answers there
        cluster.client(timeout=2).status()


def test_close_twice_is_fine(tmp_path: Path) -> None:
    cluster = LocalCluster(cores=1, workdir=tmp_path / "wd")
    pids = [p.pid for p in psutil.Process().children(recursive=True)]
    cluster.close()
    cluster.close()
    with cluster:  # and leaving a with block of a closed cluster too
        pass
    assert cluster.closed and alive(pids) == []


def test_an_unknown_master_option_is_a_type_error_and_starts_nothing(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TypeError, match=r"'heartbeat' is not a pj-master option; the known ones: .*heartbeat_timeout"):
        LocalCluster(heartbeat=5)
    with pytest.raises(TypeError, match="tls: True or False"):
        LocalCluster(tls="yes")
    with pytest.raises(ValueError, match="missing_nodes: one of 'continue', 'fail'"):
        LocalCluster(missing_nodes="maybe")
    assert list(tmp_path.iterdir()) == [] and psutil.Process().children() == []


def test_an_agent_that_cannot_start_is_a_clear_error_and_nothing_is_left(tmp_path: Path) -> None:
    before = {p.pid for p in psutil.Process().children()}
    with pytest.raises(ClusterError) as e:
        LocalCluster(nodes=2, cores=0, workdir=tmp_path / "wd")
    msg = str(e.value)
    assert "\n" not in msg and "exited with code 2" in msg
    assert f"{tmp_path / 'wd'}/agent-node" in msg and "--cores: must be at least 1, not 0" in msg
    assert {p.pid for p in psutil.Process().children()} <= before


def test_a_master_that_cannot_start_is_a_clear_error(tmp_path: Path) -> None:
    wd = tmp_path / "wd"
    wd.mkdir()
    (wd / "journal.db").write_text("a campaign journaled here\n")  # without resume=True: refused
    with pytest.raises(ClusterError, match=rf"the master exited with code \d+; the end of {wd / 'master.log'}: "):
        LocalCluster(cores=1, workdir=wd)
    assert psutil.Process().children() == []


def run_script(tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "script.py"
    script.write_text(PIDS + textwrap.dedent(body))
    return subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=60)


PIDS = """
import gc, json, os, pathlib, signal, sys, threading, time
import psutil
from pj.client import LocalCluster

def pids():
    return [p.pid for p in psutil.Process().children(recursive=True)]

def nap(cluster, where):
    with cluster.client() as pj:
        pj.submit([{"name": "nap", "script": "echo $$ > nap.pid; exec sleep 60"}], base_dir=where)
    f = where / "nap.pid"
    while not f.exists() or not f.read_text().strip():
        time.sleep(0.02)
"""


def test_a_cluster_never_closed_stops_when_collected_or_at_exit(tmp_path: Path) -> None:
    r = run_script(tmp_path, """
        (tmp := pathlib.Path.cwd() / "a").mkdir()
        c = LocalCluster(cores=1, workdir="wd-a")
        nap(c, tmp)
        first = pids()
        del c
        gc.collect()  # garbage: stopped right away
        left = [p for p in first if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
        (tmp := pathlib.Path.cwd() / "b").mkdir()
        c = LocalCluster(nodes=2, cores=1, workdir="wd-b")
        nap(c, tmp)
        print(json.dumps({"first": first, "left": left, "second": pids()}), flush=True)
        # and exits without closing it
    """)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert len(out["first"]) >= 3 and out["left"] == []
    assert len(out["second"]) >= 4 and alive(out["second"]) == []


def test_ctrl_c_while_starting_leaves_nothing(tmp_path: Path) -> None:
    r = run_script(tmp_path, """
        wd = pathlib.Path.cwd() / "wd"
        def interrupt():  # Ctrl-C as soon as the master has been started, long before it is ready
            while not (wd / "master.log").exists():
                time.sleep(0.001)
            os.kill(os.getpid(), signal.SIGINT)
        threading.Thread(target=interrupt, daemon=True).start()
        try:
            LocalCluster(nodes=2, cores=1, workdir=wd)
        except KeyboardInterrupt:
            print(json.dumps({"interrupted": True, "left": pids()}))
    """)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"interrupted": True, "left": []}
