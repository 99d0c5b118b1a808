"""Task resource use and stderr tails in the master: core, report lines, journal (incl. an old schema), restore."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from pj.master import convert, journal, report, usage
from pj.master.core import Core
from pj.master.model import NodeInfo, State
from pj.master.restore import restore
from pj.v1 import pj_pb2 as pb

from .coreharness import spec, start

TAIL = "Traceback (most recent call last):\nValueError: bad input"


def test_pack_round_trip_and_nothing_measured_is_empty() -> None:
    assert usage.pack(0.0, 0.0, 0) == b""
    assert usage.unpack(b"") == usage.Figures(0.0, 0.0, 0)
    packed = usage.pack(0.31, 0.02, 51234)
    assert len(packed) == 24 and usage.unpack(packed) == (0.31, 0.02, 51234)
    assert usage.unpack(usage.pack(float("nan"), -1.0, 7)) == (0.0, 0.0, 7)  # nonsense is not kept
    assert usage.as_dict(packed) == {"cpu_user_s": 0.31, "cpu_system_s": 0.02, "max_rss_kb": 51234}


def test_a_failed_task_keeps_its_usage_and_tail_a_succeeded_one_no_tail() -> None:
    core = Core(now=1.0)
    core.node_joined(NodeInfo("n0", 2, ()), 1.0)
    core.submit([spec("ok"), spec("bad")], 2.0)
    ok, bad = start(core, 3.0)
    core.task_exited(ok, 0, "", 4.0, usage.pack(0.5, 0.1, 2048), "stray warning")
    core.task_exited(bad, 1, "", 4.0, usage.pack(0.25, 0.0, 1024), TAIL)
    out = core.step(5.0)
    tasks = {t.name: t for t in out.ended}
    assert usage.unpack(tasks["ok"].usage) == (0.5, 0.1, 2048) and tasks["ok"].stderr_tail == ""
    assert tasks["bad"].state == State.FAILED and tasks["bad"].stderr_tail == TAIL
    info = convert.task_to_pb(tasks["bad"])
    assert (info.cpu_user_s, info.max_rss_kb, info.stderr_tail) == (0.25, 1024, TAIL)
    ok_line = next(report.job_records(core.registry.jobs["ok"]))
    assert ok_line["cpu_user_s"] == 0.5 and ok_line["max_rss_kb"] == 2048 and "stderr_tail" not in ok_line
    bad_line = next(report.job_records(core.registry.jobs["bad"]))
    assert bad_line["stderr_tail"] == TAIL and bad_line["cpu_user_s"] == 0.25


def test_a_canceled_task_keeps_no_tail() -> None:
    core = Core(now=1.0)
    core.node_joined(NodeInfo("n0", 1, ()), 1.0)
    core.submit([spec("c")], 2.0)
    (tid,) = start(core, 3.0)
    core.cancel(["c"], 4.0)
    core.task_exited(tid, -15, "", 5.0, usage.pack(0.1, 0.0, 10), "Terminated")
    core.step(6.0)
    task = core.registry.jobs["c"].tasks[None]
    assert task.state == State.CANCELED and task.stderr_tail == "" and usage.unpack(task.usage).max_rss_kb == 10


def test_every_attempt_of_a_retried_iteration_keeps_its_own_figures_in_the_report() -> None:
    core = Core(now=1.0)
    core.node_joined(NodeInfo("n0", 1, ()), 1.0)
    core.submit([spec("r", it=1, retries=1)], 2.0)
    (first,) = start(core, 3.0)
    core.task_exited(first, 2, "", 4.0, usage.pack(1.0, 0.5, 100), "first try failed")
    (second,) = start(core, 5.0)
    core.task_exited(second, 0, "", 6.0, usage.pack(2.0, 0.25, 200), "")
    core.step(7.0)
    lines = list(report.job_records(core.registry.jobs["r"]))
    it0 = lines[1]
    assert it0["name"] == "r:0" and it0["state"] == "SUCCEED" and it0["cpu_user_s"] == 2.0
    assert "stderr_tail" not in it0
    a1, a2 = it0["attempts"]
    assert (a1["state"], a1["cpu_user_s"], a1["max_rss_kb"], a1["stderr_tail"]) == ("FAILED", 1.0, 100,
                                                                                     "first try failed")
    assert (a2["cpu_user_s"], a2["cpu_system_s"], a2["max_rss_kb"]) == (2.0, 0.25, 200) and "stderr_tail" not in a2
    # The line of a job with iterations carries no figures: each iteration has its own.
    assert lines[0]["name"] == "r" and "cpu_user_s" not in lines[0]


def _journal_one_failed_task(path: Path) -> Core:
    jour = journal.Journal(path)
    req = pb.SubmitRequest(base_dir="/w", jobs=[pb.JobSpec(name="a", exec="/bin/false")])
    jour.submit(req.SerializeToString(), 5.0)
    core = Core(now=1.0)
    core.node_joined(NodeInfo("n0", 1, ()), 1.0)
    core.submit([convert.spec_from_pb(s, "/w") for s in req.jobs], 5.0)
    (tid,) = start(core, 6.0)
    core.task_exited(tid, 1, "", 7.0, usage.pack(0.3, 0.05, 51000), TAIL)
    out = core.step(8.0)
    jour.record(out.ended, out.finished)
    jour.close()
    return core


def test_the_journal_round_trips_usage_and_tail_through_a_resume(tmp_path: Path) -> None:
    path = tmp_path / journal.FILENAME
    _journal_one_failed_task(path)
    jour = journal.Journal(path)
    batches, tasks, jobs, requests = jour.load()
    jour.close()
    (rec,) = tasks
    assert usage.unpack(rec.usage) == (0.3, 0.05, 51000) and rec.stderr_tail == TAIL
    again = Core(now=10.0)
    restore(again, batches, tasks, jobs, requests, 10.0)
    task = again.registry.jobs["a"].tasks[None]
    assert usage.unpack(task.usage).max_rss_kb == 51000 and task.stderr_tail == TAIL
    line = next(report.job_records(again.registry.jobs["a"]))
    assert line["stderr_tail"] == TAIL and line["cpu_system_s"] == 0.05


_OLD_TASKS = """CREATE TABLE tasks (
    seq INTEGER PRIMARY KEY, job TEXT NOT NULL, iteration INTEGER, state INTEGER NOT NULL,
    exit_code INTEGER, reason TEXT NOT NULL, times TEXT NOT NULL, alloc TEXT NOT NULL);"""


def test_a_journal_of_the_old_schema_opens_and_gets_the_new_columns(tmp_path: Path) -> None:
    path = tmp_path / journal.FILENAME
    db = sqlite3.connect(path)
    db.executescript(_OLD_TASKS + "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
                     "INSERT INTO meta VALUES ('version', '1');")
    req = pb.SubmitRequest(base_dir="/w", jobs=[pb.JobSpec(name="a", exec="/bin/true")])
    db.executescript("CREATE TABLE batches (seq INTEGER PRIMARY KEY, time REAL NOT NULL, request BLOB NOT NULL);")
    db.execute("INSERT INTO batches (time, request) VALUES (?, ?)", (5.0, req.SerializeToString()))
    db.execute("INSERT INTO tasks (job, iteration, state, exit_code, reason, times, alloc) VALUES "
               "('a', NULL, ?, 0, '', ?, '[[\"n0\",[0],[]]]')", (int(State.SUCCEED), f"[[{int(State.SUCCEED)},7.0]]"))
    db.commit()
    db.close()

    jour = journal.Journal(path)  # adds the missing columns
    cols = {row[1] for row in jour.db.execute("PRAGMA table_info(tasks)")}
    assert {"cpu_user_s", "cpu_system_s", "max_rss_kb", "stderr_tail"} <= cols
    _, tasks, _, _ = jour.load()
    assert [(r.job, r.state, r.usage, r.stderr_tail) for r in tasks] == [("a", State.SUCCEED, b"", "")]
    core = Core(now=1.0)  # and the resumed master goes on writing the new columns
    core.node_joined(NodeInfo("n0", 1, ()), 1.0)
    core.submit([spec("b")], 2.0)
    (tid,) = start(core, 3.0)
    core.task_exited(tid, 3, "", 4.0, usage.pack(0.5, 0.0, 7), "oops")
    out = core.step(5.0)
    jour.record(out.ended, out.finished)
    _, tasks, _, _ = jour.load()
    jour.close()
    assert [(r.job, usage.unpack(r.usage).max_rss_kb, r.stderr_tail) for r in tasks] == [
        ("a", 0, ""), ("b", 7, "oops")]
