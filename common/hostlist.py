"""Slurm's host-list and count syntax, both ways.

* host lists: ``n[1-3,7],gpu[01-02]`` <-> ``n1 n2 n3 n7 gpu01 gpu02`` (zero padding kept, several
  bracket groups in one name give every combination: ``r[1-2]n[1-2]`` is four names);
* counts: ``4(x2),2`` <-> ``4 4 2`` (as in SLURM_JOB_CPUS_PER_NODE and SLURM_TASKS_PER_NODE).

Pure functions; a malformed text raises HostlistError naming what is wrong.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable

from .ranges import id_ranges

MAX_NAMES = 1_000_000  # an expansion bigger than this is a mistake, not a cluster


class HostlistError(ValueError):
    """A host list or count list that does not parse."""


def _split_top(text: str) -> list[str]:
    """Split at commas that are not inside brackets."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "[":
            if depth:
                raise HostlistError(f"host list {text!r}: nested '['")
            depth = 1
        elif ch == "]":
            if not depth:
                raise HostlistError(f"host list {text!r}: ']' without '['")
            depth = 0
        elif ch == "," and not depth:
            parts.append(text[start:i])
            start = i + 1
    if depth:
        raise HostlistError(f"host list {text!r}: '[' is never closed")
    parts.append(text[start:])
    return parts


_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")


def _expand_range(spec: str, text: str) -> list[str]:
    out: list[str] = []
    for piece in spec.split(","):
        piece = piece.strip()
        m = _RANGE.match(piece)
        if not m:
            raise HostlistError(f"host list {text!r}: {piece!r} is not a number or a range like 1-4")
        lo_s, hi_s = m.group(1), m.group(2)
        width = len(lo_s) if lo_s.startswith("0") and len(lo_s) > 1 else 0
        lo, hi = int(lo_s), int(hi_s) if hi_s is not None else int(lo_s)
        if hi < lo:
            raise HostlistError(f"host list {text!r}: range {piece!r} goes backwards")
        if hi - lo + len(out) >= MAX_NAMES:
            raise HostlistError(f"host list {text!r}: more than {MAX_NAMES} names")
        out.extend(str(n).zfill(width) for n in range(lo, hi + 1))
    return out


def expand(text: str) -> list[str]:
    """``n[1-3,7],gpu[01-02]`` -> ``['n1', 'n2', 'n3', 'n7', 'gpu01', 'gpu02']`` (order kept)."""
    names: list[str] = []
    for item in _split_top(text.strip()):
        item = item.strip()
        if not item:
            if text.strip():
                raise HostlistError(f"host list {text!r}: an empty name between commas")
            continue
        pieces = re.split(r"(\[[^\]]*\])", item)  # literal, [group], literal, ...
        choices: list[list[str]] = []
        for p in pieces:
            if p.startswith("["):
                choices.append(_expand_range(p[1:-1], text))
            elif p:
                if any(c in p for c in " \t"):
                    raise HostlistError(f"host list {text!r}: a space inside the name {item!r}")
                choices.append([p])
        total = 1
        for c in choices:
            total *= len(c)
        if total + len(names) > MAX_NAMES:
            raise HostlistError(f"host list {text!r}: more than {MAX_NAMES} names")
        names.extend("".join(combo) for combo in itertools.product(*choices))
    return names


_TAIL = re.compile(r"^(.*?)(\d+)$")


def compress(names: Iterable[str]) -> str:
    """``['n1', 'n2', 'n3', 'n7']`` -> ``n[1-3,7]``: groups by prefix (in order of first
    appearance), numbers sorted within a group, duplicates dropped; a lone name stays plain."""
    groups: dict[tuple[str, int], set[int]] = {}
    order: list[tuple[str, int] | str] = []
    seen: set[str] = set()
    for name in names:
        if name in seen:
            continue
        seen.add(name)
        m = _TAIL.match(name)
        if not m:
            order.append(name)
            continue
        digits = m.group(2)
        width = len(digits) if digits.startswith("0") and len(digits) > 1 else 0
        key = (m.group(1), width)
        if key not in groups:
            groups[key] = set()
            order.append(key)
        groups[key].add(int(digits))
    out: list[str] = []
    for entry in order:
        if isinstance(entry, str):
            out.append(entry)
            continue
        prefix, width = entry
        nums = sorted(groups[entry])
        if len(nums) == 1:
            out.append(f"{prefix}{str(nums[0]).zfill(width)}")
        else:
            out.append(f"{prefix}[{id_ranges(nums, width)}]")
    return ",".join(out)


_COUNT = re.compile(r"^(\d+)(?:\(x(\d+)\))?$")


def expand_counts(text: str) -> list[int]:
    """``4(x2),2`` -> ``[4, 4, 2]``."""
    out: list[int] = []
    for piece in text.strip().split(","):
        piece = piece.strip()
        m = _COUNT.match(piece)
        if not m:
            raise HostlistError(f"count list {text!r}: {piece!r} is not N or N(xK)")
        reps = int(m.group(2)) if m.group(2) else 1
        if reps + len(out) > MAX_NAMES:
            raise HostlistError(f"count list {text!r}: more than {MAX_NAMES} entries")
        out.extend([int(m.group(1))] * reps)
    return out


def compress_counts(counts: Iterable[int]) -> str:
    """``[4, 4, 2]`` -> ``4(x2),2``."""
    out: list[str] = []
    for value, run in itertools.groupby(counts):
        n = sum(1 for _ in run)
        out.append(str(value) if n == 1 else f"{value}(x{n})")
    return ",".join(out)
