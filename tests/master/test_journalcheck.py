"""common/journalcheck.py: what `--resume` finds in DIR/journal.db, judged before anything is
written (pure file checks; the real pj-master runs are in tests/integration/test_resume_refused.py)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from pj.common.journalcheck import JOURNAL_FILE, resume_problem
from pj.master import journal
from pj.v1 import pj_pb2


def made(tmp_path: Path) -> Path:
    path = tmp_path / JOURNAL_FILE
    j = journal.Journal(path)
    j.campaign()
    j.submit(pj_pb2.SubmitRequest(jobs=[pj_pb2.JobSpec(name="a", exec="/bin/true")], base_dir="/").SerializeToString(),
             1.0)
    j.close()
    return path


def files(tmp_path: Path) -> list[str]:
    return sorted(os.listdir(tmp_path))


def test_the_name_is_the_masters() -> None:
    assert journal.FILENAME == JOURNAL_FILE


def test_a_real_journal_passes_and_is_left_as_it_was(tmp_path: Path) -> None:
    path = made(tmp_path)
    before = path.read_bytes()
    assert resume_problem(path) is None
    assert path.read_bytes() == before and files(tmp_path) == [JOURNAL_FILE]


def test_a_journal_still_in_its_wal_passes(tmp_path: Path) -> None:
    """A master killed -9 leaves its rows in journal.db-wal: they count."""
    path = tmp_path / JOURNAL_FILE
    j = journal.Journal(path)
    j.campaign()
    assert (tmp_path / f"{JOURNAL_FILE}-wal").exists()
    assert resume_problem(path) is None
    j.close()


def test_missing_and_empty(tmp_path: Path) -> None:
    path = tmp_path / JOURNAL_FILE
    assert resume_problem(path) == (
        f"{path} does not exist: nothing to resume; start without --resume for a new campaign")
    assert files(tmp_path) == []
    path.write_bytes(b"")
    assert resume_problem(path) == (
        f"{path} is empty: nothing to resume; remove it and start without --resume for a new campaign")
    assert resume_problem(tmp_path / "no-such-dir" / JOURNAL_FILE) is not None
    assert not (tmp_path / "no-such-dir").exists()


def test_garbled(tmp_path: Path) -> None:
    fix = "restore it from a copy, or start a new campaign without --resume in another --workdir"
    path = tmp_path / JOURNAL_FILE
    path.write_bytes(os.urandom(5000))
    assert resume_problem(path) == f"{path}: not a PJ journal (not an SQLite database): {fix}"
    path.unlink()
    path.mkdir()
    assert resume_problem(path) == f"{path}: is not a file: {fix}"
    path.rmdir()

    path = made(tmp_path)
    db = sqlite3.connect(path)
    db.execute("DROP TABLE tasks")
    db.commit()
    db.close()
    assert resume_problem(path) == f"{path}: table 'tasks' is missing: {fix}"

    path.unlink()
    path = made(tmp_path)
    db = sqlite3.connect(path)
    db.execute("DELETE FROM meta WHERE key='version'")
    db.commit()
    db.close()
    assert resume_problem(path) == f"{path}: no journal version in its 'meta' table: {fix}"

    db = sqlite3.connect(path)
    db.execute("DROP TABLE meta")
    db.commit()
    db.close()
    assert resume_problem(path) == f"{path}: holds no campaign (no 'meta' table): {fix}"

    path.unlink()
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE x (a)")
    db.execute("DROP TABLE x")
    db.commit()
    db.close()
    assert resume_problem(path) == (
        f"{path} holds no campaign (no tables): nothing to resume; remove it and start without --resume "
        "for a new campaign")
    assert files(tmp_path) == [JOURNAL_FILE]


def test_truncated(tmp_path: Path) -> None:
    path = made(tmp_path)
    with open(path, "r+b") as f:
        f.truncate(100)  # the header survives, the schema page does not
    problem = resume_problem(path)
    assert problem is not None and problem.startswith(f"{path}: ") and "restore it from a copy" in problem
