"""A Client.submit of more jobs than go in one Submit: sent in parts, against a real master."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pj.client import InvalidJobError, calls
from pj.common.specbatch import request_jobs
from pj.v1 import pj_pb2


def job(name: str, after: list[str] | None = None) -> dict[str, Any]:
    j: dict[str, Any] = {"name": name, "exec": "/bin/true"}
    if after:
        j["after"] = after
    return j


def test_a_big_submit_goes_in_parts_and_gives_every_name_in_order(cluster_factory: Any,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(calls, "SUBMIT_CHUNK_JOBS", 3)
    sent: list[int] = []
    real = calls.submit_requests

    def counting(*a: Any, **k: Any) -> list[pj_pb2.SubmitRequest]:
        out = real(*a, **k)
        sent.extend(map(request_jobs, out))
        return out

    monkeypatch.setattr(calls, "submit_requests", counting)
    c = cluster_factory(nodes=1, cores=2)
    # j1 waits for j4 (a later part, were the parts cut every 3 jobs): j1..j4 travel together
    jobs = [job("j0"), job("j1", ["j4"]), job("j2"), job("j3"), job("j4"), *(job(f"j{i}") for i in range(5, 11))]
    with c.client() as pj:
        names = pj.submit(jobs)
        assert names == [f"j{i}" for i in range(11)]
        assert sent == [5, 3, 3]
        assert set(pj.wait(timeout=60).values()) == {"SUCCEED"}
        assert sorted(j.name for j in pj.list()) == sorted(names)


def test_a_refused_part_says_which_jobs_were_kept(cluster_factory: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(calls, "SUBMIT_CHUNK_JOBS", 2)
    c = cluster_factory(nodes=1, cores=2)
    with c.client() as pj:
        pj.submit([job("old")])
        # the client cannot know "old" exists: the master refuses the third part (b4, old)
        with pytest.raises(InvalidJobError) as e:
            pj.submit([job(f"b{i}") for i in range(5)] + [job("old"), job("b6")])
        assert e.value.kept == ["b0", "b1", "b2", "b3"]
        msg = str(e.value)
        assert "'old'" in msg and "jobs 5-6 of 7 were refused" in msg and "are kept" in msg
        assert sorted(j.name for j in pj.list()) == ["b0", "b1", "b2", "b3", "old"]


def test_a_bad_job_refuses_every_part_before_any_is_sent(cluster_factory: Any,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(calls, "SUBMIT_CHUNK_JOBS", 2)
    c = cluster_factory(nodes=1, cores=2)
    with c.client() as pj:
        with pytest.raises(InvalidJobError, match="cores") as e:
            pj.submit([job("a"), job("b"), job("c"), {"name": "d", "exec": "/bin/true", "cores": "many"}])
        assert e.value.kept == ()
        assert list(pj.list()) == []


def test_parts_are_cut_by_size_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(calls, "SUBMIT_CHUNK_BYTES", 1000)
    big = [{"name": f"x{i}", "exec": "/bin/true", "args": ["a" * 300 + str(i)]} for i in range(8)]
    parts = calls.submit_requests(big, "/", 1, chunk=8)
    assert [len(p.jobs) for p in parts] == [2, 2, 2, 2]
    assert [p.parts_after for p in parts] == [3, 2, 1, 0]  # the master holds its passes for the rest
    assert all(p.ByteSize() <= 1000 for p in parts)
    assert [j.name for p in parts for j in p.jobs] == [f"x{i}" for i in range(8)]


def test_jobs_alike_but_for_their_names_go_as_one_spec_and_run_under_their_names(cluster_factory: Any,
                                                                                  tmp_path: Path) -> None:
    # 600 alike, a JobSpec of the user's, 400 more alike the first (not right after them), one other
    out = str(tmp_path / "${jname}.out")
    alike = [{"name": f"a{i}", "exec": "/bin/echo", "args": ["${jname}"], "stdout": out} for i in range(1000)]
    mine = pj_pb2.JobSpec(name="mine", exec="/bin/true")
    jobs: list[Any] = [*alike[:600], mine, *alike[600:], {"name": "z", "exec": "/bin/echo", "args": ["bye"], "stdout": out}]
    (req,) = calls.submit_requests(jobs, "/", 1)
    assert [j.name for j in req.jobs] == ["a0", "mine", "a600", "z"]
    assert list(req.copies) == [599, 0, 399]
    assert list(req.copy_names) == [f"a{i}" for i in range(1, 1000) if i != 600]
    assert req.ByteSize() < 10 * 1000  # names, not 1000 specs
    c = cluster_factory(nodes=1, cores=2)
    with c.client() as pj:
        names = pj.submit(jobs)
        assert names == [f"a{i}" for i in range(600)] + ["mine"] + [f"a{i}" for i in range(600, 1000)] + ["z"]
        assert set(pj.wait(names, timeout=300).values()) == {"SUCCEED"}
        assert sorted(j.name for j in pj.list()) == sorted(names)
    for n in ("a0", "a1", "a599", "a600", "a999"):
        assert (tmp_path / f"{n}.out").read_text() == f"{n}\n"
    assert (tmp_path / "z.out").read_text() == "bye\n"
