"""`pj report KIND [--workdir DIR] [--json] [-o FILE]`: the parser and what each kind prints.

One pass over DIR/jobs.jsonl feeds the aggregators a kind needs (each has ``.job(JobLine)`` and
``.task(TaskLine)``); then the result goes out as text (stdout), ``--json``, or to ``-o FILE``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from ..commands import UsageError
from ..formats import plural
from .reading import JobLine, ReportError, TaskLine, records, report_path

KINDS = ("stats", "gantt", "efficiency", "rusage", "launch", "html")


class Aggregator(Protocol):
    def job(self, job: JobLine) -> None: ...
    def task(self, task: TaskLine) -> None: ...


def add_parser(sub: Any) -> None:
    """Register `pj report` on the `pj` subparsers."""
    r = sub.add_parser(
        "report", help="what a campaign did, from DIR/jobs.jsonl: " + ", ".join(KINDS),
        description="Read a campaign's report (DIR/jobs.jsonl, also while the campaign runs: complete lines "
        "only) and show: stats (counts, wall time, rates, utilisation, durations, latencies), gantt (a chart: "
        "-o FILE.png or FILE.svg), efficiency (CPU time / cores x wall), rusage (CPU and peak memory per job), "
        "launch (latency and launches per second), html (one offline page: stats, chart, failures).")  # fmt: skip
    r.add_argument("kind", choices=KINDS, metavar="KIND", help=" | ".join(KINDS))
    r.add_argument("--workdir", metavar="DIR", default=argparse.SUPPRESS,
                   help="the campaign's workdir, holding jobs.jsonl (default $PJ_WORKDIR); a report file works too")
    r.add_argument("--json", action="store_true", default=argparse.SUPPRESS,  # also `pj --json report`
                   help="machine-readable output")
    r.add_argument("-o", "--output", metavar="FILE", default=None,
                   help="write there instead of stdout (gantt: FILE.png or FILE.svg, required)")
    r.add_argument("--below", metavar="F", type=_share, default=0.25,
                   help="efficiency: list tasks whose CPU time is below this share of cores x wall (default 0.25)")
    r.set_defaults(func=cmd_report)


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a share between 0 and 1, got {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a share between 0 and 1, got {text!r}")
    return value


def scan(path: Path, aggregators: list[Aggregator]) -> None:
    """Feed every record of the report to every aggregator, in file order."""
    on_job = [a.job for a in aggregators]
    on_task = [a.task for a in aggregators]
    if len(aggregators) == 1:
        job_fn, task_fn = on_job[0], on_task[0]
        for rec in records(path):
            if type(rec) is TaskLine:
                task_fn(rec)
            else:
                job_fn(rec)  # type: ignore[arg-type]
        return
    for rec in records(path):
        for fn in on_task if type(rec) is TaskLine else on_job:
            fn(rec)  # type: ignore[arg-type]


def cmd_report(args: argparse.Namespace) -> int:
    try:
        return _report(args)
    except ReportError as e:
        raise UsageError(str(e)) from None


def _report(args: argparse.Namespace) -> int:
    from . import stats, text, usage

    kind, out = args.kind, args.output
    if kind == "gantt":
        if out is None or Path(out).suffix.lower() not in (".png", ".svg"):
            raise UsageError("pj report gantt: give -o FILE.png or -o FILE.svg (the format follows the extension)")
        if Path(out).suffix.lower() == ".png":
            _check_matplotlib()
    path = report_path(getattr(args, "workdir", None))
    announced = stats.node_sizes_from_log(path.parent)
    if kind in ("gantt", "html"):
        return _chart(args, path, announced)
    make: dict[str, Callable[[], Any]] = {"stats": stats.Stats, "efficiency": lambda: usage.Efficiency(args.below),
                                          "rusage": usage.Rusage, "launch": usage.Launch}  # fmt: skip
    agg = make[kind]()
    scan(path, [agg])
    result = agg.result(announced) if kind == "stats" else agg.result()
    if args.json:
        _emit(json.dumps(result, indent=2) + "\n", out)
        return 0
    fmt: dict[str, Callable[[dict[str, Any]], list[str]]] = {
        "stats": text.stats_text, "efficiency": text.efficiency_text, "rusage": text.rusage_text,
        "launch": text.launch_text}  # fmt: skip
    _emit("".join(line + "\n" for line in fmt[kind](result)), out)
    return 0


def _chart(args: argparse.Namespace, path: Path, announced: dict[str, int]) -> int:
    from . import gantt, html, stats, svg, text

    data = gantt.GanttData()
    if args.kind == "gantt":
        scan(path, [data])
        chart = data.chart(announced)
        title = f"{path.parent.name or path}: {plural(chart.tasks, 'task')}, {chart.failed} failed"
        if args.output.lower().endswith(".png"):
            from .png import write_png

            try:
                write_png(chart, Path(args.output), title)
            except OSError as e:
                raise UsageError(f"-o {args.output}: cannot write ({e.strerror or e})") from None
        else:
            _emit(svg.render(chart, title) + "\n", args.output)
        if args.json:
            print(json.dumps({"file": args.output, "mode": chart.mode, "rows": len(chart.rows) or len(chart.bands),
                              "bars": len(chart.bars), "tasks": chart.tasks, "failed": chart.failed}))  # fmt: skip
        return 0
    st, failures = stats.Stats(), html.Failures()
    scan(path, [st, data, failures])
    chart = data.chart(announced)
    result = st.result(announced)
    title = f"PJ campaign {path.parent.name or path}"
    if args.json:
        result["failures"] = failures.items
        _emit(json.dumps(result, indent=2) + "\n", args.output)
        return 0
    _emit(html.page(title, text.stats_rows(result), svg.render(chart), failures), args.output)
    return 0


def _check_matplotlib() -> None:
    from .png import MissingMatplotlib, _figure_class

    try:
        _figure_class()
    except MissingMatplotlib as e:
        raise UsageError(str(e)) from None


def _emit(content: str, out: str | None) -> None:
    if out is None:
        sys.stdout.write(content)
        return
    try:
        Path(out).write_text(content)
    except OSError as e:
        raise UsageError(f"-o {out}: cannot write ({e.strerror})") from None
