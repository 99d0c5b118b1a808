"""pj report's pure aggregation on hand-written lines: every figure against values computed by hand.

The lines are in report_lines.py; the arithmetic is written out next to each assertion.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # report_lines beside this file
from report_lines import write_report

from pj.client.report.command import scan
from pj.client.report.gantt import BINS, FLAG_FAILED, FLAG_OK, GanttData
from pj.client.report.html import Failures
from pj.client.report.stats import Stats, median, node_sizes_from_log, quantile, summary
from pj.client.report.usage import Efficiency, Launch, Rusage


@pytest.fixture
def report(tmp_path: Path) -> Path:
    return write_report(tmp_path / "run")


def test_quantiles_by_hand() -> None:
    assert median([1.0, 2.0, 3.0]) == 2.0
    assert median([1.0, 2.0, 3.0, 10.0]) == 2.5
    values = [float(i) for i in range(1, 21)]  # 1..20: p95 is rank ceil(19) = 19
    assert quantile(values, 0.95) == 19.0
    assert quantile([5.0], 0.95) == 5.0
    assert summary([3.0, 1.0, 2.0]) == {"n": 3, "min": 1.0, "median": 2.0, "p95": 3.0, "max": 3.0}
    assert summary([]) == {"n": 0, "min": None, "median": None, "p95": None, "max": None}


def test_stats(report: Path) -> None:
    st = Stats()
    scan(report, [st])
    r = st.result()
    assert r["jobs"] == {"SUCCEED": 2, "FAILED": 1, "OMITTED": 1}  # b, d / a / c
    assert list(r["jobs"]) == ["SUCCEED", "FAILED", "OMITTED"]
    assert r["tasks"] == {"SUCCEED": 3, "FAILED": 1}  # a:0, b, d / a:1 (c never had a task)
    assert r["first_submit"] == 100.0 and r["last_end"] == 110.0  # b ends last
    assert r["wall_s"] == 10.0
    assert r["tasks_per_s"] == pytest.approx(4 / 10)
    assert r["nodes"] == {"n0": 4, "n1": 2}  # highest core id + 1
    # a:0 2 x 4, a:1 2 x 4, b 1 x 6, d 1 x 5 + its lost attempt 1 x 1
    assert r["core_s_used"] == pytest.approx(8 + 8 + 6 + 5 + 1)
    assert r["core_s_available"] == pytest.approx(6 * 10)
    assert r["utilisation"] == pytest.approx(28 / 60)
    # durations 4, 4, 6, 5 -> 4 4 5 6
    assert r["duration_s"] == {"n": 4, "min": 4.0, "median": 4.5, "p95": 6.0, "max": 6.0}
    # submission to start: a:0 101-100, a:1 102-100, b 104-100, d 104-101 -> 1 2 3 4
    assert r["submit_to_start_s"] == {"n": 4, "median": 2.5, "p95": 4.0}


def test_stats_take_node_sizes_from_the_master_log(report: Path) -> None:
    (report.parent / "master.log").write_text(
        "timestamp='1' level='info' event='agent joined' node='n0' cores=8 gpus=[] returning=False\n"
        "timestamp='2' level='info' event='agent joined' node='n2' cores=4 gpus=[] returning=False\n"
    )
    sizes = node_sizes_from_log(report.parent)
    assert sizes == {"n0": 8, "n2": 4}
    st = Stats()
    scan(report, [st])
    r = st.result(sizes)
    assert r["nodes"] == {"n0": 8, "n1": 2, "n2": 4}  # n1 only from the report
    assert r["core_s_available"] == pytest.approx(14 * 10)
    assert r["utilisation"] == pytest.approx(28 / 140)


def test_efficiency(report: Path) -> None:
    eff = Efficiency(0.25)
    scan(report, [eff])
    r = eff.result()
    # cpu / (cores x wall): a:0 7/8, a:1 1/8 (low), b 6/6, d 1/5 (low)
    assert r["jobs"]["a"] == {"tasks": 2, "cpu_s": 8.0, "capacity_core_s": 16.0, "efficiency": 0.5, "low_tasks": 1}
    assert r["jobs"]["b"]["efficiency"] == pytest.approx(1.0)
    assert r["jobs"]["d"]["efficiency"] == pytest.approx(0.2)
    assert r["overall"]["cpu_s"] == pytest.approx(15.0)
    assert r["overall"]["capacity_core_s"] == pytest.approx(27.0)
    assert r["overall"]["efficiency"] == pytest.approx(15 / 27)
    assert r["low_tasks"] == 2
    # most core-seconds wasted first: a:1 wastes 7, d wastes 4
    assert [w["name"] for w in r["worst"]] == ["a:1", "d"]
    assert r["worst"][0]["efficiency"] == pytest.approx(1 / 8)
    assert r["without_rusage"] == 0
    stricter = Efficiency(0.15)
    scan(report, [stricter])
    assert [w["name"] for w in stricter.result()["worst"]] == ["a:1"]  # d's 0.2 is above 0.15


def test_rusage(report: Path) -> None:
    ru = Rusage()
    scan(report, [ru])
    r = ru.result()
    assert r["jobs"]["a"]["cpu_s"] == {"n": 2, "min": 1.0, "median": 4.0, "max": 7.0}
    assert r["jobs"]["a"]["max_rss_kb"] == {"n": 2, "min": 1000, "median": 2000.0, "max": 3000}
    assert r["jobs"]["d"]["cpu_s"] == {"n": 1, "min": 1.0, "median": 1.0, "max": 1.0}
    assert "c" not in r["jobs"]
    # every task: cpu 7 1 6 1 -> 1 1 6 7; rss 1000 3000 2000 500 -> 500 1000 2000 3000
    assert r["overall"]["cpu_s"] == {"n": 4, "min": 1.0, "median": 3.5, "max": 7.0}
    assert r["overall"]["max_rss_kb"] == {"n": 4, "min": 500, "median": 1500.0, "max": 3000}


def test_launch(report: Path) -> None:
    la = Launch()
    scan(report, [la])
    r = la.result()
    assert r["launches"] == 4
    assert r["submit_to_start_s"] == {"n": 4, "median": 2.5, "p95": 4.0, "max": 4.0}
    # scheduled -> start: 0.5, 1.5, 1, 1
    assert r["schedule_to_start_s"] == {"n": 4, "median": 1.0, "p95": 1.5, "max": 1.5}
    # starts at 101, 102, 104, 104: seconds 1, 2, 4 after the first submission (100)
    assert r["origin"] == 100.0 and r["first_second"] == 1
    assert r["per_second"] == [1, 1, 0, 2]
    assert r["peak_per_s"] == 2 and r["mean_per_s"] == pytest.approx(1.0)


def test_failures(report: Path) -> None:
    f = Failures()
    scan(report, [f])
    assert f.count == 1  # a:1; job a's own line is not a task
    assert f.items[0]["name"] == "a:1" and f.items[0]["exit_code"] == 3
    assert f.items[0]["stderr_tail"] == "Traceback...\nValueError: boom <b>\n"


def test_failures_of_a_job_without_iterations_are_one_entry(tmp_path: Path) -> None:
    lines = [
        '{"name":"x","state":"FAILED","reason":"exit code 2","times":{"QUEUED":1.0,"SCHEDULED":1.0,"EXECUTING":1.5,'
        '"FAILED":2.0},"exit_code":2,"nodes":["n"],"cores":{"n":[0]},"task_times":{"QUEUED":1.0,"SCHEDULED":1.0,'
        '"EXECUTING":1.5,"FAILED":2.0},"stderr_tail":"no such file"}',
        '{"name":"big","state":"FAILED","reason":"needs 64 cores; the largest node has 4","times":{"QUEUED":1.0,'
        '"FAILED":1.0},"exit_code":null,"nodes":[],"cores":{}}',
    ]
    f = Failures()
    scan(write_report(tmp_path, lines), [f])
    assert f.count == 2
    assert [(i["name"], i["exit_code"], i["stderr_tail"]) for i in f.items] == [
        ("x", 2, "no such file"), ("big", None, None)]


def test_gantt_per_task(report: Path) -> None:
    g = GanttData()
    scan(report, [g])
    chart = g.chart()
    assert chart.mode == "task"
    assert chart.rows == ["a:0", "a:1", "b", "d"]
    assert chart.jobs == ["a", "b", "d"]  # by core-seconds: a 16, b 6, d 5
    assert chart.span == 10.0
    bars = {b.label: b for b in chart.bars}
    assert (bars["a:0"].row, bars["a:0"].start, bars["a:0"].end, bars["a:0"].job) == (0, 1.0, 5.0, 0)
    assert bars["a:1"].flag == FLAG_FAILED and bars["a:0"].flag == FLAG_OK
    assert (bars["d"].start, bars["d"].end, bars["d"].job) == (4.0, 9.0, 2)
    assert chart.tasks == 4 and chart.failed == 1


def _uniform_lines(tasks: int, nodes: int, cores: int, dur: float) -> list[str]:
    """``tasks`` one-core tasks filling ``nodes`` x ``cores`` round by round, each ``dur`` long; every 7th fails."""
    lines = ['{"name":"s","state":"FAILED","reason":"","times":{"QUEUED":0.0,"FAILED":1.0},"iterations":'
             + str(tasks) + ',"succeeded":0,"failed":0,"exit_code":null,"nodes":[],"cores":{}}']
    slots = nodes * cores
    for i in range(tasks):
        node, core, rnd = (i % slots) // cores, i % cores, i // slots
        start = rnd * dur
        state = "FAILED" if i % 7 == 3 else "SUCCEED"
        lines.append(f'{{"name":"s:{i}","job":"{"s" if i % 2 else "t"}","iteration":{i},"state":"{state}",'
                     f'"exit_code":0,"reason":"","nodes":["node{node}"],"cores":{{"node{node}":[{core}]}},'
                     f'"times":{{"QUEUED":0.0,"SCHEDULED":0.0,"EXECUTING":{start},"{state}":{start + dur}}}}}')
    return lines


def test_gantt_per_core(tmp_path: Path) -> None:
    g = GanttData()
    scan(write_report(tmp_path, _uniform_lines(60, nodes=2, cores=3, dur=2.0)), [g])
    chart = g.chart()
    assert chart.mode == "core"
    assert chart.node_rows == [("node0", 0, 3), ("node1", 3, 3)]
    assert chart.rows[4] == "node1:1"
    assert len(chart.bars) == 60
    # task 10: slot 10 % 6 = 4 -> node1 core 1 (row 4), round 1: 2 s .. 4 s
    tenth = [b for b in chart.bars if b.row == 4 and b.start == 2.0]
    assert len(tenth) == 1 and tenth[0].end == 4.0
    assert chart.failed == sum(1 for i in range(60) if i % 7 == 3)


def test_gantt_bands_keep_every_core_second(tmp_path: Path) -> None:
    tasks, nodes, cores, dur = 100_000, 4, 64, 3.0
    g = GanttData()
    scan(write_report(tmp_path, _uniform_lines(tasks, nodes, cores, dur)), [g])
    chart = g.chart()
    assert chart.mode == "band"
    assert [b.label for b in chart.bands] == ["node0", "node1", "node2", "node3"]
    assert all(b.cores == cores for b in chart.bands)
    rounds = -(-tasks // (nodes * cores))  # 391 rounds of 3 s
    assert chart.span == pytest.approx(rounds * dur)
    assert chart.bin_s == pytest.approx(chart.span / BINS)
    total = sum(sum(row) for band in chart.bands for row in band.busy) * chart.bin_s
    assert total == pytest.approx(tasks * dur)  # the bins hold every core-second, none twice
    for band in chart.bands:  # never more busy cores than the node has
        assert max(sum(row[b] for row in band.busy) for b in range(BINS)) <= cores + 1e-6
    assert sum(sum(b.failed) for b in chart.bands) == chart.failed == sum(1 for i in range(tasks) if i % 7 == 3)
