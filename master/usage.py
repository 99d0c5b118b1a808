"""What a task used (CPU time, peak memory) and the stderr tail of a failed one. Pure.

Agents measure each task when they reap it (wait4 of its main process) and send the figures in
TaskExited, with the last 4 KB of its stderr when it did not exit 0. The registry keeps them on the
task (and on each earlier attempt of a retried one) compactly: the three figures packed in one
24-byte ``bytes`` (b"" until the task has ended: ~57 bytes a task, against ~150 for a tuple of
Python floats), the tail only for a FAILED task (a task that succeeded, or was canceled, keeps
none).
"""

from __future__ import annotations

import math
import struct
from typing import NamedTuple

_PACK = struct.Struct("<ddQ")
NONE = b""


class Figures(NamedTuple):
    cpu_user_s: float
    cpu_system_s: float
    max_rss_kb: int


ZERO = Figures(0.0, 0.0, 0)


def pack(cpu_user_s: float, cpu_system_s: float, max_rss_kb: int) -> bytes:
    """The figures as one bytes (b"" when all three are 0: nothing measured, e.g. a dry run)."""
    if not (cpu_user_s or cpu_system_s or max_rss_kb):
        return NONE
    return _PACK.pack(_finite(cpu_user_s), _finite(cpu_system_s), max(0, min(int(max_rss_kb), 2**63 - 1)))


def unpack(packed: bytes) -> Figures:
    if not packed:
        return ZERO
    u, s, rss = _PACK.unpack(packed)
    return Figures(u, s, rss)


def _finite(x: float) -> float:
    return x if math.isfinite(x) and x >= 0 else 0.0


_ZERO_FIELDS: dict[str, float | int] = {"cpu_user_s": 0.0, "cpu_system_s": 0.0, "max_rss_kb": 0}


def as_dict(packed: bytes) -> dict[str, float | int]:
    """The figures as report fields (jobs.jsonl): times rounded to the microsecond. The dict
    may be shared: spread it (``**``), never change it."""
    if not packed:
        return _ZERO_FIELDS
    f = unpack(packed)
    return {"cpu_user_s": round(f.cpu_user_s, 6), "cpu_system_s": round(f.cpu_system_s, 6),
            "max_rss_kb": f.max_rss_kb}
