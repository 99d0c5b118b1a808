"""Memory sizes as users write them (a job's ``memory``, ``pj-agent --memory``), read into bytes.

Accepted: a number with a unit, ``512M``, ``4G``, ``1.5GiB``, ``2TB`` (K, M, G, T, with or without
``B`` or ``iB``; all powers of 1024, as Slurm means them), or a bare number (a JSON number or a
string of digits): MiB, as Slurm's ``--mem`` means it. Zero, negative or unreadable values raise
:class:`SizeError`, whose message lists the accepted forms.
"""

from __future__ import annotations

import math
import re

__all__ = ["MAX_BYTES", "SizeError", "format_size", "parse_size"]

MAX_BYTES = 2**50  # 1 PiB: more is a mistake (and more than any node registers)
FORMS = 'a size such as "512M", "4G" or "1.5GiB", or a number of MiB'

_UNITS = {"": 2**20, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
_RE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]?)(?:i?b)?\s*", re.IGNORECASE)


class SizeError(ValueError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_size(value: object) -> int:
    """Bytes for ``value`` (a str, an int or a float); raises SizeError."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise SizeError(f"expected {FORMS}, got {type(value).__name__}")
    if isinstance(value, str):
        m = _RE.fullmatch(value)
        if m is None:
            raise SizeError(f"cannot read {value!r}: expected {FORMS}")
        number, unit = float(m.group(1)), m.group(2).lower()
    else:
        number, unit = float(value), ""
    if not math.isfinite(number) or number <= 0:
        raise SizeError(f"must be more than 0, got {value!r}: expected {FORMS}")
    size = math.ceil(number * _UNITS[unit])
    if size > MAX_BYTES:
        raise SizeError(f"{value!r} is more than 1 PiB")
    return size


def format_size(n: int) -> str:
    """``4 GiB``, ``512 MiB``, ``1.5 GiB``: short, for messages."""
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            v = n / scale
            return f"{v:.0f} {unit}" if v == int(v) else f"{v:.1f} {unit}"
    return f"{n} B"
