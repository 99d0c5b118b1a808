"""pj.client.Executor on real processes: a master, two agents and their warm workers."""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pj.client import CallError, CallTooBig, DependencyFailed, Executor, LocalCluster, RemoteTraceback

pytestmark = pytest.mark.timeout(120)


def inc(x: int) -> int:
    return x + 1


def add(a: int, b: int = 0) -> int:
    return a + b


def boom(x: int) -> None:
    raise KeyError(f"no such thing: {x}")


def where() -> tuple[str, int, str, list[int]]:
    return os.environ["PJ_NODES"], os.getpid(), os.environ["PJ_JOB"], sorted(os.sched_getaffinity(0))


def nap(seconds: float, marker: str = "") -> str:
    if marker:
        Path(marker).write_text(str(os.getpid()))
    time.sleep(seconds)
    return "woke"


def die_once(marker: str) -> str:
    """Kills its own worker the first time (no marker yet), returns the next time."""
    if not os.path.exists(marker):
        Path(marker).write_text("died")
        os.kill(os.getpid(), signal.SIGKILL)
    return "second try"


def burn(seconds: float) -> int:
    end = time.process_time() + seconds
    n = 0
    while time.process_time() < end:
        n += 1
    return n


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    wd = tmp_path_factory.mktemp("exec") / "wd"
    with LocalCluster(nodes=2, cores=2, workdir=wd, heartbeat_timeout=10) as c:
        yield c


@pytest.fixture()
def ex(cluster: LocalCluster) -> Iterator[Executor]:
    with Executor(cluster) as e:
        yield e


def test_submit_map_wait_as_completed(ex: Executor) -> None:
    assert ex.submit(inc, 1).result(timeout=30) == 2
    assert ex.submit(add, 1, b=2).result(timeout=30) == 3
    assert list(ex.map(inc, range(20), timeout=60)) == list(range(1, 21))
    assert list(ex.map(add, range(10), range(10), chunksize=3, timeout=60)) == [2 * i for i in range(10)]
    fs = [ex.submit(inc, i) for i in range(30)]
    done, not_done = cf.wait(fs, timeout=60)
    assert not not_done and sorted(f.result() for f in done) == list(range(1, 31))
    assert sorted(f.result() for f in cf.as_completed([ex.submit(inc, i) for i in range(10)], timeout=60)) == list(range(1, 11))
    # Calls are PJ tasks: both nodes take them, each bound to its own core.
    seen = [f.result() for f in [ex.submit(where) for _ in range(40)]]
    assert {node for node, *_ in seen} == {"n1", "n2"} or len({node for node, *_ in seen}) == 2
    assert all(len(cpus) == 1 for *_, cpus in seen)
    assert len({pid for _, pid, _, _ in seen}) <= 4  # warm: at most one worker per core
    assert seen[0][2].startswith(ex.id + "-")


def test_exceptions_come_back_with_the_remote_traceback(ex: Executor) -> None:
    f = ex.submit(boom, 7)
    with pytest.raises(KeyError, match="no such thing: 7") as info:
        f.result(timeout=30)
    cause = info.value.__cause__
    assert isinstance(cause, RemoteTraceback)
    assert "in boom" in str(cause) and "KeyError" in str(cause)
    assert isinstance(f.exception(), KeyError)


def test_lambda_closure_and_main_functions(ex: Executor, tmp_path: Path, cluster: LocalCluster) -> None:
    k = 10
    assert ex.submit(lambda x: x * k, 4).result(timeout=30) == 40

    def closure(y: int) -> int:
        return y + k

    assert ex.submit(closure, 1).result(timeout=30) == 11
    script = tmp_path / "user.py"
    script.write_text(textwrap.dedent(f"""
        from pj.client import Executor

        def square(x):
            return x * x

        class Point:
            def __init__(self, x):
                self.x = x

        if __name__ == "__main__":
            with Executor({str(cluster.workdir)!r}) as ex:
                print(sum(ex.map(square, range(10))), ex.submit(lambda p: p.x, Point(5)).result())
    """))
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["285", "5"]


def test_cancel_stops_a_running_call(ex: Executor, tmp_path: Path, cluster: LocalCluster) -> None:
    marker = tmp_path / "started"
    f = ex.submit(nap, 60, str(marker))
    deadline = time.time() + 30
    while not marker.exists() and time.time() < deadline:
        time.sleep(0.05)
    pid = int(marker.read_text())
    assert f.cancel() and f.cancelled()
    cf.wait([f], timeout=1)
    with cluster.client() as pj:
        assert pj.wait([f.name], timeout=30) == {f.name: "CANCELED"}
    deadline = time.time() + 10
    while _alive(pid) and time.time() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)  # the call (its worker) was stopped
    assert ex.submit(inc, 1).result(timeout=30) == 2  # and the next call gets a worker
    # a queued one too, and shutdown(cancel_futures=True) cancels what is left
    fs = [ex.submit(nap, 30) for _ in range(8)]
    ex.shutdown(wait=True, cancel_futures=True)
    assert all(f.cancelled() or f.done() for f in fs)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_dead_worker_fails_only_its_call_and_a_retry_succeeds(cluster: LocalCluster, tmp_path: Path) -> None:
    with Executor(cluster, retries=1) as ex:
        others = [ex.submit(nap, 0.5) for _ in range(3)]
        f = ex.submit(die_once, str(tmp_path / "m1"))
        assert f.result(timeout=60) == "second try"
        assert [o.result(timeout=60) for o in others] == ["woke"] * 3
    with Executor(cluster) as ex:
        f = ex.submit(die_once, str(tmp_path / "m2"))
        with pytest.raises(CallError, match="FAILED"):
            f.result(timeout=60)
        assert ex.submit(inc, 5).result(timeout=30) == 6


def test_walltime_reaches_the_call(cluster: LocalCluster) -> None:
    with Executor(cluster, walltime=1) as ex:
        f = ex.submit(nap, 60)
        with pytest.raises(CallError, match="walltime"):
            f.result(timeout=60)


def test_a_future_argument_is_a_dependency(ex: Executor) -> None:
    a = ex.submit(nap, 0.5)
    b = ex.submit(add, ex.submit(inc, 1), b=ex.submit(inc, 2))
    c = ex.submit(lambda s: s + "!", a)
    assert b.result(timeout=30) == 5 and c.result(timeout=30) == "woke!"
    bad = ex.submit(boom, 1)
    after = ex.submit(inc, bad)
    with pytest.raises(DependencyFailed):
        after.result(timeout=30)


def test_size_limits(cluster: LocalCluster) -> None:
    with Executor(cluster, max_call_bytes=10_000, max_result_bytes=10_000) as ex:
        with pytest.raises(CallTooBig, match="max_call_bytes"):
            ex.submit(len, b"x" * 20_000)
        f = ex.submit(bytes, 20_000)
        with pytest.raises(ValueError, match="limit of 10000"):
            f.result(timeout=30)
        assert ex.submit(len, b"x" * 5_000).result(timeout=30) == 5_000


def test_jobs_jsonl_shows_calls_with_rusage(tmp_path: Path) -> None:
    wd = tmp_path / "wd"
    with LocalCluster(nodes=1, cores=2, workdir=wd) as c, Executor(c) as ex:
        f = ex.submit(burn, 0.3)
        assert f.result(timeout=60) > 0
        name = f.name
        with c.client() as pj:
            (info,) = pj.info([name], with_tasks=True)
        assert info.tasks[0].cpu_user_s >= 0.2
    lines = [json.loads(x) for x in (wd / "jobs.jsonl").read_text().splitlines()]
    (line,) = [x for x in lines if x.get("name") == name and "cpu_user_s" in x]
    assert line["state"] == "SUCCEED" and 0.2 <= line["cpu_user_s"] < 30 and line["max_rss_kb"] > 0


def pid() -> int:
    return os.getpid()


def test_idle_workers_leave_after_the_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PJ_WORKER_IDLE_S", "1")  # the agents' environment
    with LocalCluster(nodes=1, cores=2, workdir=tmp_path / "wd") as c, Executor(c) as ex:
        first = ex.submit(pid).result(timeout=30)
        assert _alive(first)
        deadline = time.time() + 10
        while _alive(first) and time.time() < deadline:
            time.sleep(0.1)
        assert not _alive(first)  # idle past 1 s: sent away
        assert ex.submit(pid).result(timeout=30) != first  # a new one comes on demand
