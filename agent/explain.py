"""Why a task could not start, in words a user can act on (failure path only, never per spawn).

Exit codes are a shell's: 127 the command was not found (or cannot be started at all), 126 it
was found but cannot be executed. A reason names the path; for a bare name (no '/') that is not
in PATH but exists in the task's working directory it suggests ``./name``::

    exit code 127: command not found: 'sim' (there is ./sim in /runs/wd: did you mean "./sim"?)
"""

from __future__ import annotations

import errno
import os

from .state import EXIT_CANNOT_START, EXIT_NOT_EXECUTABLE

_PATH_SHOWN = 200  # characters of PATH quoted in a reason


def not_found(name: str, wd: str, path_var: str) -> tuple[int, str]:
    """A bare command name found nowhere in PATH: (127, the reason)."""
    head = f"exit code {EXIT_CANNOT_START}: command not found: {name!r}"
    local = os.path.join(wd, name)
    if os.path.exists(local):
        what = "" if os.access(local, os.X_OK) and os.path.isfile(local) else " (not executable)"
        return EXIT_CANNOT_START, f'{head} (there is ./{name}{what} in {wd}: did you mean "./{name}"?)'
    shown = path_var if len(path_var) <= _PATH_SHOWN else path_var[:_PATH_SHOWN] + "..."
    return EXIT_CANNOT_START, f"{head} (not in PATH={shown})"


def exec_failed(err: int, where: str) -> tuple[int, str]:
    """execve of ``where`` (absolute) failed with ``err``: (126 or 127, the reason)."""
    if err in (errno.EACCES, errno.ENOEXEC, errno.EISDIR, errno.EPERM):
        why = "it is a directory" if os.path.isdir(where) else os.strerror(err)
        return EXIT_NOT_EXECUTABLE, f"exit code {EXIT_NOT_EXECUTABLE}: cannot execute {where}: {why}"
    if err == errno.ENOENT:
        interp = _interpreter(where) if os.path.lexists(where) else ""
        if interp:  # the file is there: its #! line names what is missing
            return EXIT_CANNOT_START, (
                f"exit code {EXIT_CANNOT_START}: cannot execute {where}: its interpreter {interp} "
                "(its #! line) is not found")
    return EXIT_CANNOT_START, f"exit code {EXIT_CANNOT_START}: cannot execute {where}: {os.strerror(err or errno.EIO)}"


def _interpreter(path: str) -> str:
    try:
        with open(path, "rb") as f:
            head = f.read(256)
    except OSError:
        return ""
    if not head.startswith(b"#!"):
        return ""
    words = head[2:].split(b"\n", 1)[0].split()
    return words[0].decode("utf-8", "replace") if words else ""


def open_problem(path: str, read: bool) -> str:
    """Why ``path`` cannot be opened for reading (stdin) or writing (stdout/stderr); '' if it can."""
    try:
        if read:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            os.close(fd)
            return ""
        if os.path.exists(path):
            return (
                ""
                if os.access(path, os.W_OK) and not os.path.isdir(path)
                else ("it is a directory" if os.path.isdir(path) else "permission denied")
            )
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            return f"directory {parent} does not exist"
        return "" if os.access(parent, os.W_OK | os.X_OK) else f"directory {parent} is not writable"
    except OSError as e:
        return e.strerror or str(e)
