"""Who may read a workdir: its owner alone by default, its group too when asked; never others.

A workdir holds every command, argument and environment value of a campaign (journal.db, jobs.jsonl,
the logs) and its token, so nothing in it is world-readable: directories PJ creates are 0700 and its
files 0600, or 0750 and 0640 with ``PJ_SHARE=group`` (``pj run --share-group``, ``pj-master
--share-group``, ``LocalCluster(share_group=True)``). The modes are set explicitly (``fchmod``,
``chmod``), whatever the umask. The process that makes the workdir sets its mode; whoever writes a
file into it later follows the workdir (``file_mode_in``: 0640 when its group may read it, else 0600).
Files written by tasks (their stdout/stderr in their wd) are left to the umask: they are the user's.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

SHARE_ENV = "PJ_SHARE"


class ShareError(ValueError):
    """An unknown PJ_SHARE value (one line, with the fix)."""


class Modes(NamedTuple):
    dir: int
    file: int


PRIVATE = Modes(0o700, 0o600)
GROUP = Modes(0o750, 0o640)


def modes(group: bool | None = None, env: Mapping[str, str] | None = None) -> Modes:
    """GROUP if ``group``, else (``group`` None) as ``$PJ_SHARE`` says ("group"; unset, "" or
    "none": PRIVATE); ShareError for anything else."""
    if group is not None:
        return GROUP if group else PRIVATE
    value = (os.environ if env is None else env).get(SHARE_ENV, "").strip()
    if value in ("", "none"):
        return PRIVATE
    if value == "group":
        return GROUP
    raise ShareError(f"{SHARE_ENV}={value!r}: unknown; set {SHARE_ENV}=group to let the workdir's group read it, "
                     "or unset it (the owner alone)")


def make_dir(path: Path, mode: int) -> None:
    """Create ``path`` and any missing parent with ``mode``; an existing ``path`` gets ``mode`` too."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    path.mkdir(parents=True, exist_ok=True)
    for p in missing:
        os.chmod(p, mode)
    if not missing:
        os.chmod(path, mode)


def file_mode_in(directory: Path) -> int:
    """The mode of a file PJ writes into ``directory``: 0640 when its group may read it, else 0600."""
    try:
        shared = bool(os.stat(directory).st_mode & stat.S_IRGRP)
    except OSError:
        shared = False
    return GROUP.file if shared else PRIVATE.file


def create(path: Path, mode: int | None = None, append: bool = False) -> int:
    """Open ``path`` for writing (truncated, or appended to), created or not with ``mode`` (default:
    ``file_mode_in`` its directory) whatever the umask; a descriptor (close-on-exec)."""
    if mode is None:
        mode = file_mode_in(path.parent)
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | (os.O_APPEND if append else os.O_TRUNC)
    fd = os.open(path, flags, mode)
    try:
        os.fchmod(fd, mode)
    except BaseException:
        os.close(fd)
        raise
    return fd


def restrict(path: Path, mode: int | None = None) -> None:
    """Give an existing file ``mode`` (default: ``file_mode_in`` its directory); nothing if it is gone."""
    try:
        os.chmod(path, file_mode_in(path.parent) if mode is None else mode)
    except FileNotFoundError:
        pass
