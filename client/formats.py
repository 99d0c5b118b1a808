"""How the `pj` commands show things: aligned tables, times, core ids, node shares, sizes."""

from __future__ import annotations

import time
from collections.abc import Sequence

from pj.common.ranges import id_ranges

from .convert import NodeShare, StateChange


def plural(n: int, noun: str, nouns: str | None = None) -> str:
    """``1 job``, ``2 jobs``, ``0 jobs`` (``nouns``: an irregular plural)."""
    return f"{n} {noun if n == 1 else (nouns or noun + 's')}"


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


def fmt_shares(shares: Sequence[NodeShare]) -> str:
    parts = []
    for s in shares:
        text = f"{s.node}[{id_ranges(s.cores)}]"
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


def fmt_cpu(user_s: float, system_s: float) -> str:
    """CPU seconds, user + system: "0.31s"; "-" when nothing was measured."""
    total = user_s + system_s
    if total <= 0:
        return "-"
    return f"{total:.2f}s" if total < 100 else f"{total:.0f}s"


def fmt_rss(max_rss_kb: int) -> str:
    return fmt_bytes(max_rss_kb * 1024)


def tail_lines(text: str, limit: int, indent: str = "    ") -> list[str]:
    """The last ``limit`` lines of a stderr tail, indented, control characters but tabs shown as '?'
    (a terminal must not be driven by a task's output); a first line saying how many were left out."""
    lines = text.rstrip("\n").split("\n") if text.strip() else []
    shown = lines[-limit:] if limit > 0 else lines
    out = [f"{indent}... ({len(lines) - len(shown)} earlier lines)"] if len(shown) < len(lines) else []
    for line in shown:
        out.append(indent + "".join(c if _printable(c) else "?" for c in line.rstrip("\r")))
    return out


def _printable(c: str) -> bool:
    return c == "\t" or (c >= " " and not ("\x7f" <= c <= "\x9f"))  # no C0/C1 controls, no DEL
