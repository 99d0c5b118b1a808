"""pj.client.Client against a real gRPC server (a fake PilotJob master) on 127.0.0.1:0."""

from __future__ import annotations

import dataclasses
import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pj.client import (
    AuthError,
    Client,
    InvalidJobError,
    JobFileWarning,
    MasterNotFound,
    MasterUnreachable,
    PJError,
    PJTimeout,
    UnknownJobError,
    convert,
)
from pj.common.workdir import write_master_info
from pj.v1 import pj_pb2

sys.path.insert(0, str(Path(__file__).parent))  # the fakes module beside this file
from test_client_fakes import QCG_FILE, S, closed_port
from test_client_fakes import Running as Master


@pytest.fixture
def master(tmp_path: Path) -> Iterator[Master]:
    m = Master(tmp_path / "wd")
    yield m
    m.stop()


def no_protobuf(obj: object) -> None:
    """Results are plain dataclasses all the way down."""
    from google.protobuf.message import Message

    assert dataclasses.is_dataclass(obj)
    for f in dataclasses.fields(obj):  # type: ignore[arg-type]
        v = getattr(obj, f.name)
        assert not isinstance(v, Message), f.name
        for item in v if isinstance(v, tuple) else [v]:
            if dataclasses.is_dataclass(item):
                no_protobuf(item)


def test_submit_dicts_resolves_against_cwd_and_keeps_order(master: Master, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with Client(master.workdir) as c:
        names = c.submit([
            {"name": "prep", "exec": "/bin/date", "stdout": "prep.out"},
            pj_pb2.JobSpec(name="raw", exec="/bin/true"),
            {"name": "sim", "exec": "./sim", "args": ["${it}"], "iterations": 4, "after": ["prep"]},
        ])
    assert names == ["prep", "raw", "sim"]
    (req,) = master.fake.submits
    assert req.base_dir == str(tmp_path)
    assert [j.name for j in req.jobs] == ["prep", "raw", "sim"]
    sim = req.jobs[2]
    assert sim.exec == "./sim" and list(sim.args) == ["${it}"] and sim.iterations.stop == 4
    assert list(sim.after) == ["prep"]


def test_submit_a_job_file_with_a_base_dir(master: Master, tmp_path: Path) -> None:
    f = tmp_path / "jobs.json"
    f.write_text(json.dumps({"jobs": [{"name": "a", "exec": "/bin/true"}, {"name": "b", "script": "echo"}]}))
    with Client(master.workdir) as c:
        assert c.submit(str(f), base_dir=tmp_path / "sub") == ["a", "b"]
        g = tmp_path / "more.json"
        g.write_text(json.dumps({"jobs": [{"name": "c", "exec": "/bin/true", "after": ["a"]}]}))
        assert c.submit(g) == ["c"]  # a Path works too; "a" is left for the master to find
    assert master.fake.submits[0].base_dir == str(tmp_path / "sub")


def test_job_file_remarks_become_warnings(master: Master, tmp_path: Path) -> None:
    f = tmp_path / "qcg.json"
    f.write_text(json.dumps(QCG_FILE))
    with Client(master.workdir) as c, pytest.warns(JobFileWarning) as caught:
        assert c.submit(f) == ["q"]
    assert any("'extra' ignored" in str(w.message) for w in caught)


def test_dependencies_on_jobs_submitted_before_are_left_to_the_master(master: Master) -> None:
    with Client(master.workdir) as c:
        c.submit([{"name": "first", "exec": "/bin/true"}])
        assert c.submit([{"name": "second", "exec": "/bin/true", "after": ["first"]}]) == ["second"]


def test_bad_jobs_raise_invalid_job_error_before_or_from_the_master(master: Master, tmp_path: Path) -> None:
    with Client(master.workdir) as c:
        with pytest.raises(InvalidJobError) as e:
            c.submit([{"name": "a"}])  # neither exec nor script: the parser says so
        assert "'a'" in str(e.value) and "\n" not in str(e.value)
        with pytest.raises(InvalidJobError, match="cannot read"):
            c.submit(tmp_path / "missing.json")
        with pytest.raises(InvalidJobError, match="JSON"):
            c.submit([{"name": "a", "exec": "x", "env": {"K": object()}}])
        assert master.fake.submits == []  # nothing reached the master
        c.submit([{"name": "dup", "exec": "/bin/true"}])
        with pytest.raises(InvalidJobError, match="a job with this name exists") as e2:
            c.submit([{"name": "dup", "exec": "/bin/true"}])
        assert isinstance(e2.value, ValueError)  # also a ValueError, for callers that catch those
        with pytest.raises(TypeError):
            c.submit({"name": "a", "exec": "x"})  # type: ignore[arg-type]
        assert c.submit([]) == []


def test_status_and_resources_are_dataclasses(master: Master) -> None:
    master.fake.add("a", S.JOB_STATE_SUCCEED)
    master.fake.add("b", S.JOB_STATE_FAILED, "exit code 1")
    master.fake.add("c")
    with Client(master.workdir) as c:
        st = c.status()
        res = c.resources()
    no_protobuf(st)
    assert st.jobs == {"QUEUED": 1, "SUCCEED": 1, "FAILED": 1}
    assert list(st.jobs) == ["QUEUED", "SUCCEED", "FAILED"]  # life order
    assert (st.jobs_total, st.jobs_unfinished, st.address) == (3, 1, "fake:1")
    no_protobuf(res)
    assert res.nodes_expected == 2
    assert res.nodes[0] == convert.NodeResources("node0", 4, 3, ("0", "1"), 1, 8 << 30, True, memory_free_bytes=6 << 30)


def test_info_with_tasks_and_unknown_names(master: Master) -> None:
    master.fake.add("sim", S.JOB_STATE_SUCCEED, iterations=3)
    master.fake.add("one", S.JOB_STATE_EXECUTING)
    with Client(master.workdir) as c:
        sim, one = c.info(["sim", "one"], with_tasks=True)
        (plain,) = c.info("one")
        with pytest.raises(UnknownJobError) as e:
            c.info(["one", "nope"])
    no_protobuf(sim)
    assert (sim.name, sim.state, sim.summary.iterations) == ("sim", "SUCCEED", 3)
    assert sim.history == (convert.StateChange("QUEUED", 1.7e9),)
    (t,) = sim.tasks
    assert (t.name, t.iteration, t.exit_code) == ("sim:0", 0, 0)
    assert t.shares == (convert.NodeShare("node0", (0, 1, 2, 5), ("1",)),)
    assert one.tasks[0].iteration is None and one.tasks[0].exit_code is None
    assert plain.tasks == ()
    assert str(e.value) == "no job named 'nope'" and isinstance(e.value, KeyError)


def test_list_follows_pages_and_filters_states(master: Master) -> None:
    for i in range(5):
        master.fake.add(f"j{i}", S.JOB_STATE_FAILED if i % 2 else S.JOB_STATE_SUCCEED)
    with Client(master.workdir) as c:
        assert [j.name for j in c.list()] == ["j0", "j1", "j2", "j3", "j4"]
        assert len(master.fake.list_requests) == 3  # pages of 2
        failed = list(c.list(states=["failed"]))
        assert [j.name for j in failed] == ["j1", "j3"] and all(j.state == "FAILED" for j in failed)
        assert [j.name for j in c.list(page_size=10)] == [f"j{i}" for i in range(5)]
        with pytest.raises(ValueError, match="unknown job state"):
            list(c.list(states=["DONE"]))
    assert list(master.fake.list_requests[3].states) == [S.JOB_STATE_FAILED]


def test_cancel(master: Master) -> None:
    master.fake.add("run", S.JOB_STATE_EXECUTING)
    master.fake.add("done", S.JOB_STATE_SUCCEED)
    with Client(master.workdir) as c:
        res = c.cancel(["run", "done"])
        assert res == convert.CancelResult(canceled=("run",), already_finished=("done",))
        with pytest.raises(UnknownJobError):
            c.cancel("ghost")


def test_wait_follows_the_watch_stream(master: Master) -> None:
    fake = master.fake
    fake.add("a")
    fake.add("b")
    fake.add("other")
    fake.set_later(0.2, "a", S.JOB_STATE_EXECUTING)
    fake.set_later(0.3, "a", S.JOB_STATE_SUCCEED)
    fake.set_later(0.4, "b", S.JOB_STATE_FAILED, "exit code 2")
    t0 = time.monotonic()
    with Client(master.workdir) as c:
        assert c.wait(["a", "b"], timeout=10) == {"a": "SUCCEED", "b": "FAILED"}
        assert time.monotonic() - t0 < 5
        assert c.wait([]) == {}
        # finished already: the first event says so
        assert c.wait("a") == {"a": "SUCCEED"}


def test_wait_for_every_job_learns_the_names_it_was_not_told(master: Master) -> None:
    fake = master.fake
    fake.add("x", S.JOB_STATE_SUCCEED)
    fake.add("y")
    fake.set_later(0.2, "y", S.JOB_STATE_OMITTED, "dependency failed")
    with Client(master.workdir) as c:
        assert c.wait(timeout=10) == {"x": "SUCCEED", "y": "OMITTED"}


def test_wait_timeout_raises_timeout_error(master: Master) -> None:
    master.fake.add("slow", S.JOB_STATE_EXECUTING)
    with Client(master.workdir) as c:
        t0 = time.monotonic()
        with pytest.raises(TimeoutError) as e:
            c.wait(["slow"], timeout=0.3)
        assert time.monotonic() - t0 < 5
        assert isinstance(e.value, PJTimeout) and "1 of 1 jobs still unfinished" in str(e.value)
        with pytest.raises(UnknownJobError):
            c.wait(["ghost"], timeout=5)


def test_watch_yields_the_present_then_changes_and_stops_when_canceled(master: Master) -> None:
    fake = master.fake
    fake.add("a")
    with Client(master.workdir) as c:
        stream = c.watch(["a"])
        first = next(stream)
        no_protobuf(first)
        assert [j.state for j in first.changed] == ["QUEUED"] and first.watched_unfinished == 1
        fake.set_later(0.1, "a", S.JOB_STATE_SUCCEED)
        ev = next(stream)
        assert [(j.name, j.state) for j in ev.changed] == [("a", "SUCCEED")] and ev.watched_unfinished == 0
        threading.Timer(0.2, stream.cancel).start()
        assert list(stream) == []  # canceled from another thread: ends quietly
        with c.watch() as every:
            assert next(every).changed == ()  # a watch of every job starts with counts only


def test_wrong_token_is_an_auth_error(master: Master, tmp_path: Path) -> None:
    bad = tmp_path / "bad-token"
    bad.write_text("nope\n")
    with Client(address=master.address, token_file=bad) as c:
        with pytest.raises(AuthError, match="refused the token: missing or wrong pj-token"):
            c.status()
    # --master with the workdir's token works
    with Client(master.workdir, address=master.address) as c:
        assert c.status().jobs_total == 0


def test_no_master_answers(tmp_path: Path) -> None:
    wd = tmp_path / "wd"
    wd.mkdir()
    port = closed_port()
    write_master_info(wd, {"address": f"127.0.0.1:{port}"})
    (wd / "token").write_text("t\n")
    with Client(wd, timeout=5) as c:
        with pytest.raises(MasterUnreachable) as e:
            c.status()
        with pytest.raises(MasterUnreachable):
            c.wait(timeout=5)
    assert str(e.value).startswith(f"no master answers at 127.0.0.1:{port}: ")
    assert "\n" not in str(e.value)


def test_no_master_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PJ_WORKDIR", raising=False)
    monkeypatch.delenv("PJ_MASTER", raising=False)
    with pytest.raises(MasterNotFound, match="does not exist"):
        Client(tmp_path)
    with pytest.raises(MasterNotFound, match="no master given"):
        Client()
    with pytest.raises(PJError):  # the base class catches them all
        Client(tmp_path)


def test_pj_workdir_environment_and_finish(master: Master, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PJ_WORKDIR", str(master.workdir))
    c = Client()
    assert c.workdir == master.workdir and c.address == master.address
    c.finish()
    c.finish(drain=False)
    c.close()
    assert master.fake.finishes == [True, False]
    with pytest.raises(PJError, match="closed"):
        c.status()


def test_state_names_round_trip() -> None:
    for name in convert.STATES:
        assert convert.state_name(convert.state_value(name)) == name
    assert convert.state_value("job_state_failed") == S.JOB_STATE_FAILED
    assert convert.state_name(99) == "STATE_99"
    with pytest.raises(ValueError):
        convert.state_value("UNSPECIFIED")
