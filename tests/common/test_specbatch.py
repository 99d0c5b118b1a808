"""SpecBatch: jobs alike but for their names as one spec and names, from the reader to the wire and back."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pj.client import calls
from pj.client.errors import InvalidJobError
from pj.client.jobfile import JobFileError, parse_jobfile
from pj.common.peercheck import PeerError
from pj.common.specbatch import BatchError, SpecBatch, chunk_bounds, request_jobs
from pj.common.speccheck import SpecError, check_specs
from pj.master import convert
from pj.master.admission import SubmitError
from pj.master.core import Core
from pj.v1 import pj_pb2


def spec(name: str, exe: str = "/bin/true", after: list[str] | None = None) -> pj_pb2.JobSpec:
    return pj_pb2.JobSpec(name=name, exec=exe, after=after or [])


def run(n: int, first: pj_pb2.JobSpec | None = None) -> SpecBatch:
    """Jobs a0..a<n-1>, the rest copies of the first (``first``, else a0 running /bin/true)."""
    b = SpecBatch()
    b.add(first or spec("a0"))
    for i in range(1, n):
        b.add_copy(0, f"a{i}")
    return b


def test_a_request_carries_each_run_as_one_spec_and_names() -> None:
    b = run(4)
    b.add(spec("x", "/bin/echo"))
    b.add_copy(0, "a4")  # alike a0, but not right after its run: a message of its own
    b.add_copy(0, "a5")
    req = b.request(0, len(b), "/base")
    assert [j.name for j in req.jobs] == ["a0", "x", "a4"]
    assert list(req.copies) == [3, 0, 1]
    assert list(req.copy_names) == ["a1", "a2", "a3", "a5"]
    assert request_jobs(req) == 7
    back = SpecBatch.from_request(req)
    assert back.names == ["a0", "a1", "a2", "a3", "x", "a4", "a5"]
    assert [s.name for s in back.expand()] == back.names
    assert [s.exec for s in back.expand()] == ["/bin/true"] * 4 + ["/bin/echo", "/bin/true", "/bin/true"]


def test_a_part_that_starts_inside_a_run_sends_its_first_copy_as_a_message() -> None:
    b = run(6)
    req = b.request(3, 6, "/")
    assert [j.name for j in req.jobs] == ["a3"] and list(req.copy_names) == ["a4", "a5"]
    assert SpecBatch.from_request(req).names == ["a3", "a4", "a5"]


def test_a_request_without_copies_has_none_on_the_wire() -> None:
    b = SpecBatch.of([spec("a"), spec("b", "/bin/echo")])
    req = b.request(0, 2, "/")
    assert not req.copies and not req.copy_names


@pytest.mark.parametrize(("copies", "names", "field"), [
    ([1, 1, 1], ["x", "y", "z"], "copies"),  # more entries than jobs
    ([2], ["x"], "copy_names"),  # fewer names than copies
    ([0, 1], ["x", "y"], "copy_names"),  # more
])
def test_copies_that_do_not_add_up_are_refused_naming_the_field(copies: list[int], names: list[str],
                                                               field: str) -> None:
    req = pj_pb2.SubmitRequest(jobs=[spec("a"), spec("b")], copies=copies, copy_names=names)
    with pytest.raises(BatchError) as e:
        SpecBatch.from_request(req)
    assert e.value.field == field
    with pytest.raises(PeerError, match=f"SubmitRequest: field '{field}'"):
        convert.submit_batch(req)


def test_the_master_checks_a_copy_by_its_own_name() -> None:
    def batch(*copy_names: str) -> SpecBatch:
        req = pj_pb2.SubmitRequest(jobs=[spec("a", after=["dep"]), spec("dep")], copies=[len(copy_names)],
                                   copy_names=copy_names)
        return convert.submit_batch(req)

    def check(b: SpecBatch, known: set[str] = set()) -> None:  # noqa: B006
        check_specs(b.specs, known=lambda n: object() if n in known else None,  # type: ignore[arg-type,return-value]
                    renamed=b.renamed, names=b.names)

    check(batch("b", "c"))
    with pytest.raises(SpecError, match="'a' is also the name of job #1"):
        check(batch("b", "a"))
    with pytest.raises(SpecError, match="must not contain '/'"):
        check(batch("b/c"))
    with pytest.raises(SpecError, match="already exists"):
        check(batch("b", "old"), known={"old"})
    selfish = convert.submit_batch(pj_pb2.SubmitRequest(jobs=[spec("a", after=["b"])], copies=[1], copy_names=["b"]))
    with pytest.raises(SpecError, match="'b': a job cannot depend on itself"):
        check(selfish)  # a copy named like what its original waits for
    b = batch("b", "c")
    specs = convert.batch_specs(b, "/w")
    assert specs[1] is specs[0] and specs[2] is specs[0] and specs[3].name == "dep"
    core = Core()
    assert core.submit(specs, 1.0, names=b.names) == ["a", "b", "c", "dep"]
    assert core.registry.get("c").spec == specs[0]._replace(name="c")  # type: ignore[union-attr]
    core.check_submit([specs[0]], ["x"])
    with pytest.raises(SubmitError, match="job 'b': field 'name'"):
        core.check_submit([specs[0], specs[0]], ["x", "b"])  # each copy's own name counts


def test_chunks_keep_a_copy_with_the_later_job_its_original_waits_for() -> None:
    b = run(6, spec("a0", after=["late"]))
    b.add(spec("late"))
    assert list(chunk_bounds(b, 2)) == [(0, 7)]
    assert list(chunk_bounds(run(6), 2)) == [(0, 2), (2, 4), (4, 6)]


def test_dicts_and_messages_mixed_keep_their_order_and_copies() -> None:
    d = [{"name": f"d{i}", "exec": "/bin/true"} for i in range(4)]
    m = spec("m", "/bin/echo")
    batch, _ = calls.to_batch([d[0], d[1], m, d[2], d[3]])
    assert batch.names == ["d0", "d1", "m", "d2", "d3"]
    assert batch.copy_of == [-1, 0, -1, 0, 0]
    specs, _ = calls.to_specs([d[0], d[1], m, d[2], d[3]])
    assert [s.name for s in specs] == batch.names and specs[3].exec == "/bin/true"


def test_a_copy_given_as_python_values_is_still_refused_where_json_cannot_hold_it() -> None:
    ok = {"name": "a", "exec": "/bin/true", "walltime": 10.0}
    with pytest.raises(InvalidJobError, match=r"job 'b' \(#2\): NaN is not a number JSON allows"):
        calls.to_specs([ok, {"name": "b", "exec": "/bin/true", "walltime": float("nan")}])
    with pytest.raises(InvalidJobError, match=r"job 'b' \(#2\): cannot be written as JSON"):
        calls.to_specs([ok, {"name": "b", "exec": "/bin/true", "args": ("x", object())}])
    with pytest.raises(InvalidJobError, match=r"\(#2\): field 'name': .* not valid Unicode"):
        calls.to_specs([ok, {"name": "b\udc80", "exec": "/bin/true", "walltime": 10.0}])
    with pytest.raises(InvalidJobError, match=r"job 'b c' \(#2\): field 'name'"):
        calls.to_specs([ok, {"name": "b c", "exec": "/bin/true", "walltime": 10.0}])


_job = st.tuples(st.sampled_from(["/bin/true", "/bin/echo", "/bin/date"]), st.integers(1, 3))


@given(st.lists(_job, min_size=1, max_size=40), st.integers(1, 12))
def test_any_batch_survives_the_wire_in_parts(kinds: list[tuple[str, int]], chunk: int) -> None:
    jobs = [{"name": f"j{i}", "exec": exe, "cores": cores} for i, (exe, cores) in enumerate(kinds)]
    want, _ = calls.to_specs(jobs)
    parts = calls.submit_requests(jobs, "/b", 1, chunk=chunk)
    assert all(request_jobs(p) <= chunk for p in parts)
    got = [s for p in parts for s in SpecBatch.from_request(p).expand()]
    assert [s.SerializeToString(deterministic=True) for s in got] == [
        s.SerializeToString(deterministic=True) for s in want]
    assert [(s.name, s.exec, s.cores.min) for s in want] == [
        (f"j{i}", exe, cores) for i, (exe, cores) in enumerate(kinds)]


def test_only_keeps_the_named_jobs_and_their_copies() -> None:
    b = run(4)
    b.add(spec("x", "/bin/echo"))
    kept = b.only(lambda n: n not in {"a0", "x"})  # a resumed campaign: a0 and x were journaled
    assert kept.names == ["a1", "a2", "a3"] and kept.copy_of == [-1, 0, 0]
    assert [s.name for s in kept.expand()] == ["a1", "a2", "a3"]
    assert kept.specs[0].exec == "/bin/true" and b.specs[0].name == "a0"  # the original is left as it was


def test_jobs_with_env_and_tuples_are_copies_too_and_a_copys_twice_given_key_is_still_refused() -> None:
    jobs = [{"name": f"s{i}", "exec": "/bin/env", "args": ("-0",), "env": {"OMP_NUM_THREADS": "4"}}
            for i in range(3)]
    batch, _ = calls.to_batch(jobs)
    assert batch.copy_of == [-1, 0, 0]
    assert [dict(s.env) for s in batch.expand()] == [{"OMP_NUM_THREADS": "4"}] * 3
    assert [list(s.args) for s in batch.expand()] == [["-0"]] * 3
    other_env = [*jobs, {**jobs[0], "name": "t", "env": {"OMP_NUM_THREADS": "8"}}]
    assert calls.to_batch(other_env)[0].copy_of == [-1, 0, 0, -1]
    text = ('{"jobs": [{"name": "a", "exec": "/bin/true", "env": {"X": "1"}},'
            ' {"name": "b", "exec": "/bin/true", "env": {"X": "1", "X": "1"}}]}')
    with pytest.raises(JobFileError, match=r"job 'b' \(#2\): key 'X' is given twice in 'env'"):
        parse_jobfile(text, "f.json")
