"""`pj report html`: one self-contained page: the stats, the Gantt chart (inline SVG), the failures.

Nothing is loaded from anywhere: the CSS is inline, the chart is the SVG of ``svg.py`` written
into the page, and there is no script. Failed tasks are listed with their exit code, reason and
stderr tail (:data:`FAILURES_LISTED` at most; the page says how many more there were).
"""

from __future__ import annotations

from html import escape
from typing import Any

from .reading import JobLine, TaskLine

FAILURES_LISTED = 200

_CSS = """
body { font-family: sans-serif; margin: 24px; color: #222; max-width: 1100px; }
h1 { font-size: 20px; } h2 { font-size: 16px; margin-top: 28px; }
table { border-collapse: collapse; font-size: 13px; }
td, th { border-bottom: 1px solid #ddd; padding: 3px 10px 3px 0; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: #f6f6f6; margin: 0; padding: 4px; max-width: 620px; max-height: 160px; overflow: auto;
      font-size: 12px; white-space: pre-wrap; }
.failed { color: #d62728; font-weight: bold; }
"""


class Failures:
    """The tasks (and task-less jobs) that ended FAILED, in file order, the first ``limit`` kept."""

    def __init__(self, limit: int = FAILURES_LISTED) -> None:
        self.limit = limit
        self.items: list[dict[str, Any]] = []
        self.count = 0
        self._task_seen: str | None = None

    def job(self, job: JobLine) -> None:
        self._task_seen = None
        if job.state == "FAILED" and job.iterations is None:
            self._task_seen = job.name  # its task (if it has one) follows on the same line
            self._add({"name": job.name, "job": job.name, "exit_code": None, "reason": job.reason, "nodes": [],
                       "stderr_tail": None})  # fmt: skip

    def task(self, task: TaskLine) -> None:
        if task.state != "FAILED":
            return
        item = {"name": task.name, "job": task.job, "exit_code": task.exit_code, "reason": task.reason,
                "nodes": list(task.cores), "stderr_tail": task.stderr_tail}  # fmt: skip
        if self._task_seen == task.name and self.items and self.items[-1]["name"] == task.name:
            self.items[-1] = item  # the job line's own task: one entry, with the task's details
            return
        self._add(item)

    def _add(self, item: dict[str, Any]) -> None:
        self.count += 1
        if len(self.items) < self.limit:
            self.items.append(item)


def page(title: str, stats_rows: list[tuple[str, str]], chart_svg: str, failures: Failures) -> str:
    """The whole page as text."""
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>{escape(title)}</title>", f"<style>{_CSS}</style></head><body>",
           f"<h1>{escape(title)}</h1>", '<h2>Figures</h2><table class="stats">']  # fmt: skip
    for label, value in stats_rows:
        out.append(f"<tr><th>{escape(label)}</th><td>{escape(value)}</td></tr>")
    out.append("</table>")
    out.append('<h2>Gantt chart</h2><div class="gantt">')
    out.append(chart_svg)
    out.append("</div>")
    out.append(f'<h2>Failed tasks: <span class="failed" id="failed-count">{failures.count}</span></h2>')
    if failures.items:
        out.append('<table class="failures"><tr><th>task</th><th>exit code</th><th>nodes</th><th>reason</th>'
                   "<th>stderr (last lines)</th></tr>")
        for f in failures.items:
            code = "-" if f["exit_code"] is None else str(f["exit_code"])
            tail = f'<pre>{escape(f["stderr_tail"])}</pre>' if f["stderr_tail"] else "-"
            out.append(f'<tr class="failure"><td>{escape(f["name"])}</td><td class="num">{escape(code)}</td>'
                       f'<td>{escape(", ".join(f["nodes"]) or "-")}</td><td>{escape(f["reason"] or "-")}</td>'
                       f"<td>{tail}</td></tr>")
        out.append("</table>")
        if failures.count > len(failures.items):
            out.append(f"<p>... and {failures.count - len(failures.items)} more (see jobs.jsonl)</p>")
    else:
        out.append("<p>None.</p>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
