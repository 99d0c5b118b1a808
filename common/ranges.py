"""Sorted integers as ranges: ``[0, 1, 2, 3, 6, 8, 9]`` -> ``0-3,6,8-9``.

The one spelling of a set of core ids, CPU ids or host-name numbers (as taskset, /proc and
Slurm's host lists write them). Pure.
"""

from __future__ import annotations

from collections.abc import Iterable


def id_ranges(ids: Iterable[int], width: int = 0) -> str:
    """The ids sorted, runs of consecutive ones as ``a-b``, joined by commas; each number
    zero-padded to ``width`` digits (Slurm's ``n[01-03]``). ``()`` -> ``""``."""
    vals = sorted(ids)
    out: list[str] = []
    i = 0
    while i < len(vals):
        j = i
        while j + 1 < len(vals) and vals[j + 1] == vals[j] + 1:
            j += 1
        a = str(vals[i]).zfill(width)
        out.append(a if i == j else f"{a}-{str(vals[j]).zfill(width)}")
        i = j + 1
    return ",".join(out)
