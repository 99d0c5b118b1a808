"""Is there a campaign to resume in DIR/journal.db? One check for ``pj-master --resume`` and
``pj run --resume``, before anything is written.

``resume_problem(path)`` returns ``None`` when the file looks like a PJ journal (an SQLite
database with the journal's tables and a version in its ``meta`` table), else one line naming the
file, what is wrong and the fix: a missing, empty or meta-less journal has nothing to resume (a new
campaign is started without ``--resume``); anything else (random bytes, a truncated file, a table
missing) is damaged. Only an existing database is opened, and nothing is written to it (read-write,
not read-only: a read-only reader of a WAL database leaves its -wal and -shm files behind). The
rows themselves are checked when the master reads them (``master/journal.py``, ``restore.py``).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import quote

__all__ = ["DAMAGED_FIX", "FRESH_FIX", "JOURNAL_FILE", "NEW_FIX", "damaged", "resume_problem"]

JOURNAL_FILE = "journal.db"
NEW_FIX = "nothing to resume; start without --resume for a new campaign"
FRESH_FIX = "nothing to resume; remove it and start without --resume for a new campaign"
DAMAGED_FIX = "restore it from a copy, or start a new campaign without --resume in another --workdir"
# The tables every journal has had since its first version (``placements`` came later and is made
# when an older journal is opened).
TABLES = ("meta", "batches", "tasks", "jobs", "requests")
_HEADER = b"SQLite format 3\x00"


def damaged(path: Path | str, what: str) -> str:
    """The line for a journal that cannot be read: ``what`` went wrong, and the fix."""
    return one_line(f"{path}: {what}: {DAMAGED_FIX}")


def one_line(text: str) -> str:
    return " ".join(text.split())


def resume_problem(path: Path) -> str | None:
    """``None`` if ``path`` holds a PJ journal to resume, else why not (one line, with the fix)."""
    try:
        if not path.exists():
            return f"{path} does not exist: {NEW_FIX}"
        if not path.is_file():
            return damaged(path, "is not a file")
        with open(path, "rb") as f:
            head = f.read(len(_HEADER))
    except OSError as e:
        return damaged(path, f"cannot read it ({e.strerror or e})")
    if not head:
        return f"{path} is empty: {FRESH_FIX}"
    if head != _HEADER:
        return damaged(path, "not a PJ journal (not an SQLite database)")
    try:
        db = sqlite3.connect(f"file:{quote(str(path.absolute()))}?mode=rw", uri=True)
    except sqlite3.Error as e:
        return damaged(path, f"cannot open it ({e})")
    try:
        have = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "meta" not in have:
            if not have:
                return f"{path} holds no campaign (no tables): {FRESH_FIX}"
            return damaged(path, "holds no campaign (no 'meta' table)")
        missing = [t for t in TABLES if t not in have]
        if missing:
            return damaged(path, f"table {missing[0]!r} is missing")
        row = db.execute("SELECT value FROM meta WHERE key='version'").fetchone()
        if row is None:
            return damaged(path, "no journal version in its 'meta' table")
    except sqlite3.Error as e:
        return damaged(path, f"cannot read it ({e})")
    finally:
        db.close()
    return None
