"""Writes that fail (issue 13, item 4): the errors told apart, the pause's state, and the dispatcher
holding a pass whose journal write fails (a real SQLite error: PRAGMA query_only refuses writes)."""

from __future__ import annotations

import asyncio
import errno
import sqlite3
import time
from pathlib import Path

import pytest

from pj.master import writefault as wf
from pj.master.core import Core
from pj.master.journal import Journal
from pj.master.model import JobSpec, NodeInfo, Range, Request, State
from pj.master.runtime import AgentConn, Dispatcher
from pj.master.watchhub import Watcher


def _sqlite_full(tmp_path: Path) -> sqlite3.Error:
    db = sqlite3.connect(tmp_path / "full.db", isolation_level=None)
    db.execute("CREATE TABLE t (x BLOB)")
    db.execute(f"PRAGMA max_page_count={db.execute('PRAGMA page_count').fetchone()[0]}")
    try:
        db.execute("INSERT INTO t VALUES (?)", (b"x" * 100_000,))
    except sqlite3.Error as e:
        return e
    raise AssertionError("the insert should not fit")


def test_errors_are_told_apart(tmp_path: Path) -> None:
    full = _sqlite_full(tmp_path)
    assert wf.kind(full) == wf.FULL and wf.cause(full) == "no space left on device"
    assert wf.kind(OSError(errno.ENOSPC, "No space left on device")) == wf.FULL
    assert wf.kind(OSError(errno.EDQUOT, "Disk quota exceeded")) == wf.QUOTA
    assert wf.kind(OSError(errno.EROFS, "Read-only file system")) == wf.READ_ONLY
    assert wf.kind(sqlite3.OperationalError("attempt to write a readonly database")) == wf.READ_ONLY
    assert wf.kind(OSError(errno.EIO, "Input/output error")) == wf.OTHER
    assert wf.cause(OSError(errno.EIO, "Input/output error")) == "Input/output error"
    assert wf.status_name(full) == "RESOURCE_EXHAUSTED"
    assert wf.status_name(OSError(errno.EDQUOT, "x")) == "RESOURCE_EXHAUSTED"
    assert wf.status_name(OSError(errno.EROFS, "x")) == "UNAVAILABLE"


def test_the_refusal_is_one_line_naming_the_path_and_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    assert wf.refusal(path, _sqlite_full(tmp_path)) == (
        f"no space left on {path}: the submission was not kept; free space and submit again")
    ro = wf.refusal(path, OSError(errno.EROFS, "Read-only file system"))
    assert ro == f"{path} is on a read-only file system: the submission was not kept; remount it read-write and submit again"
    line = wf.report_failure(tmp_path / "jobs.jsonl", path, OSError(errno.ENOSPC, "No space left on device"))
    assert "\n" not in line and str(path) in line and "--resume" in line


def test_the_stall_pauses_backs_off_and_resumes() -> None:
    s, path = wf.Stall(), Path("/w/journal.db")
    assert not s.paused and s.written(path, 1.0) is None  # nothing to say when it never paused
    full = OSError(errno.ENOSPC, "No space left on device")
    first = s.failed(path, full, 10.0)
    assert s.paused and first is not None and first.startswith(f"dispatch paused: cannot write {path}: no space")
    delays = [s.retry_s]
    for _ in range(8):
        assert s.failed(path, full, 11.0) is None  # the same error is not said again at every try
        delays.append(s.retry_s)
    assert delays[:3] == [0.1, 0.2, 0.4] and max(delays) == wf.Stall.MAX_S
    changed = s.failed(path, OSError(errno.EROFS, "Read-only file system"), 12.0)
    assert changed is not None and "read-only file system" in changed
    assert s.written(path, 13.5) == f"dispatch resumed: {path} written again after 3.5 s paused (10 failed writes)"
    assert not s.paused and s.retry_s == wf.Stall.FIRST_S and s.written(path, 14.0) is None


def _spec(name: str) -> JobSpec:
    return JobSpec(name=name, exec="/bin/true", request=Request(Range(1, 1), Range(1, 1), 0), base_dir="/tmp")


def test_a_pass_that_cannot_be_journaled_is_held_and_sent_once_written(tmp_path: Path) -> None:
    """No launch leaves before its placement is journaled; exits meanwhile stay in memory; the
    journal's transaction is not left open (the old "cannot rollback" crash)."""
    jour = Journal(tmp_path / "journal.db")

    async def scenario() -> tuple[list[str], int, int, list[State]]:
        core = Core(now=time.time())
        core.node_joined(NodeInfo("a", 1), time.time())
        master = Dispatcher(core, journal=jour)
        conn = master.agents["a"] = AgentConn("a")
        watcher = Watcher({"first"})  # a watch of named jobs keeps its notices (watchhub.py)
        master.hub.add(watcher)
        core.submit([_spec("first")], time.time())
        jour.db.execute("PRAGMA query_only=1")  # every write fails from now on (SQLITE_READONLY)
        async with asyncio.TaskGroup() as tg:
            run = tg.create_task(master.run())
            master.poke()
            for _ in range(500):
                if master.stall.paused:
                    break
                await asyncio.sleep(0.01)
            assert master.stall.paused
            await asyncio.sleep(0.5)  # several tries, all failing
            held_launches = 0 if conn.take() is None else 1
            failures = master.stall.failures
            assert not jour.db.in_transaction
            jour.db.execute("PRAGMA query_only=0")  # writable again
            while master.stall.paused:
                await asyncio.sleep(0.01)
            msg = conn.take()
            assert msg is not None and [t.task_id for t in msg.orders.launch] == [1]
            core.task_exited(1, 0, "", time.time())
            master.poke()
            while core.unfinished:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)
            run.cancel()
        return watcher.notices, held_launches, failures, [t.state for t in jour.load()[1]]

    notices, held, failures, ended = asyncio.run(scenario())
    assert held == 0 and failures >= 3
    assert len(notices) == 2 and notices[0].startswith("dispatch paused: cannot write ")
    assert notices[1].startswith("dispatch resumed: ")
    assert ended == [State.SUCCEED]
    jour.close()


@pytest.mark.parametrize("fails", [True, False])
def test_the_report_is_written_whole_or_not_at_all(tmp_path: Path, fails: bool) -> None:
    from pj.master import report

    core = Core(now=time.time())
    core.submit([_spec("j")], time.time())
    path = tmp_path / "jobs.jsonl"
    if fails:
        (tmp_path / "jobs.jsonl.tmp").mkdir()  # the temporary file cannot be made: an OSError
        with pytest.raises(OSError):
            report.write(str(path), core.registry)
        assert not path.exists()
    else:
        assert report.write(str(path), core.registry) == 1
        assert path.exists() and not (tmp_path / "jobs.jsonl.tmp").exists()
