"""A resumed master continues retry budgets and crash counts, and keeps every attempt (issue 13, item 7)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from pj.master import journal, reconcile, report, usage
from pj.master.core import Core, Outbox
from pj.master.model import JobSpec, NodeInfo, State
from pj.master.registry import Attempt, Task
from pj.master.restore import AttemptRecord, Batch, TaskRecord, restore

from .coreharness import spec as harness_spec


def spec(name: str, retries: int) -> JobSpec:
    return harness_spec(name, retries=retries, exec="/bin/false")


class Run:
    """A core whose passes are kept as the journal keeps them (batches, ended tasks, attempts)."""

    def __init__(self, crash_limit: int = 3) -> None:
        self.t = 10.0
        self.core = Core(now=self.t, crash_limit=crash_limit)
        self.core.node_joined(NodeInfo("n0", 1, ()), self.t)
        self.batches: list[Batch] = []
        self.tasks: list[TaskRecord] = []
        self.attempts: list[AttemptRecord] = []
        self.kept: list[tuple[Task, Attempt, bool]] = []  # as the core hands them to the journal

    def submit(self, *specs: JobSpec) -> None:
        self.t += 1
        self.core.submit(list(specs), self.t)
        self.batches.append(Batch(list(specs), self.t))

    def keep(self, out: Outbox) -> None:
        self.tasks += [TaskRecord(t.job.name, t.iteration, t.state, t.exit_code, t.reason, tuple(t.history),
                                  t.allocation, t.usage, t.stderr_tail) for t in out.ended]
        self.attempts += [AttemptRecord(t.job.name, t.iteration, a, r) for t, a, r in out.attempts]
        self.kept += out.attempts

    def launch(self) -> int:
        """One pass; the one task it launched (started)."""
        self.t += 1
        out = self.core.step(self.t)
        self.keep(out)
        (x,) = [x for ls in out.launches.values() for x in ls]
        self.core.task_started(x.task_id, self.t)
        return x.task_id

    def fail(self, task_id: int) -> None:
        self.t += 1
        self.core.task_exited(task_id, 3, "", self.t, usage.pack(1.5, 0.25, 2048), "boom\n")
        self.t += 1
        self.keep(self.core.step(self.t))

    def resumed(self, crash_limit: int = 3) -> Core:
        self.t += 1
        core = Core(now=self.t, crash_limit=crash_limit)
        restore(core, self.batches, self.tasks, [], [], self.t, attempts=self.attempts)
        core.node_joined(NodeInfo("n9", 1, ()), self.t)
        return core


def run_failing(core: Core, t: float) -> int:
    """Run the core to the end, every task exiting 3; how many tasks it launched."""
    launched = 0
    for _ in range(100):
        t += 1
        out = core.step(t)
        xs = [x for ls in out.launches.values() for x in ls]
        if not xs and not core.running:
            return launched
        for x in xs:
            launched += 1
            core.task_started(x.task_id, t)
            core.task_exited(x.task_id, 3, "", t)
    raise AssertionError("did not end")


def test_a_resumed_master_continues_the_retry_budget_and_keeps_the_attempts() -> None:
    r = Run()
    r.submit(spec("a", retries=2))
    r.fail(r.launch())
    assert [(a.job, a.iteration, a.retried, a.attempt.exit_code) for a in r.attempts] == [("a", None, True, 3)]
    core = r.resumed()
    job = core.registry.jobs["a"]
    assert job.retried == {None: 1} and len(job.attempts[None]) == 1  # type: ignore[index]
    assert run_failing(core, r.t) == 2  # 3 attempts in all, not 1 + 3
    assert job.state == State.FAILED
    (line,) = report.job_records(job)
    attempts = line["attempts"]
    assert [a["exit_code"] for a in attempts] == [3, 3, 3] and attempts[0]["nodes"] == ["n0"]
    assert attempts[0]["cpu_user_s"] == 1.5 and attempts[0]["max_rss_kb"] == 2048
    assert attempts[0]["stderr_tail"] == "boom\n"
    assert attempts[-1]["nodes"] == ["n9"]


def test_a_resumed_master_continues_the_crash_count() -> None:
    r = Run(crash_limit=2)
    r.submit(spec("a", retries=5))
    r.launch()
    r.core.node_left("n0", r.t + 1)
    r.t += 2
    r.keep(r.core.step(r.t))
    assert [(a.attempt.lost, a.retried) for a in r.attempts] == [(True, True)]
    core = r.resumed(crash_limit=2)
    r.t += 1
    out = core.step(r.t)
    (x,) = [x for ls in out.launches.values() for x in ls]
    core.task_started(x.task_id, r.t)
    core.node_left("n9", r.t + 1)
    job = core.registry.jobs["a"]
    assert job.tasks[None].state == State.FAILED
    assert job.tasks[None].reason.startswith("crash limit: 2 nodes were lost")


def test_an_interrupted_attempt_is_kept_without_using_a_retry() -> None:
    r = Run()
    r.submit(spec("a", retries=1))
    tid = r.launch()
    r.core.interrupt(r.core.running[tid], reconcile.INTERRUPTED_RESTART, r.t + 1)
    r.keep(r.core.step(r.t + 2))
    assert [(a.retried, a.attempt.lost) for a in r.attempts] == [(False, False)]
    core = r.resumed()
    job = core.registry.jobs["a"]
    assert not job.retried and len(job.attempts[None]) == 1  # type: ignore[index]
    assert run_failing(core, r.t) == 2  # its one retry is still there
    (line,) = report.job_records(job)
    assert len(line["attempts"]) == 3


def test_the_journal_keeps_attempts_and_an_older_journal_gets_the_table(tmp_path: Path) -> None:
    r = Run()
    r.submit(spec("a", retries=1))
    r.fail(r.launch())
    ((task, kept, retried),) = r.kept
    path = tmp_path / journal.FILENAME
    jour = journal.Journal(path)
    jour.record([], [], attempts=[(task, kept, retried)])
    jour.close()
    jour = journal.Journal(path)
    (back,) = jour.attempts()
    assert back == AttemptRecord("a", None, kept, True)
    assert jour.db.execute("SELECT alloc FROM attempts").fetchone()[0] == '[["n0",[0],[]]]'
    jour.close()

    old = tmp_path / "old.db"  # a journal written before the attempts table existed
    db = sqlite3.connect(old)
    db.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta VALUES ('version', '1');
        CREATE TABLE tasks (seq INTEGER PRIMARY KEY, job TEXT NOT NULL, iteration INTEGER, state INTEGER NOT NULL,
            exit_code INTEGER, reason TEXT NOT NULL, times TEXT NOT NULL, alloc TEXT NOT NULL);
    """)
    db.commit()
    db.close()
    jour = journal.Journal(old)
    assert jour.attempts() == [] and jour.load()[1] == []
    jour.record([], [], attempts=[(task, kept, retried)])
    assert [a.attempt for a in jour.attempts()] == [kept]
    jour.close()

