"""The registry's journal, DIR/journal.db: SQLite in WAL mode, written by the asyncio shell.

What it keeps (enough to rebuild the registry with ``restore.py``):

- ``batches``: each accepted Submit, as the SubmitRequest's bytes (specs and base dir) and the time;
- ``tasks``: each task that reached its final state (job, iteration, state, exit code, reason,
  times, nodes/cores/GPUs, CPU user/system seconds, peak RSS in KB, a FAILED task's stderr tail);
  an earlier attempt of a retried task is in ``attempts``. A journal made before the
  last four columns existed gets them (0 and "") when it is opened;
- ``attempts``: each earlier attempt of a task, ended and queued again (a retry, a lost node, an
  interruption): job, iteration, task id, state, exit code, reason, nodes/cores/GPUs, start and end,
  whether a node was lost under it and whether it used a retry, CPU seconds, peak RSS, stderr tail.
  A resumed master gives them back (retry budgets and crash counts go on; the report lists them);
  the table is made on open in a journal that predates it;
- ``jobs``: each job that reached its final state (state, reason, times);
- ``requests``: the users' cancel and finish requests;
- ``placements``: each task placed on nodes (task id, job, iteration, nodes/cores/GPUs), ``open``
  until it is final or queued again: on ``--resume`` the open ones are the orphans that agents which
  outlived the master may still run (reconcile.py), and task ids continue after the highest;
- ``meta``: the journal's version and the campaign's id (``Welcome.campaign``), kept by ``--resume``.

Commit points and durability. A Submit is committed with ``synchronous=FULL`` (the WAL is fsynced)
before its reply is sent: an acknowledged job survives a crash of the machine, not only of the
master. Task placements and task and job ends are grouped: what one dispatcher pass produced is one transaction,
written with ``executemany`` under ``synchronous=NORMAL`` before the pass's commands go out. In WAL
mode NORMAL is safe against a crash of the master (SIGKILL, OOM): a committed transaction is in
the WAL file; only a power loss or an OS crash can lose the last ones, and then those tasks run
again on ``--resume`` (at least once, never lost). Cancel and finish requests are committed
(NORMAL) before their reply.
"""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from pj.common import perms
from pj.v1 import pj_pb2 as pb

from . import convert, usage
from .model import NodeShare, State
from .registry import Attempt, Job, Task
from .restore import AttemptRecord, Batch, History, JobRecord, Placement, RequestRecord, TaskRecord

FILENAME = "journal.db"
VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS batches (seq INTEGER PRIMARY KEY, time REAL NOT NULL, request BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (
    seq INTEGER PRIMARY KEY, job TEXT NOT NULL, iteration INTEGER, state INTEGER NOT NULL,
    exit_code INTEGER, reason TEXT NOT NULL, times TEXT NOT NULL, alloc TEXT NOT NULL,
    cpu_user_s REAL NOT NULL DEFAULT 0, cpu_system_s REAL NOT NULL DEFAULT 0,
    max_rss_kb INTEGER NOT NULL DEFAULT 0, stderr_tail TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS attempts (
    seq INTEGER PRIMARY KEY, job TEXT NOT NULL, iteration INTEGER, task_id INTEGER NOT NULL,
    state INTEGER NOT NULL, exit_code INTEGER, reason TEXT NOT NULL, alloc TEXT NOT NULL, started REAL,
    ended REAL NOT NULL, lost INTEGER NOT NULL, retried INTEGER NOT NULL, cpu_user_s REAL NOT NULL,
    cpu_system_s REAL NOT NULL, max_rss_kb INTEGER NOT NULL, stderr_tail TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY, name TEXT NOT NULL, state INTEGER NOT NULL, reason TEXT NOT NULL,
    times TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS requests (
    seq INTEGER PRIMARY KEY, time REAL NOT NULL, kind TEXT NOT NULL, names TEXT NOT NULL,
    drain INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS placements (
    task_id INTEGER PRIMARY KEY, job TEXT NOT NULL, iteration INTEGER, alloc TEXT NOT NULL,
    open INTEGER NOT NULL DEFAULT 1);
"""
# Columns added to ``tasks`` since version 1 was first written: an older journal gets them on open.
_TASK_COLUMNS = (
    ("cpu_user_s", "REAL NOT NULL DEFAULT 0"),
    ("cpu_system_s", "REAL NOT NULL DEFAULT 0"),
    ("max_rss_kb", "INTEGER NOT NULL DEFAULT 0"),
    ("stderr_tail", "TEXT NOT NULL DEFAULT ''"),
)


class JournalError(RuntimeError):
    """The journal cannot be opened or read (names the file and the fix)."""


def path_in(workdir: Path) -> Path:
    return workdir / FILENAME


# The two JSON columns written for every task are formatted by hand (json.dumps was most of the
# journal's cost per task); the text is the same JSON that json.dumps gives, read back by json.loads.
_quoted: dict[str, str] = {}  # node name or GPU id -> its JSON string literal


def _q(text: str) -> str:
    q = _quoted.get(text)
    if q is None:
        q = json.dumps(text)
        if len(_quoted) < 100_000:
            _quoted[text] = q
    return q


_OPEN = {s: f"[{int(s)}," for s in State}  # a history entry's text up to its time
_CACHE_MAX = 100_000  # entries per text cache below (cleared when full: they only save work)
_entry_text: dict[tuple[State, float], str] = {}  # history entry -> its JSON text
_alloc_text: dict[tuple[NodeShare, ...], str] = {}  # allocation -> its JSON text


def _times(history: Sequence[tuple[State, float]]) -> str:
    # A pass stamps everything it changes with one (state, time) tuple (registry._stamp), so most
    # entries were formatted before. repr(float) is what json.dumps writes for a finite float.
    texts = _entry_text
    parts = []
    for e in history:
        text = texts.get(e)
        if text is None:
            if len(texts) >= _CACHE_MAX:
                texts.clear()
            text = texts[e] = _OPEN[e[0]] + repr(e[1]) + "]"
        parts.append(text)
    return "[" + ",".join(parts) + "]"


def _alloc(t: Task) -> str:
    # Tasks of one shape keep landing on the same few core sets: each is formatted once.
    allocation = t.allocation
    text = _alloc_text.get(allocation)
    if text is None:
        if len(_alloc_text) >= _CACHE_MAX:
            _alloc_text.clear()
        text = _alloc_text[allocation] = "[" + ",".join([
            f"[{_q(s.node)},[{','.join(map(str, s.cores))}],[{','.join(map(_q, s.gpus))}]"
            + (f",{s.memory}]" if s.memory else "]")
            for s in allocation
        ]) + "]"
    return text


_STATE = {int(s): s for s in State}


def _allocation(text: str) -> tuple[NodeShare, ...]:
    # [node, cores, gpus] or, for a task holding memory, [node, cores, gpus, memory bytes]
    return tuple(NodeShare(s[0], tuple(s[1]), tuple(s[2]), *s[3:4]) for s in json.loads(text))


def _history(text: str) -> History:
    """'[[1,1.5],[2,2.25]]' (as ``_times`` writes it) -> ((QUEUED, 1.5), (SCHEDULED, 2.25)), by
    splitting (a third faster than json.loads); anything else goes through json.loads."""
    states = _STATE
    if text.startswith("[[") and text.endswith("]]"):
        try:
            out = []
            for part in text[2:-2].split("],["):
                s, _, t = part.partition(",")
                out.append((states[int(s)], float(t)))
            return tuple(out)
        except (KeyError, ValueError):
            pass
    return tuple([(states.get(s) or State(s), float(t)) for s, t in json.loads(text)])


class _Reader:
    """Parses a journal's repeated texts once: allocations (tasks keep landing on the same core
    sets) and whole histories (a pass stamps what it changes with one time)."""

    def __init__(self) -> None:
        self.allocs: dict[str, tuple[NodeShare, ...]] = {}
        self.histories: dict[str, History] = {}

    def allocation(self, text: str) -> tuple[NodeShare, ...]:
        got = self.allocs.get(text)
        if got is None:
            got = _allocation(text)
            if len(self.allocs) < _CACHE_MAX:
                self.allocs[text] = got
        return got

    def history(self, text: str) -> History:
        got = self.histories.get(text)
        if got is None:
            got = _history(text)
            if len(self.histories) < 10_000:  # unique for most tasks: only a few are worth keeping
                self.histories[text] = got
        return got


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            # Made first with the workdir's file mode (0600, or 0640 shared with its group): SQLite
            # gives its -wal and -shm files the database's mode; an older journal's are set here.
            os.close(perms.create(path, append=True))
            # isolation_level=None: transactions are explicit (BEGIN ... COMMIT), one per group.
            self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            mode = self.db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise JournalError(f"{path}: SQLite cannot use WAL mode here (got {mode})")
            self.db.execute("PRAGMA synchronous=NORMAL")
            for suffix in ("-wal", "-shm"):
                perms.restrict(path.with_name(path.name + suffix))
            self.db.executescript(_SCHEMA)
            have = {row[1] for row in self.db.execute("PRAGMA table_info(tasks)")}
            for name, decl in _TASK_COLUMNS:
                if name not in have:
                    self.db.execute(f"ALTER TABLE tasks ADD COLUMN {name} {decl}")
            self.db.execute("INSERT OR IGNORE INTO meta VALUES ('version', ?)", (VERSION,))
            (version,) = self.db.execute("SELECT value FROM meta WHERE key='version'").fetchone()
        except (sqlite3.Error, OSError) as e:
            raise JournalError(f"{path}: cannot open the journal ({e})") from e
        if version != VERSION:
            raise JournalError(f"{path}: journal version {version}, this pj-master reads version {VERSION}")

    def campaign(self) -> str:
        """This campaign's id: made when the journal is, the same for every ``--resume``."""
        try:
            self.db.execute("INSERT OR IGNORE INTO meta VALUES ('campaign', ?)", (uuid.uuid4().hex,))
            (value,) = self.db.execute("SELECT value FROM meta WHERE key='campaign'").fetchone()
        except sqlite3.Error as e:
            raise JournalError(f"{self.path}: cannot write the journal ({e})") from e
        return str(value)

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------------ writing

    def submit(self, request: bytes, now: float) -> None:
        """An accepted batch; durable (fsynced) when this returns."""
        db = self.db
        db.execute("PRAGMA synchronous=FULL")
        try:
            db.execute("INSERT INTO batches (time, request) VALUES (?, ?)", (now, request))
        finally:
            db.execute("PRAGMA synchronous=NORMAL")

    def request(self, kind: str, names: Iterable[str], drain: bool, now: float) -> None:
        self.db.execute(
            "INSERT INTO requests (time, kind, names, drain) VALUES (?, ?, ?, ?)",
            (now, kind, json.dumps(list(names)), int(drain)),
        )

    def record(self, tasks: list[Task], jobs: list[Job], placed: Iterable[Task] = (),
               unplaced: Iterable[int] = (), attempts: Iterable[tuple[Task, Attempt, bool]] = ()) -> None:
        """What one dispatcher pass placed, queued again and ended, in one transaction (``attempts``:
        the ended attempts kept as tasks were queued again, each with whether it used a retry)."""
        placed, unplaced, attempts = list(placed), list(unplaced), list(attempts)
        if not tasks and not jobs and not placed and not unplaced and not attempts:
            return
        db = self.db
        if db.in_transaction:  # a failed write's ROLLBACK failed too
            self._rollback()
        db.execute("BEGIN")
        try:
            if placed:
                db.executemany(
                    "INSERT OR REPLACE INTO placements (task_id, job, iteration, alloc) VALUES (?, ?, ?, ?)",
                    [(t.id, t.job.name, t.iteration, _alloc(t)) for t in placed],
                )
            closed = unplaced + [t.id for t in tasks if t.allocation]
            if closed:
                db.executemany("UPDATE placements SET open=0 WHERE task_id=?", [(i,) for i in closed])
            if tasks:
                db.executemany(
                    "INSERT INTO tasks (job, iteration, state, exit_code, reason, times, alloc, cpu_user_s, "
                    "cpu_system_s, max_rss_kb, stderr_tail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (
                            t.job.name,
                            t.iteration,
                            t.state._value_,
                            t.exit_code,
                            t.reason,
                            _times(t.history),
                            _alloc(t),
                            *(usage.unpack(t.usage) if t.usage else usage.ZERO),
                            t.stderr_tail,
                        )
                        for t in tasks
                    ],
                )
            if attempts:
                db.executemany(
                    "INSERT INTO attempts (job, iteration, task_id, state, exit_code, reason, alloc, started, ended, "
                    "lost, retried, cpu_user_s, cpu_system_s, max_rss_kb, stderr_tail) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (t.job.name, t.iteration, a.task_id, a.state._value_, a.exit_code, a.reason, _alloc(t),
                         a.started, a.ended, int(a.lost), int(retried),
                         *(usage.unpack(a.usage) if a.usage else usage.ZERO), a.stderr_tail)
                        for t, a, retried in attempts
                    ],
                )
            if jobs:
                db.executemany(
                    "INSERT INTO jobs (name, state, reason, times) VALUES (?, ?, ?, ?)",
                    [(j.name, j.state._value_, j.reason, _times(j.history)) for j in jobs],
                )
            db.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise

    def _rollback(self) -> None:
        """Undo a transaction that failed. SQLite may have rolled it back itself (SQLITE_FULL: then
        ROLLBACK says "cannot rollback"): the pass is held and written again whole (writefault.py)."""
        if self.db.in_transaction:
            try:
                self.db.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # nothing is left open, or the next BEGIN finds it and rolls back first

    # ------------------------------------------------------------------ reading

    def load(self) -> tuple[list[Batch], list[TaskRecord], list[JobRecord], list[RequestRecord]]:
        """Everything journaled, each kind in the order it was written."""
        batches, tasks, jobs, requests = self.stream()
        return batches, list(tasks), jobs, requests

    def stream(self) -> tuple[list[Batch], Iterator[TaskRecord], list[JobRecord], list[RequestRecord]]:
        """``load``, but the tasks come as they are read (a million of them need not be held as
        records while the registry is rebuilt from them): iterate them before the journal closes."""
        db = self.db
        reader = _Reader()
        try:
            batches = []
            for t, blob in db.execute("SELECT time, request FROM batches ORDER BY seq"):
                req = pb.SubmitRequest.FromString(blob)
                batch = convert.submit_batch(req)
                batches.append(Batch(convert.batch_specs(batch, req.base_dir), t, batch.names))
            jobs = [
                JobRecord(name, _STATE.get(state) or State(state), reason, reader.history(times))
                for name, state, reason, times in db.execute(
                    "SELECT name, state, reason, times FROM jobs ORDER BY seq"
                )
            ]
            requests = [
                RequestRecord(kind, tuple(json.loads(names)), bool(drain))
                for kind, names, drain in db.execute("SELECT kind, names, drain FROM requests ORDER BY seq")
            ]
        except (sqlite3.Error, ValueError, KeyError) as e:
            raise JournalError(f"{self.path}: cannot read the journal ({e})") from e
        return batches, self._tasks(reader), jobs, requests

    def _tasks(self, reader: _Reader) -> Iterator[TaskRecord]:
        pack, states, history, allocation = usage.pack, _STATE, reader.history, reader.allocation
        try:
            for job, it, state, code, reason, times, alloc, user, system, rss, tail in self.db.execute(
                "SELECT job, iteration, state, exit_code, reason, times, alloc, cpu_user_s, cpu_system_s, "
                "max_rss_kb, stderr_tail FROM tasks ORDER BY seq"
            ):
                yield TaskRecord(job, it, states.get(state) or State(state), code, reason, history(times), allocation(alloc),
                                 pack(user, system, rss) if user or system or rss else b"", tail)
        except (sqlite3.Error, ValueError, KeyError) as e:
            raise JournalError(f"{self.path}: cannot read the journal ({e})") from e

    def attempts(self) -> list[AttemptRecord]:
        """The earlier attempts of tasks, in the order they ended."""
        try:
            return [
                AttemptRecord(job, it, Attempt(
                    State(state), code, reason, tuple(s.node for s in _allocation(alloc)), started, ended, tid,
                    bool(lost), usage.pack(user, system, rss), tail,
                ), bool(retried))
                for job, it, tid, state, code, reason, alloc, started, ended, lost, retried, user, system, rss, tail
                in self.db.execute(
                    "SELECT job, iteration, task_id, state, exit_code, reason, alloc, started, ended, lost, retried, "
                    "cpu_user_s, cpu_system_s, max_rss_kb, stderr_tail FROM attempts ORDER BY seq"
                )
            ]
        except (sqlite3.Error, ValueError) as e:
            raise JournalError(f"{self.path}: cannot read the journal ({e})") from e

    def placements(self) -> list[Placement]:
        """The tasks placed and not final (open), and the highest task id ever placed (open or not)
        as a closed placement without allocation when it is not open itself."""
        try:
            rows = self.db.execute(
                "SELECT task_id, job, iteration, alloc FROM placements WHERE open=1 ORDER BY task_id"
            ).fetchall()
            (top,) = self.db.execute("SELECT max(task_id) FROM placements").fetchone()
        except (sqlite3.Error, ValueError) as e:
            raise JournalError(f"{self.path}: cannot read the journal ({e})") from e
        out = [Placement(tid, job, it, _allocation(alloc)) for tid, job, it, alloc in rows]
        if top is not None and (not out or out[-1].task_id < top):
            out.append(Placement(int(top), "", None, ()))  # no task: it only carries the id
        return out
