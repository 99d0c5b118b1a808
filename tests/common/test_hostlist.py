"""Slurm host lists and counts, as Slurm writes them in SLURM_JOB_NODELIST and SLURM_JOB_CPUS_PER_NODE."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pj.common.hostlist import HostlistError, compress, compress_counts, expand, expand_counts


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("n1", ["n1"]),
        ("n[1-3]", ["n1", "n2", "n3"]),
        ("n[1-3,7],gpu[01-02]", ["n1", "n2", "n3", "n7", "gpu01", "gpu02"]),
        ("n[1,3]", ["n1", "n3"]),
        ("node[08-10]", ["node08", "node09", "node10"]),
        ("a,b,c", ["a", "b", "c"]),
        ("r[1-2]n[1-2]", ["r1n1", "r1n2", "r2n1", "r2n2"]),
        ("n[1-2]-ib", ["n1-ib", "n2-ib"]),
        ("n[5]", ["n5"]),
        ("", []),
        (" n[1-2] ", ["n1", "n2"]),
    ],
)
def test_expand(text: str, names: list[str]) -> None:
    assert expand(text) == names


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("n[1-3", "never closed"),
        ("n1-3]", "without"),
        ("n[3-1]", "backwards"),
        ("n[a-b]", "not a number"),
        ("n[[1]]", "nested"),
        ("n1,,n2", "empty name"),
        ("n[1-99999999]", "more than"),
    ],
)
def test_expand_refuses_malformed_lists(text: str, says: str) -> None:
    with pytest.raises(HostlistError, match=says):
        expand(text)


@pytest.mark.parametrize(
    ("names", "text"),
    [
        (["n1", "n2", "n3", "n7"], "n[1-3,7]"),
        (["n1"], "n1"),
        (["n2", "n1"], "n[1-2]"),
        (["gpu01", "gpu02", "n1"], "gpu[01-02],n1"),
        (["login", "n1", "n3"], "login,n[1,3]"),
        (["n1", "n1"], "n1"),
        ([], ""),
    ],
)
def test_compress(names: list[str], text: str) -> None:
    assert compress(names) == text


def test_counts() -> None:
    assert expand_counts("4(x2),2") == [4, 4, 2]
    assert expand_counts("36") == [36]
    assert compress_counts([4, 4, 2]) == "4(x2),2"
    assert compress_counts([1]) == "1"
    with pytest.raises(HostlistError, match="N or N"):
        expand_counts("4(x)")


@given(st.lists(st.tuples(st.sampled_from(["n", "gpu", "r1n"]), st.integers(0, 300)), max_size=40))
def test_compress_then_expand_gives_the_same_set(pairs: list[tuple[str, int]]) -> None:
    names = [f"{p}{i}" for p, i in pairs]
    assert sorted(set(expand(compress(names)))) == sorted(set(names))


@given(st.lists(st.integers(1, 128), max_size=30))
def test_counts_round_trip(counts: list[int]) -> None:
    if counts:
        assert expand_counts(compress_counts(counts)) == counts
