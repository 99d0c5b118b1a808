"""Writes that fail: a full disk (ENOSPC, SQLITE_FULL), a quota (EDQUOT), a read-only remount
(EROFS, SQLITE_READONLY) or any other OSError or sqlite3 error from a journal or report write.

The master survives them (docs/internals.md, "When the disk is full"):

- a Submit that cannot be journaled is refused (``refusal``, ``status_name``) and nothing of it
  is kept: the service journals a checked batch before the core takes it;
- a dispatcher pass whose journal write fails is held (``Stall``): no new pass, so nothing new is
  launched; running tasks go on and their ends wait in the core's memory; the write is tried again
  with back-off and dispatch resumes once it succeeds. Each change is a run-level notice.

Pure: no grpc, no asyncio; the callers (service.py, runtime.py, main.py) do the I/O.
"""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

WRITE_ERRORS: tuple[type[BaseException], ...] = (OSError, sqlite3.Error)

FULL = "full"
QUOTA = "quota"
READ_ONLY = "read-only"
OTHER = "other"

_ERRNO = {errno.ENOSPC: FULL, errno.EDQUOT: QUOTA, errno.EROFS: READ_ONLY}
_SQLITE_FULL = 13
_SQLITE_READONLY = 8
_CAUSE = {FULL: "no space left on device", QUOTA: "disk quota exceeded", READ_ONLY: "read-only file system"}
_FIX = {
    FULL: "free space",
    QUOTA: "free space or raise the quota",
    READ_ONLY: "remount it read-write",
    OTHER: "fix the file system",
}


def kind(e: BaseException) -> str:
    """What went wrong, as one of FULL, QUOTA, READ_ONLY, OTHER."""
    if isinstance(e, OSError) and e.errno in _ERRNO:
        return _ERRNO[e.errno]
    if isinstance(e, sqlite3.Error):
        code = getattr(e, "sqlite_errorcode", None)
        if code is not None:
            primary = code & 0xFF  # an extended code's low byte is its primary code
            if primary == _SQLITE_FULL:
                return FULL
            if primary == _SQLITE_READONLY:
                return READ_ONLY
        text = str(e).lower()
        if "disk is full" in text:
            return FULL
        if "readonly" in text or "read-only" in text:
            return READ_ONLY
    return OTHER


def cause(e: BaseException) -> str:
    """The error in a few words, on one line."""
    k = kind(e)
    if k in _CAUSE:
        return _CAUSE[k]
    text = (e.strerror if isinstance(e, OSError) and e.strerror else str(e)) or type(e).__name__
    return " ".join(text.split())


def fix(e: BaseException) -> str:
    """What the user does about it."""
    return _FIX[kind(e)]


def status_name(e: BaseException) -> str:
    """The gRPC status a refused request gets: RESOURCE_EXHAUSTED when space ran out, else UNAVAILABLE."""
    return "RESOURCE_EXHAUSTED" if kind(e) in (FULL, QUOTA) else "UNAVAILABLE"


def _headline(path: Path, e: BaseException) -> str:
    k = kind(e)
    if k == FULL:
        return f"no space left on {path}"
    if k == QUOTA:
        return f"disk quota exceeded on {path}"
    if k == READ_ONLY:
        return f"{path} is on a read-only file system"
    return f"cannot write {path} ({cause(e)})"


def refusal(path: Path, e: BaseException) -> str:
    """The one line a Submit that could not be journaled is refused with."""
    return f"{_headline(path, e)}: the submission was not kept; {fix(e)} and submit again"


def report_failure(report: Path, journal: Path, e: BaseException) -> str:
    """The one line the master ends with when it cannot write the report."""
    return (f"{_headline(report, e)}: the report was not written; every job's end is in the journal "
            f"{journal}: {fix(e)}, then continue the campaign with --resume to write it")


class Stall:
    """Dispatch paused by a journal write that failed: when it began, how long to wait before the
    next try (back-off from ``FIRST_S``, doubling to ``MAX_S``), and the notices that say so."""

    FIRST_S = 0.1
    MAX_S = 2.0

    def __init__(self) -> None:
        self.since: float | None = None  # when the first write failed; None: not paused
        self.failures = 0
        self.retry_s = self.FIRST_S
        self._said = ""  # the error the last notice named

    @property
    def paused(self) -> bool:
        return self.since is not None

    def failed(self, path: Path, e: BaseException, now: float) -> str | None:
        """A write failed: pause (or stay paused), back off. The notice to give, if any: when the
        pause begins, and when the error changes (not at every try)."""
        self.failures += 1
        if self.since is None:
            self.since = now
            self.retry_s = self.FIRST_S
        else:
            self.retry_s = min(self.retry_s * 2, self.MAX_S)
        said = cause(e)
        if said == self._said:
            return None
        self._said = said
        return (f"dispatch paused: cannot write {path}: {said}; no new task starts, running tasks go on "
                f"and their ends are kept in memory; {fix(e)} there: the write is tried again every "
                f"{self.MAX_S:g} s at most and dispatch resumes by itself")

    def written(self, path: Path, now: float) -> str | None:
        """A write succeeded: resume. The notice to give if dispatch was paused."""
        if self.since is None:
            return None
        paused_s, failures = now - self.since, self.failures
        self.since, self.failures, self.retry_s, self._said = None, 0, self.FIRST_S, ""
        return f"dispatch resumed: {path} written again after {paused_s:.1f} s paused ({failures} failed writes)"
