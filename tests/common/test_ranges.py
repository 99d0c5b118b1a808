"""common/ranges.py: the one formatter of ids as ranges (cores, CPUs, host-name numbers)."""

from __future__ import annotations

from pj.common.hostlist import compress
from pj.common.ranges import id_ranges


def test_id_ranges() -> None:
    assert id_ranges([9, 0, 1, 2, 3, 6, 8]) == "0-3,6,8-9"
    assert id_ranges((0, 1, 2, 5, 7, 8)) == "0-2,5,7-8"
    assert id_ranges((3,)) == "3"
    assert id_ranges(()) == ""
    assert id_ranges(iter({4, 2, 3})) == "2-4"


def test_id_ranges_zero_padded() -> None:
    assert id_ranges([1, 2, 3, 7], width=2) == "01-03,07"
    assert compress(["n01", "n02", "n03", "n07"]) == "n[01-03,07]"
