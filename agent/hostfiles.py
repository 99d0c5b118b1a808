"""Hostfiles for tasks: one file per distinct content, in a private directory of the agent.

A Launch may carry a hostfile (node names, one line per rank); the task gets the path of a file
holding it (PJ_HOSTFILE, and SLURM_HOSTFILE for srun). Files are named by a hash of their content,
so the many tasks of one shape share one file, and a file never changes or goes away while the
agent lives: a task may read it at any moment of its life. The directory is made on first use
(tempfile.mkdtemp under $TMPDIR or /tmp, mode 0700) and removed by ``close``.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile

_CACHE_MAX = 4096  # remembered paths; forgetting one only costs a stat() the next time
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


class HostfileError(Exception):
    """The hostfile could not be written (the message says where and what to do)."""


class Hostfiles:
    def __init__(self, node: str = "", tmpdir: str | None = None) -> None:
        self._prefix = f"pj-agent-{_UNSAFE.sub('_', node)[:64]}-" if node else "pj-agent-"
        self._tmpdir = tmpdir  # None: tempfile's choice ($TMPDIR, else /tmp, ...)
        self._dir: str | None = None
        self._paths: dict[str, str] = {}

    @property
    def directory(self) -> str | None:
        """The private directory, once a hostfile was written; None before."""
        return self._dir

    def path(self, content: str) -> str:
        """The path of a file holding ``content`` (written on first use). Raises HostfileError."""
        got = self._paths.get(content)
        if got is not None:
            return got
        data = content.encode()
        try:
            if self._dir is None:
                self._dir = os.path.abspath(tempfile.mkdtemp(prefix=self._prefix, dir=self._tmpdir))
            path = os.path.join(self._dir, hashlib.sha256(data).hexdigest()[:32] + ".hosts")
            if not os.path.exists(path):
                _write_new(path, data)
        except OSError as e:
            where = self._dir or self._tmpdir or tempfile.gettempdir()
            raise HostfileError(
                f"cannot write a hostfile in {where}: {e.strerror or e}; "
                "set TMPDIR to a writable local directory",
            ) from None
        if len(self._paths) >= _CACHE_MAX:
            self._paths.clear()
        self._paths[content] = path
        return path

    def close(self) -> None:
        """Remove the directory and every hostfile in it."""
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        self._paths.clear()


def _write_new(path: str, data: bytes) -> None:
    """Write under a temporary name, then rename: a reader never sees a half-written file."""
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
    os.replace(tmp, path)
