"""`pj top`'s pure half (client/topview.py): rates, ETA, the view folded from Watch events, the frame."""

from __future__ import annotations

import re

import pytest

from pj.client.cli import pj_main
from pj.client.convert import JobSummary, NodeResources, WatchEvent
from pj.client.topview import (
    Failure,
    Rates,
    Sized,
    Snapshot,
    View,
    bar,
    ended_line,
    estimate_tasks,
    eta,
    overall_rate,
    render,
)


def node(name: str, cores: int, free: int, gpus: int = 0, gpus_free: int = 0, online: bool = True) -> NodeResources:
    return NodeResources(name, cores, free, tuple(str(i) for i in range(gpus)), gpus_free, 0, online)


def event(jobs: dict[str, int], tasks: dict[str, int], total: int, unfinished: int,
          changed: tuple[JobSummary, ...] = (), notices: tuple[str, ...] = ()) -> WatchEvent:  # fmt: skip
    return WatchEvent(changed=changed, watched_total=total, watched_unfinished=unfinished, tasks=tasks,
                      notices=notices, jobs=jobs)  # fmt: skip


# ---------------------------------------------------------------- arithmetic


def test_recent_rate_over_the_window_and_overall() -> None:
    r = Rates(window=10)
    assert r.recent() is None
    r.add(0.0, 0)
    r.add(0.2, 5)
    assert r.recent() is None  # under half a second: not yet a rate
    for t in range(1, 31):  # 2 tasks/s for 20 s, then 10 tasks/s
        r.add(float(t), 2 * t if t <= 20 else 40 + 10 * (t - 20))
    assert r.recent() == pytest.approx(10.0)  # only the last 10 s count
    assert r.samples[0][0] == 20.0
    r.add(31.0, 3)  # the count went back (a resumed master): start again
    assert r.recent() is None
    assert overall_rate(100, 50.0) == 2.0
    assert overall_rate(100, 0.0) is None and overall_rate(5, None) is None


def test_eta_and_the_campaign_size() -> None:
    assert eta(100, 4.0) == 25.0
    assert eta(0, None) == 0.0 and eta(-3, 1.0) == 0.0
    assert eta(10, 0.0) is None and eta(10, None) is None and eta(None, 5.0) is None
    assert estimate_tasks(10, 5, 50) == 100  # 5 jobs came after the List: 10 tasks each, as on average
    assert estimate_tasks(5, 5, 7) == 7
    assert estimate_tasks(3, 0, 0) is None


# ---------------------------------------------------------------- the view


def test_the_view_folds_events_sizes_and_reasons() -> None:
    v = View("host:1", started_at=1000.0)
    assert not v.heard and not v.all_ended
    v.sizes(Sized(jobs=4, tasks=103, bad=[JobSummary("old", "FAILED", "exit code 2")]))
    v.apply(event({"QUEUED": 2, "EXECUTING": 1, "FAILED": 1}, {"EXECUTING": 1, "SUCCEED": 10}, 4, 3))
    assert v.heard and v.tasks_done == 10
    v.apply(event({"QUEUED": 1, "EXECUTING": 1, "FAILED": 1, "OMITTED": 1}, {"EXECUTING": 1, "SUCCEED": 40}, 4, 2,
                  changed=(JobSummary("b", "OMITTED", "dependency a FAILED"), JobSummary("c", "FAILED", "")),
                  notices=("node n3 did not register\nwithin 60 s",)))  # fmt: skip
    assert [f.name for f in v.failures] == ["old", "b", "c"]  # oldest first; the List's are older
    v.sizes(Sized(jobs=4, tasks=103, bad=[JobSummary("b", "OMITTED", "")]))  # a later List adds no old ones
    assert [f.name for f in v.failures] == ["old", "b", "c"]
    assert v.missing_reasons() == ["c"]
    assert v.missing_reasons() == []  # asked once
    v.reasons({"c": "exit code 1\n(no stderr)"})
    assert v.failures[-1] == Failure("c", "FAILED", "exit code 1 (no stderr)")
    assert list(v.notices) == ["node n3 did not register within 60 s"]

    s1 = v.snapshot(mono=0.0, wall=1010.0)
    assert s1.uptime == 10.0 and s1.tasks_total == 103 and s1.rate_recent is None
    assert s1.eta == pytest.approx((103 - 40) / 4.0)  # no recent rate yet: the overall one (40 in 10 s)
    assert [f.name for f in s1.failures] == ["c", "b", "old"]  # newest first
    v.apply(event({"QUEUED": 1, "EXECUTING": 1, "FAILED": 1, "OMITTED": 1}, {"EXECUTING": 1, "SUCCEED": 43}, 4, 2))
    s2 = v.snapshot(mono=1.0, wall=1011.0)
    assert s2.rate_recent == 3.0 and s2.eta == pytest.approx(60 / 3.0)

    assert not v.needs_sizing()
    v.apply(event({"QUEUED": 6, "EXECUTING": 1, "FAILED": 1, "OMITTED": 1}, {"EXECUTING": 1, "SUCCEED": 43}, 9, 7))
    assert v.needs_sizing()  # more than half of the jobs came after the List
    assert v.snapshot(2.0, 1012.0).tasks_total == 103 + round(5 * 103 / 4)

    v.apply(event({"SUCCEED": 7, "FAILED": 1, "OMITTED": 1}, {"SUCCEED": 300}, 9, 0))
    assert v.all_ended and v.snapshot(3.0, 1013.0).eta == 0.0
    assert ended_line(v) == "campaign ended: 9 jobs: SUCCEED 7, FAILED 1, OMITTED 1"
    v.apply(event({"SUCCEED": 9}, {"SUCCEED": 300}, 9, 0))
    assert ended_line(v) == "campaign ended: all 9 jobs succeeded"


def test_a_master_with_no_jobs_has_not_ended() -> None:
    v = View()
    v.apply(WatchEvent(changed=(), watched_total=0, watched_unfinished=0))
    assert v.heard and not v.all_ended
    assert v.snapshot(0.0, 0.0).jobs == {}


# ---------------------------------------------------------------- the frame


def snap(**kw: object) -> Snapshot:
    base: dict[str, object] = dict(
        address="10.0.0.1:4000", uptime=83.0, jobs={"QUEUED": 5, "EXECUTING": 3, "SUCCEED": 11, "FAILED": 1},
        tasks={"EXECUTING": 3, "SUCCEED": 111, "FAILED": 1}, jobs_total=20, jobs_unfinished=8, tasks_done=112,
        tasks_total=200, rate_recent=4.25, rate_overall=1.35, eta=20.7,
        nodes=(node("node0", 4, 1, gpus=2, gpus_free=1), node("node1", 4, 4, online=False)),
        failures=(Failure("sim:3", "FAILED", "exit code 1"),), notices=("node n3 did not register within 60 s",),
    )  # fmt: skip
    base.update(kw)
    return Snapshot(**base)  # type: ignore[arg-type]


def test_a_frame_as_a_user_sees_it() -> None:
    assert render(snap(), width=100) == [
        "pj top  master 10.0.0.1:4000  up 1:23",
        "jobs    12/20 ended: QUEUED 5, EXECUTING 3, SUCCEED 11, FAILED 1",
        "tasks   112 of ~200 done: EXECUTING 3, SUCCEED 111, FAILED 1",
        "rate    4.2 tasks/s (last 10 s), 1.4 overall   ETA 20.7s",
        "nodes   1 online, cores 3/4 busy (75%), GPUs 1/2 busy, 1 offline",
        "  node0  [###.] 3/4 cores  [#.] 1/2 GPUs",
        "  node1  [....] 0/4 cores  offline",
        "failures, newest first (1 of 1)",
        "  sim:3  FAILED  exit code 1",
        "notices",
        "  node n3 did not register within 60 s",
    ]
    first = render(Snapshot(address="a:1"), width=100)
    assert first[1:] == ["jobs    (waiting for the master's first message)", "nodes   0 online"]
    done = render(snap(jobs_unfinished=0, ended="campaign ended: all 20 jobs succeeded", keys="q quits"))
    assert "ETA done" in done[3] and done[-2:] == ["campaign ended: all 20 jobs succeeded", "q quits"]
    assert "ETA -" in render(snap(eta=None))[3]
    why = "the master went away before every job had ended: " + "x" * 80
    assert render(snap(ended=why), 100)[-1] == why  # a frame left on screen keeps its last word whole
    assert render(snap(ended=why), 100, 30)[-1] == why[:99] + "…"


def test_bars() -> None:
    assert bar(0, 8, 8) == "[........]"
    assert bar(8, 8, 8) == "[########]"
    assert bar(1, 100, 8) == "[#.......]"  # any use shows
    assert bar(99, 100, 8) == "[#######.]"  # full only when full
    assert bar(1, 0, 8) == ""


def test_the_frame_fits_the_terminal() -> None:
    s = snap(failures=tuple(Failure(f"job{i}", "FAILED", "exit code 1 " * 20) for i in range(8)),
             notices=tuple(f"notice {i}" for i in range(5)), keys="q quits")  # fmt: skip
    for width, height in ((100, 40), (60, 20), (40, 12), (20, 5)):
        lines = render(s, width, height)
        assert len(lines) <= height and all(len(line) <= width for line in lines)
        assert lines[-1] == "q quits"
    small = render(s, 100, 14)
    assert "failures, newest first (1 of 1)" not in small  # the title counts the failed jobs
    assert any(line.startswith("failures, newest first (") for line in small)
    assert small.count("  job0  FAILED  " + ("exit code 1 " * 20)[:72]) == 0  # cut to the width
    assert sum(1 for line in small if line.startswith("  job")) < 5  # failures gave up lines


def test_many_nodes_become_a_histogram_with_the_busiest_and_idlest() -> None:
    nodes = tuple(node(f"n{i:03d}", 8, 8 - (i % 9)) for i in range(300))  # busy 0..8 of 8, in turn
    nodes += (node("gpu1", 8, 8, gpus=4, gpus_free=0), node("down", 8, 8, online=False))
    lines = render(snap(nodes=nodes, failures=(), notices=()), width=80, height=30)
    assert lines[4] == "nodes   301 online, cores 1191/2408 busy (49%), GPUs 4/4 busy, 1 offline"
    hist = {m[1]: int(m[2]) for m in (re.match(r"  (\S+(?: \S+)?) +(\d+) #*$", line) for line in lines[5:11]) if m}
    assert hist == {"idle 0%": 34, "1-24%": 34, "25-49%": 67, "50-74%": 66, "75-99%": 66, "full 100%": 34}
    # idle: n000, n009...; full: gpu1 (its GPUs), n008, n017...; the offline node is in none
    assert lines[11].startswith("  busiest   gpu1 100%, n008 100%, n017 100%")
    assert lines[12].startswith("  idlest    n000 0%, n009 0%, n018 0%")
    assert all(len(line) <= 80 for line in lines)
    # a few nodes that fit get a line each; in a pipe (no height) up to 32 do
    assert sum(1 for line in render(snap(nodes=nodes[:30]), 100, 60) if line.startswith("  n0")) == 30
    assert sum(1 for line in render(snap(nodes=nodes[:32]), 100) if line.startswith("  n0")) == 32
    assert any(line.startswith("  busiest") for line in render(snap(nodes=nodes[:33]), 100))
    assert any(line.startswith("  busiest") for line in render(snap(nodes=nodes[:30]), 100, 20))


def test_the_interval_is_checked(capsys: pytest.CaptureFixture[str]) -> None:
    assert pj_main(["top", "--workdir", "/nonexistent", "--interval", "0"]) == 2
    assert "--interval: must be between 0.05 and 3600 seconds" in capsys.readouterr().err
    assert pj_main(["top", "--interval", "soon", "--workdir", "/nonexistent"]) == 2
    assert pj_main(["top", "--once", "--workdir", "/nonexistent/wd"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[-1].startswith("pj: ") and "/nonexistent/wd" in err[-1]
