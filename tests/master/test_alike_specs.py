"""The master reads jobs alike but for their names once (convert.alike, issue 16: a 1M Submit's
ingest 16.6 -> 10.8 s in scripts/submit_split.py): the specs it makes are the same as read one by
one, a job that differs in any field is read on its own, the request is left as it came (it is
journaled), and a copy's name is still checked (invalid, duplicate, already known)."""

from __future__ import annotations

import pytest

from pj.common.speccheck import SpecError, check_specs
from pj.master import convert
from pj.v1 import pj_pb2 as pb


def batch() -> list[pb.JobSpec]:
    out = [pb.JobSpec(name=f"t{i}", exec="/bin/true", args=["-x", "1"], env={"A": "1", "B": "2"}) for i in range(4)]
    out.append(pb.JobSpec(name="other", exec="/bin/true", args=["-x", "2"], env={"A": "1", "B": "2"}))
    out.append(pb.JobSpec(name="t9", exec="/bin/true", args=["-x", "1"], env={"B": "2", "A": "1"}))  # same map
    out.append(pb.JobSpec(name="late", exec="/bin/true", args=["-x", "1"], env={"A": "1", "B": "2"}, after=["t0"]))
    return out


def test_alike_specs_are_copies_of_the_first_and_equal_to_those_read_one_by_one() -> None:
    msgs = batch()
    before = [m.SerializeToString() for m in msgs]
    copies = convert.alike(msgs)
    assert copies == [-1, 0, 0, 0, -1, 0, -1]
    assert [m.SerializeToString() for m in msgs] == before  # the request is journaled as it came
    got = convert.specs_from_pb(msgs, "/base", copies)
    one_by_one = convert.specs_from_pb(msgs, "/base")
    # a copy's spec is its original's, the very object; renamed it is what reading it alone gives
    assert [s[1:] for s in got] == [s[1:] for s in one_by_one]
    assert got[1] is got[0] and got[5] is got[0] and got[4] is not got[0]
    assert [s.name for s in got] == ["t0", "t0", "t0", "t0", "other", "t0", "late"]
    assert got[1].args == ("-x", "1") and got[1].base_dir == "/base"


@pytest.mark.parametrize(("name", "why"), [("bad/name", "name"), ("t1", "also the name of job #2"),
                                           ("known", "already exists")])
def test_a_copy_s_name_is_still_checked(name: str, why: str) -> None:
    msgs = batch()
    msgs[2].name = name
    copies = convert.alike(msgs)
    assert copies[2] == 0
    with pytest.raises(SpecError, match=why):
        check_specs(msgs, known=lambda n: object() if n == "known" else None,  # type: ignore[arg-type,return-value]
                    renamed=[k >= 0 for k in copies])
