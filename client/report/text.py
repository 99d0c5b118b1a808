"""The text form of each report: aligned tables like `pj status` (``--json`` prints the data itself)."""

from __future__ import annotations

from typing import Any

from ..formats import plural, table
from ..progress import fmt_duration


def secs(value: float | None) -> str:
    """0.0123 -> "12.3 ms"; 4.5 -> "4.50 s"; 83 -> "1:23"; None -> "-"."""
    if value is None:
        return "-"
    if abs(value) < 1:
        return f"{value * 1000:.1f} ms"
    if abs(value) < 60:
        return f"{value:.2f} s"
    return fmt_duration(value)


def counts(c: dict[str, int]) -> str:
    return ", ".join(f"{state} {n}" for state, n in c.items()) or "none"


def kb(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 1024 * 1024:
        return f"{value / 1024 / 1024:.1f} GiB"
    if value >= 1024:
        return f"{value / 1024:.1f} MiB"
    return f"{value:.0f} KiB"


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def quantiles(q: dict[str, Any], fmt: Any = secs) -> str:
    if not q.get("n"):
        return "-"
    return "  ".join(f"{k} {fmt(v)}" for k, v in q.items() if k != "n")


def stats_rows(r: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) pairs: the text report and the HTML page's table."""
    nodes = r["nodes"]
    nodes_text = ", ".join(f"{n} {c}" for n, c in nodes.items()) if len(nodes) <= 8 else (
        f"{plural(len(nodes), 'node')}, {plural(sum(nodes.values()), 'core')}")  # fmt: skip
    return [
        ("jobs", f"{sum(r['jobs'].values())}: {counts(r['jobs'])}"),
        ("tasks", f"{sum(r['tasks'].values())}: {counts(r['tasks'])}"),
        ("wall time", f"{secs(r['wall_s'])} (first submission to last end)"),
        ("tasks/s", "-" if r["tasks_per_s"] is None else f"{r['tasks_per_s']:.1f}"),
        ("cores", f"{sum(nodes.values())} ({nodes_text or '-'})"),
        ("core-seconds", f"used {r['core_s_used']:.1f} of {r['core_s_available']:.1f}: "
                         f"utilisation {pct(r['utilisation'])}"),
        ("task duration", quantiles(r["duration_s"])),
        ("submit to start", quantiles(r["submit_to_start_s"])),
    ]


def stats_text(r: dict[str, Any]) -> list[str]:
    return table(["", ""], [list(row) for row in stats_rows(r)])[1:]


def efficiency_text(r: dict[str, Any]) -> list[str]:
    o = r["overall"]
    lines = [f"overall: CPU {o['cpu_s']:.1f} s of {o['capacity_core_s']:.1f} core-seconds held: "
             f"efficiency {pct(o['efficiency'])} ({plural(o['tasks'], 'task')})"]  # fmt: skip
    if r["without_rusage"]:
        lines.append(f"{plural(r['without_rusage'], 'task')} without CPU figures (a report written before PJ kept them) left out")
    if not r["jobs"]:
        return lines
    rows = [[name, str(j["tasks"]), f"{j['cpu_s']:.1f}", f"{j['capacity_core_s']:.1f}", pct(j["efficiency"]),
             str(j["low_tasks"])] for name, j in sorted(r["jobs"].items())]  # fmt: skip
    lines += ["", *table(["JOB", "TASKS", "CPU_S", "CORE_S", "EFFICIENCY", f"BELOW_{r['low_threshold']:.0%}"], rows)]
    lines += ["", f"{plural(r['low_tasks'], 'task')} used less than {r['low_threshold']:.0%} of their cores"
              + (f"; the {len(r['worst'])} that wasted most core-seconds:" if r["worst"] else "")]
    if r["worst"]:
        lines += table(["TASK", "CORES", "WALL", "CPU", "EFFICIENCY", "STATE"],
                       [[w["name"], str(w["cores"]), secs(w["wall_s"]), secs(w["cpu_s"]), pct(w["efficiency"]),
                         w["state"]] for w in r["worst"]])  # fmt: skip
    return lines


def rusage_text(r: dict[str, Any]) -> list[str]:
    def row(name: str, j: dict[str, Any]) -> list[str]:
        c, m = j["cpu_s"], j["max_rss_kb"]
        return [name, str(max(c["n"], m["n"])), secs(c["min"]), secs(c["median"]), secs(c["max"]),
                kb(m["min"]), kb(m["median"]), kb(m["max"])]  # fmt: skip

    heads = ["JOB", "TASKS", "CPU_MIN", "CPU_MEDIAN", "CPU_MAX", "RSS_MIN", "RSS_MEDIAN", "RSS_MAX"]
    lines = table(heads, [row(n, j) for n, j in r["jobs"].items()] + [row("(all)", r["overall"])])
    if r["without_rusage"]:
        lines.append(f"{plural(r['without_rusage'], 'task')} without CPU or memory figures "
                     "(a report written before PJ kept them)")
    return lines


_WIDTHS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)


def launch_text(r: dict[str, Any], max_rows: int = 120) -> list[str]:
    lines = table(["", ""], [
        ["launches", str(r["launches"])],
        ["submit to start", quantiles(r["submit_to_start_s"])],
        ["scheduled to start", quantiles(r["schedule_to_start_s"])],
        ["launch rate", f"peak {r['peak_per_s']}/s, mean {r['mean_per_s'] or 0:.1f}/s over the seconds with "
                        "launches and between"],
    ])[1:]  # fmt: skip
    per = r["per_second"]
    if not per:
        return lines
    width = next(w for w in _WIDTHS if len(per) / w <= max_rows or w == _WIDTHS[-1])  # --json keeps seconds
    rows = []
    peak = max(sum(per[i : i + width]) for i in range(0, len(per), width)) or 1
    for i in range(0, len(per), width):
        n = sum(per[i : i + width])
        t = r["first_second"] + i
        rows.append([f"{t}-{t + width}s", str(n), f"{n / width:.1f}", "#" * round(40 * n / peak)])
    return [*lines, "", *table(["SECONDS", "LAUNCHES", "PER_S", ""], rows)]
