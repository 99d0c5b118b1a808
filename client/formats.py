"""How the `pj` commands show things: aligned tables, times, core ids, node shares, sizes."""

from __future__ import annotations

import time
from collections.abc import Sequence

from .convert import NodeShare, StateChange


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Aligned columns; the last one is not padded."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    lines = []
    for r in [list(headers), *rows]:
        cells = [c.ljust(widths[i]) if i < len(r) - 1 else c for i, c in enumerate(r)]
        lines.append("  ".join(cells).rstrip())
    return lines


def fmt_time(t: float, now: float | None = None) -> str:
    """Epoch seconds -> "14:03:07.250" today, "2024-05-01 14:03:07" another day; "-" for 0."""
    if t <= 0:
        return "-"
    lt = time.localtime(t)
    today = time.localtime(now if now is not None else time.time())
    if lt[:3] == today[:3]:
        return time.strftime("%H:%M:%S", lt) + f".{int((t % 1) * 1000):03d}"
    return time.strftime("%Y-%m-%d %H:%M:%S", lt)


def fmt_ids(ids: Sequence[int]) -> str:
    """[0, 1, 2, 3, 6, 8, 9] -> "0-3,6,8-9"."""
    out: list[str] = []
    vals = sorted(ids)
    i = 0
    while i < len(vals):
        j = i
        while j + 1 < len(vals) and vals[j + 1] == vals[j] + 1:
            j += 1
        out.append(str(vals[i]) if i == j else f"{vals[i]}-{vals[j]}")
        i = j + 1
    return ",".join(out)


def fmt_shares(shares: Sequence[NodeShare]) -> str:
    parts = []
    for s in shares:
        text = f"{s.node}[{fmt_ids(s.cores)}]"
        if s.gpus:
            text += f" gpu[{','.join(s.gpus)}]"
        parts.append(text)
    return " ".join(parts) or "-"


def fmt_history(history: Sequence[StateChange]) -> str:
    return ", ".join(f"{h.state} {fmt_time(h.time)}" for h in history) or "-"


def fmt_bytes(n: int) -> str:
    if n <= 0:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def fmt_iterations(done: int, total: int, failed: int) -> str:
    if not total:
        return "-"
    return f"{done}/{total}" + (f" ({failed} failed)" if failed else "")
