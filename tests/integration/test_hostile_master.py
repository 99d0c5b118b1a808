"""Hostile Submits against a real pj-master over real gRPC: each is refused with a status and a
message naming the field, nothing of it is registered, and the master goes on serving and running
jobs afterwards."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from pj.client import InvalidJobError
from pj.common.speccheck import JOBS_MAX, MESSAGE_BYTES_MAX
from pj.v1 import pj_pb2
from pj.v1 import pj_pb2_grpc as rpc

pytestmark = pytest.mark.timeout(60)


def J(name: str, **fields: Any) -> pj_pb2.JobSpec:
    fields.setdefault("exec", "/bin/true")
    return pj_pb2.JobSpec(name=name, **fields)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _repeated_jobs(job: pj_pb2.JobSpec, count: int) -> bytes:
    """A serialized SubmitRequest holding ``job`` ``count`` times, built without ``count`` objects."""
    body = job.SerializeToString()
    return (b"\x0a" + _varint(len(body)) + body) * count


HOSTILE: list[tuple[str, Callable[[], list[pj_pb2.JobSpec]], str]] = [
    ("no jobs", lambda: [], "'jobs'"),
    ("duplicate names", lambda: [J("a"), J("a")], "'name'"),
    ("slash", lambda: [J("a/b")], "'name'"),
    ("dot-dot", lambda: [J("..")], "'name'"),
    ("inner dot-dot", lambda: [J("x..y")], "'name'"),
    ("leading dot", lambda: [J(".x")], "'name'"),
    ("NUL", lambda: [J("a\0b")], "'name'"),
    ("control", lambda: [J("a\x1bb")], "'name'"),
    ("odd unicode", lambda: [J("j\u202eob\U0001f600")], "'name'"),
    ("long name", lambda: [J("n" * 1000)], "'name'"),
    ("huge iterations", lambda: [J("a", iterations=pj_pb2.Iterations(start=0, stop=2**62))], "'iterations'"),
    ("negative start", lambda: [J("a", iterations=pj_pb2.Iterations(start=-5, stop=2))], "'iterations'"),
    ("cores max < min", lambda: [J("a", cores=pj_pb2.Range(min=4, max=2))], "'cores'"),
    ("nodes too many", lambda: [J("a", nodes=pj_pb2.Range(min=2**32 - 1))], "'nodes'"),
    ("gpus", lambda: [J("a", gpus=2**32 - 1)], "'gpus'"),
    ("walltime", lambda: [J("a", walltime_s=1e308)], "'walltime_s'"),
    ("retries", lambda: [J("a", retries=2**32 - 1)], "'retries'"),
    ("cycle", lambda: [J("a", after=["b"]), J("b", after=["a"])], "'after'"),
    ("unknown dependency", lambda: [J("a"), J("b", after=["ghost"])], "'after'"),
    ("NUL in exec", lambda: [J("a", exec="/bin/\0true")], "'exec'"),
    ("env", lambda: [J("a", env={"A=B": "1"})], "'env'"),
    ("one bad job of many", lambda: [J(f"ok{i}") for i in range(1000)] + [J("bad", exec="")], "'exec'"),
]


def test_hostile_submits_are_refused_and_leave_nothing(cluster_factory: Any) -> None:
    c = cluster_factory(nodes=1, cores=2)
    info = json.loads((c.workdir / "master.json").read_text())
    md = (("pj-token", (c.workdir / "token").read_text().strip()),)
    big = MESSAGE_BYTES_MAX * 2
    opts = [("grpc.max_send_message_length", big), ("grpc.max_receive_message_length", big)]
    with grpc.insecure_channel(info["address"], options=opts) as ch:
        stub = rpc.PilotJobStub(ch)
        raw = ch.unary_unary(
            "/pj.v1.PilotJob/Submit", request_serializer=None, response_deserializer=pj_pb2.SubmitReply.FromString
        )

        def nothing_kept() -> None:
            assert stub.Status(pj_pb2.StatusRequest(), metadata=md, timeout=10).jobs_total == 0
            assert not stub.List(pj_pb2.ListRequest(), metadata=md, timeout=10).jobs

        for what, make, field in HOSTILE:
            with pytest.raises(grpc.RpcError) as info_:
                stub.Submit(pj_pb2.SubmitRequest(jobs=make(), base_dir="/tmp"), metadata=md, timeout=10)
            err = info_.value
            assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (what, err)
            assert f"field {field}" in err.details(), (what, err.details())
            assert "\0" not in err.details() and len(err.details()) < 1000, what
            nothing_kept()

        # More jobs than one submission may hold: refused before anything else is looked at.
        with pytest.raises(grpc.RpcError) as info_:
            raw(_repeated_jobs(J("j"), JOBS_MAX + 1), metadata=md, timeout=30)
        assert info_.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "field 'jobs'" in info_.value.details() and str(JOBS_MAX) in info_.value.details()
        nothing_kept()

        # Larger than the master receives: refused by gRPC itself, the master untouched.
        oversized = _repeated_jobs(J("j", args=["a" * (1 << 20)]), MESSAGE_BYTES_MAX // (1 << 20) + 1)
        with pytest.raises(grpc.RpcError) as info_:
            raw(oversized, metadata=md, timeout=30)
        assert info_.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, info_.value
        nothing_kept()

    with c.client() as cl:
        # One job over the per-job limit: the client refuses it, naming the job and the field.
        with pytest.raises(InvalidJobError, match=r"job 'j0': field 'args'"):
            cl.submit([J("j0", args=["a" * (1 << 20)])])
        assert cl.status().jobs_total == 0
        # More than the master takes in one message, every job within its limits: the client sends
        # it in parts (calls.submit_requests) and every job is kept and runs.
        big = [J(f"b{i}", args=["a" * 100_000] * 10) for i in range(MESSAGE_BYTES_MAX // 1_000_000 + 2)]
        assert cl.submit(big) == [j.name for j in big]
        assert set(cl.wait([j.name for j in big], timeout=60).values()) == {"SUCCEED"}
        # Still serving, and still running jobs.
        assert cl.submit([J("fine", exec="/bin/echo", args=["hi"])]) == ["fine"]
        assert cl.wait("fine", timeout=20) == {"fine": "SUCCEED"}
        assert cl.status().jobs_total == len(big) + 1
