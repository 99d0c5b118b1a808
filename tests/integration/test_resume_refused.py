"""A real `pj-master --resume` (and `pj run --resume`) on a journal that is missing, empty,
meta-less or garbled: one line on stderr naming the file and the fix, exit 2, no traceback, and
nothing written (no token, no master.json, no new campaign)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pj.master import journal
from pj.v1 import pj_pb2

pytestmark = pytest.mark.timeout(120)

NEW = "nothing to resume; start without --resume for a new campaign"
FRESH = "nothing to resume; remove it and start without --resume for a new campaign"
DAMAGED = "restore it from a copy, or start a new campaign without --resume in another --workdir"


def good_journal(workdir: Path) -> Path:
    """A journal as a master leaves it: a campaign id and one batch of two jobs."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / journal.FILENAME
    j = journal.Journal(path)
    j.campaign()
    jobs = [pj_pb2.JobSpec(name="a", exec="/bin/true"), pj_pb2.JobSpec(name="b", exec="/bin/true")]
    j.submit(pj_pb2.SubmitRequest(jobs=jobs, base_dir="/tmp").SerializeToString(), 1.0)
    j.close()
    return path


def sql(*statements: str) -> Callable[[Path], None]:
    def change(path: Path) -> None:
        db = sqlite3.connect(path)
        for s in statements:
            db.execute(s)
        db.commit()
        db.close()
    return change


def random_bytes(path: Path) -> None:
    path.write_bytes(os.urandom(20000))


def no_tables(path: Path) -> None:
    path.unlink()
    sql("CREATE TABLE x (a)", "DROP TABLE x")(path)


def truncate(path: Path) -> None:
    with open(path, "r+b") as f:
        f.truncate(8192)


TASK = "INSERT INTO tasks (job, iteration, state, exit_code, reason, times, alloc) VALUES ('a', NULL, {}, 0, '', {}, {})"
# (case, how the good journal is spoiled (None: no journal; "empty": an empty file), what the line says)
CASES: list[tuple[str, Callable[[Path], None] | str | None, str]] = [
    ("missing", None, f"journal.db does not exist: {NEW}"),
    ("empty", "empty", f"journal.db is empty: {FRESH}"),
    ("random bytes", random_bytes, f"not a PJ journal (not an SQLite database): {DAMAGED}"),
    ("truncated", truncate, f"database disk image is malformed): {DAMAGED}"),
    ("no meta table", sql("DROP TABLE meta"), f"holds no campaign (no 'meta' table): {DAMAGED}"),
    ("no version", sql("DELETE FROM meta WHERE key='version'"), f"no journal version in its 'meta' table: {DAMAGED}"),
    ("no tables", no_tables, f"(no tables): {FRESH}"),
    ("a table missing", sql("DROP TABLE jobs"), f"table 'jobs' is missing: {DAMAGED}"),
    ("a batch that does not parse", sql("INSERT INTO batches (time, request) VALUES (2.0, x'ffffffff0a')"),
     "(DecodeError: Error parsing message with type 'pj.v1.SubmitRequest'"),
    ("a task state that does not parse", sql(TASK.format(99, "'[]'", "'[]'")), "(99 is not a valid State)"),
    ("task times that do not parse", sql(TASK.format(5, "'zz'", "'[]'")), "cannot read the journal (Expecting value"),
    ("a task allocation of the wrong shape", sql(TASK.format(5, "'[]'", "'[1]'")), "(TypeError: 'int' object is not subscriptable)"),
    ("a version from elsewhere", sql("UPDATE meta SET value='99' WHERE key='version'"), "journal version 99"),
]


def master_resume(workdir: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "pj.master", "--workdir", str(workdir), "--resume"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_pj_master_resume_refuses_each_bad_journal_in_one_line(tmp_path: Path) -> None:
    started = []
    for i, (case, spoil, _) in enumerate(CASES):
        workdir = tmp_path / f"case{i}"
        path = workdir / journal.FILENAME
        if spoil == "empty":
            workdir.mkdir()
            path.write_bytes(b"")
        elif spoil is not None:
            good_journal(workdir)
            assert not isinstance(spoil, str)
            spoil(path)
        before = sorted(os.listdir(workdir)) if workdir.exists() else None
        started.append((case, workdir, before, master_resume(workdir)))  # all at once: each takes ~0.5 s
    for (case, workdir, before, proc), (_, _, says) in zip(started, CASES, strict=True):
        out, err = proc.communicate(timeout=60)
        path = workdir.absolute() / journal.FILENAME
        assert proc.returncode == 2, (case, err)
        assert out == "" and err.count("\n") == 1, (case, err)  # one line, no traceback
        assert err.startswith(f"pj-master: --resume: {path}"), (case, err)
        assert says in err, (case, err)
        assert err.rstrip().endswith((NEW, FRESH, DAMAGED)), (case, err)  # the fix, last
        after = sorted(os.listdir(workdir)) if workdir.exists() else None
        assert after == before, (case, before, after)  # no token, no master.json, no -wal left behind


def test_a_good_journal_still_resumes(tmp_path: Path) -> None:
    """The same journal, unspoiled, is resumed: the checks refuse only what is bad."""
    good_journal(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "pj.master", "--workdir", str(tmp_path), "--resume"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "master.json").exists():
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline, "the resumed master did not start"
            time.sleep(0.05)
    finally:
        proc.terminate()
        out = proc.communicate(timeout=30)[0]
    assert "campaign resumed" in out and "jobs=2" in out, out


def test_pj_run_resume_shows_the_line_and_starts_nothing(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.json"
    jobs.write_text('{"jobs": [{"name": "a", "exec": "/bin/true"}]}')
    workdir = tmp_path / "wd"
    pj = [str(Path(sys.executable).parent / "pj")]
    for spoil, says in [(None, f"journal.db does not exist: {NEW}"), ("empty", f"journal.db is empty: {FRESH}")]:
        if spoil == "empty":
            workdir.mkdir()
            (workdir / journal.FILENAME).write_bytes(b"")
        run = subprocess.run([*pj, "run", str(jobs), "--workdir", str(workdir), "--resume", "--local"],
                             capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert run.returncode == 2, run.stderr
        assert run.stderr == f"pj: --resume: {workdir.absolute()}/{says}\n", run.stderr
        if spoil:
            assert sorted(os.listdir(workdir)) == [journal.FILENAME]
        else:
            assert not workdir.exists()

    # A journal whose rows do not parse is found by the master: pj run shows its line.
    (workdir / journal.FILENAME).unlink()
    good_journal(workdir)
    sql("INSERT INTO batches (time, request) VALUES (2.0, x'ffffffff0a')")(workdir / journal.FILENAME)
    run = subprocess.run([*pj, "run", str(jobs), "--workdir", str(workdir), "--resume", "--local"],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert run.returncode != 0
    assert f"pj-master: --resume: {workdir.absolute() / journal.FILENAME}: a row cannot be read" in run.stderr
    assert "Traceback" not in run.stderr
