"""pj.qcg.Manager against a real master and agents: QCG's verbs return QCG's shapes.

The expected shapes are those QCG-PilotJob 0.14.2's LocalManager returned for the same calls.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from pj.qcg import ConnectionError, InvalidJobDescriptionError, JobInfo, Jobs, Manager, TimeoutElapsed


def joined(cluster: Any, nodes: int) -> Any:
    """The conftest cluster once its agents have registered."""
    with cluster.client() as c:
        deadline = time.monotonic() + 30
        while len(c.resources().nodes) < nodes:
            assert time.monotonic() < deadline, "the agents did not register"
            time.sleep(0.02)
    return cluster


@pytest.fixture
def manager(cluster_factory: Any, tmp_path: Path) -> Any:
    cluster = joined(cluster_factory(nodes=1, cores=4), 1)
    m = Manager(cluster.workdir, {"wd": str(tmp_path / "jobs")})
    yield m
    m.cleanup()


def campaign() -> Jobs:
    return (
        Jobs()
        .add(name="ok", exec="/bin/date", stdout="ok.out")
        .add(name="bad", exec="/bin/false")
        .add(name="it", script="echo ${it} > it.${it}", iteration=3)
        .add(name="dep", exec="/bin/true", after=["bad"])
        .add(name="long", exec="sleep", args=["30"])
    )


def test_the_qcg_calls_of_a_campaign(manager: Manager, tmp_path: Path) -> None:
    assert manager.resources() == {"total_nodes": 1, "total_cores": 4, "used_cores": 0, "free_cores": 4}
    assert manager.submit(campaign()) == ["ok", "bad", "it", "dep", "long"]
    done = manager.wait4(["ok", "bad", "it", "dep"], timeout=30)
    assert done == {"ok": "SUCCEED", "bad": "FAILED", "it": "SUCCEED", "dep": "OMITTED"}
    assert (tmp_path / "jobs" / "ok.out").stat().st_size > 0  # relative paths: under the manager's wd
    assert sorted(p.name for p in (tmp_path / "jobs").glob("it.*")) == ["it.0", "it.1", "it.2"]

    # "long" waited on standby for a core the others held: the agent starts it the moment one frees,
    # and its Started report may come a moment after the others' ends.
    deadline = time.monotonic() + 10
    while manager.status("long")["jobs"]["long"]["data"]["status"] != "EXECUTING" and time.monotonic() < deadline:
        time.sleep(0.05)
    st = manager.status(["ok", "long"])
    assert st == {"jobs": {
        "ok": {"status": 0, "data": {"jobName": "ok", "status": "SUCCEED"}},
        "long": {"status": 0, "data": {"jobName": "long", "status": "EXECUTING"}},
    }}  # fmt: skip
    assert manager.status("it:1")["jobs"]["it:1"]["data"]["status"] == "SUCCEED"

    listed = manager.list()
    assert {n: v["status"] for n, v in listed.items()} == {
        "ok": "SUCCEED", "bad": "FAILED", "it": "SUCCEED", "dep": "OMITTED", "long": "EXECUTING",
    }
    assert "exit code 1" in listed["bad"]["messages"]

    info = manager.info(["ok", "bad", "it"])["jobs"]
    ok = info["ok"]["data"]
    assert ok["jobName"] == "ok" and ok["status"] == "SUCCEED"
    assert ok["runtime"]["exit_code"] == "0" and ok["runtime"]["pname"] == "date"
    assert ok["runtime"]["wd"] == str(tmp_path / "jobs") and ok["runtime"]["allocation"].startswith("node0[")
    assert [line.split(": ")[1] for line in ok["history"].splitlines() if line] == [
        "QUEUED", "SCHEDULED", "EXECUTING", "SUCCEED",
    ]
    assert info["bad"]["data"]["runtime"]["exit_code"] == "1"
    assert info["it"]["data"]["iterations"] == {"start": 0, "stop": 3, "total": 3, "finished": 3, "failed": 0}
    assert "childs" not in info["it"]["data"]
    childs = manager.info("it", withChilds=True)["jobs"]["it"]["data"]["childs"]
    assert [(c["iteration"], c["state"], c["runtime"]["exit_code"]) for c in childs] == [
        (0, "SUCCEED", "0"), (1, "SUCCEED", "0"), (2, "SUCCEED", "0"),
    ]

    parsed = manager.info_parsed(["ok", "it"], withChilds=True)
    assert isinstance(parsed["ok"], JobInfo) and parsed["ok"].total_cores == 1 and parsed["ok"].time is not None
    assert [c.name for c in parsed["it"].childs or []] == ["it:0", "it:1", "it:2"]

    sys_status = manager.system_status()
    assert sys_status["Resources"]["TotalCores"] == 4 and sys_status["Resources"]["UsedCores"] == 1
    assert sys_status["JobStats"]["ExecutingJobs"] == 1 and sys_status["JobStats"]["TotalJobs"] == 5

    assert manager.cancel(["long"]) is None
    assert manager.wait4("long", timeout=30) == {"long": "CANCELED"}
    manager.wait4all(timeout_secs=30)
    assert manager.cancel("ok") is None  # a finished job: nothing to do, no error (as QCG)


def test_refusals_are_qcg_errors(manager: Manager) -> None:
    manager.submit(Jobs().add(name="w1", exec="/bin/true"))
    with pytest.raises(ConnectionError, match=r"Request failed - .*nope"):
        manager.status(["nope"])
    with pytest.raises(ConnectionError, match=r"Request failed - .*nope"):
        manager.info("nope")
    with pytest.raises(ConnectionError, match=r"Request failed - .*w1"):
        manager.submit(Jobs().add(name="w1", exec="/bin/true"))  # a name already used
    with pytest.raises(InvalidJobDescriptionError, match="numCores"):
        manager.submit(Jobs().add(name="x", exec="/bin/true", numCores={"exact": 0}))
    with pytest.raises(ConnectionError, match=r"Request failed - .*unknownjob"):
        manager.submit(Jobs().add(name="x", exec="/bin/true", after=["unknownjob"]))  # PJ: stricter than QCG
    assert manager.wait4("w1", timeout=30) == {"w1": "SUCCEED"}


def test_remove_hides_finished_jobs(manager: Manager) -> None:
    manager.submit(Jobs().add(name="a", exec="/bin/true").add(name="b", exec="sleep", args=["30"]))
    manager.wait4("a", timeout=30)
    with pytest.raises(ConnectionError, match="not finished"):
        manager.remove("b")
    manager.remove("a")
    assert list(manager.list()) == ["b"]
    with pytest.raises(ConnectionError, match="doesn't exist"):
        manager.status("a")
    with pytest.raises(ConnectionError, match="another name"):
        manager.submit(Jobs().add(name="a", exec="/bin/true"))
    manager.cancel("b")


def test_wait4_any_job_finish_follows_the_stream_in_order(manager: Manager) -> None:
    manager.submit(Jobs().add(name="fast", exec="/bin/true").add(name="slow", exec="sleep", args=["0.6"]))
    assert manager.wait4_any_job_finish(30) == ("fast", "SUCCEED")
    assert manager.wait4_any_job_finish(30) == ("slow", "SUCCEED")
    t0 = time.monotonic()
    with pytest.raises(TimeoutElapsed):
        manager.wait4_any_job_finish(0.3)
    assert time.monotonic() - t0 < 5


def test_wait4_timeout_and_waits_from_threads(manager: Manager) -> None:
    manager.submit(Jobs().add(name="s", exec="sleep", args=["30"]).add(name="q", exec="/bin/true"))
    with pytest.raises(TimeoutElapsed):
        manager.wait4("s", timeout=0.3)
    results: dict[str, Any] = {}
    threads = [threading.Thread(target=lambda n=n: results.update(manager.wait4(n, 30))) for n in ("q", "q")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == {"q": "SUCCEED"}
    manager.cancel("s")


def test_a_manager_connects_by_address_with_a_token_file(cluster_factory: Any) -> None:
    cluster = joined(cluster_factory(nodes=1, cores=2), 1)
    address = __import__("json").loads((cluster.workdir / "master.json").read_text())["address"]
    m = Manager(f"tcp://{address}", {"token_file": str(cluster.workdir / "token")})
    try:
        assert m.resources()["total_cores"] == 2
    finally:
        m.cleanup()
    with pytest.raises(ConnectionError, match="Failed to connect"):
        Manager(str(cluster.workdir / "nowhere"))
