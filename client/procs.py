"""The processes `pj run` starts (the master, agents, the agents' srun) and how it ends them.

Each runs in its own session (so a Ctrl-C reaches only `pj run`, and a signal to its group
reaches its whole tree) with stdout and stderr in a log file of the workdir.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pj.common import perms

LOG_TAIL_LINES = 15


class CampaignError(Exception):
    """The campaign cannot go on; the message is one line, ``detail`` lines may follow it."""

    def __init__(self, message: str, detail: list[str] | None = None) -> None:
        super().__init__(message)
        self.detail = detail or []


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> list[str]:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(f.tell() - 16384, 0))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    return text.splitlines()[-lines:]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class Child:
    name: str  # "master", "node0", "srun"...
    what: str  # for messages: "the master", "agent node0", "the agents' srun"
    proc: subprocess.Popen[bytes]
    log: Path
    reported: bool = False  # its early exit was told to the user

    def died(self) -> CampaignError:
        return CampaignError(
            f"{self.what} exited with code {self.proc.returncode}; the end of {self.log}:",
            ["    " + line for line in tail(self.log)],
        )

    def signal(self, sig: signal.Signals) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, sig)  # its own session: the group is ours alone

    def kill(self) -> None:
        """SIGTERM, then SIGKILL after 3 s."""
        self.signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=3)


def wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> int:
    """``proc.wait(timeout)`` without its polling: Popen.wait with a timeout sleeps between looks
    (up to 50 ms), so a child that has ended is noticed that much late. A pidfd becomes readable
    the moment the child ends; where there is none (not Linux), Popen.wait it is. Raises
    subprocess.TimeoutExpired like Popen.wait."""
    if proc.returncode is not None:
        return proc.returncode
    try:
        fd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):  # no pidfd here; or the child is gone and reaped already
        return proc.wait(timeout=timeout)
    try:
        ready, _, _ = select.select([fd], [], [], max(timeout, 0.0))
    finally:
        os.close(fd)
    if not ready:
        raise subprocess.TimeoutExpired(proc.args, timeout)
    return proc.wait()  # it has ended: this only reaps it


def wait_all(children: Sequence[Child], timeout: float, on_kill: Callable[[Child], None] | None = None) -> None:
    """Wait for every child in turn, ``timeout`` for them all; kill (``Child.kill``) each one still
    there then, after telling ``on_kill``."""
    deadline = time.monotonic() + timeout
    for child in children:
        try:
            wait_exit(child.proc, max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            if on_kill is not None:
                on_kill(child)
            child.kill()


def kill_all(children: Sequence[Child]) -> list[Child]:
    """SIGKILL every child still alive (its whole session's group) and reap it; returns those."""
    alive = [c for c in children if c.proc.poll() is None]
    for c in alive:
        c.signal(signal.SIGKILL)
    for c in alive:
        with contextlib.suppress(subprocess.TimeoutExpired):
            c.proc.wait(timeout=3)
    return alive


def spawn(name: str, what: str, argv: list[str], log: Path) -> Child:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    try:
        with os.fdopen(perms.create(log, append=True), "ab") as f:  # 0600, or 0640 (perms.py)
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT, env=env,
                start_new_session=True,
            )
    except OSError as e:
        raise CampaignError(f"cannot start {what} ({argv[0]}): {e.strerror or e}") from None
    return Child(name, what, proc, log)
