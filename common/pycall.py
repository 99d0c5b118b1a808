"""Python function calls as PJ tasks: what the client (pj.client.Executor) and the agent's warm
workers (pj.agent.pyworkers, pj.agent.pyworker) agree on. No pickling here, only the layout.

A call is an ordinary job whose command line names the worker module::

    PYTHON -m pj.agent.pyworker call DIR BATCH FN_OFF:FN_LEN ARG_OFF:ARG_LEN RESULT MAX_RESULT

- ``DIR``: the Executor's calls directory (``WORKDIR/calls/<executor id>``, on the shared file
  system in Slurm mode); ``DIR/BATCH`` holds the cloudpickled functions and arguments of one
  Submit, one after the other; the two spans say where this call's function and its
  ``(args, kwargs)`` are (a function is stored once per batch, however many calls use it).
- ``RESULT``: the key (the job's name) of the call's outcome, a pickled ``(OK, value)`` or
  ``(ERROR, exception or None, type name, message, remote traceback)``, appended before the task
  ends to the *results log* of the process that ran it, ``DIR/r-<host>-<pid>.log`` (one writer
  per file; each record: ``<IQ`` key length, data length, key, data; opened, appended and closed
  per call: no file is created per call, and a shared file system sees it once closed). The last
  record of a key wins (a retried call writes again). A value or exception pickled to more than
  ``MAX_RESULT`` bytes is replaced by an error naming the limit.

An agent routes such launches to a warm worker of its own (``pyworkers.py``); anything else
that runs the command line (an agent without workers, a shell) runs the call cold in a new
interpreter, with the same outcome. The master sees a job like any other: it journals it with its
batch, schedules it, retries it, and reruns it after ``--resume`` (the batch files stay in DIR).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from typing import NamedTuple

MODULE = "pj.agent.pyworker"
VERB = "call"
LOG_PREFIX = "r-"
LOG_SUFFIX = ".log"
RECORD = struct.Struct("<IQ")
OK = "ok"
ERROR = "error"
# Defaults of pj.client.Executor: a call's pickled function + arguments, and its pickled result.
MAX_CALL_BYTES = 64 << 20
MAX_RESULT_BYTES = 64 << 20


class CallArgs(NamedTuple):
    directory: str
    batch: str
    fn_span: tuple[int, int]  # offset, length in DIR/BATCH
    arg_span: tuple[int, int]
    result: str  # file name in DIR
    max_result: int


class CallRef:
    """Stands for a call's result in another call's arguments (a future passed as an argument):
    the worker looks its outcome up in DIR's results logs before this one runs (PJ ran it first:
    the job depends on it)."""

    __slots__ = ("directory", "result")

    def __init__(self, directory: str, result: str) -> None:
        self.directory = directory
        self.result = result

    def __reduce__(self) -> tuple[type[CallRef], tuple[str, str]]:
        return (CallRef, (self.directory, self.result))

    def __repr__(self) -> str:
        return f"CallRef({self.directory!r}, {self.result!r})"


def _span(text: str) -> tuple[int, int]:
    off, _, n = text.partition(":")
    return int(off), int(n)


def call_args(python: str, args: CallArgs) -> list[str]:
    """The job's args after ``exec = python`` (everything but argv[0])."""
    return [
        "-m", MODULE, VERB, args.directory, args.batch,
        f"{args.fn_span[0]}:{args.fn_span[1]}", f"{args.arg_span[0]}:{args.arg_span[1]}",
        args.result, str(args.max_result),
    ]


def is_call(argv: Sequence[str]) -> bool:
    """Whether a task's command line is a function call (argv[0] is the interpreter)."""
    return len(argv) == 10 and argv[3] == VERB and argv[2] == MODULE and argv[1] == "-m"


def parse(argv: Sequence[str]) -> CallArgs:
    """The call a command line names (``is_call(argv)`` holds); ValueError when malformed."""
    if not is_call(argv):
        raise ValueError("not a function call's command line")
    return CallArgs(argv[4], argv[5], _span(argv[6]), _span(argv[7]), argv[8], int(argv[9]))


def tail(text: str, limit: int = 4096) -> str:
    """The last ``limit`` bytes' worth of a traceback (what a failed task's stderr_tail keeps)."""
    return text if len(text) <= limit else text[-limit:]


def record(key: str, data: bytes) -> bytes:
    k = key.encode()
    return RECORD.pack(len(k), len(data)) + k + data


def append(path: str, rec: bytes) -> None:
    """Append one record to a results log (one write; the file is closed again)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(rec)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


class Results:
    """The outcomes in one calls directory, read incrementally from every results log in it."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self._offsets: dict[str, int] = {}  # log name -> bytes parsed so far
        self._outcomes: dict[str, bytes] = {}

    def refresh(self) -> None:
        """Read what the logs gained since the last look (a torn last record waits)."""
        try:
            names = [e.name for e in os.scandir(self.directory)
                     if e.name.startswith(LOG_PREFIX) and e.name.endswith(LOG_SUFFIX)]
        except FileNotFoundError:
            return
        for name in names:
            offset = self._offsets.get(name, 0)
            try:
                with open(os.path.join(self.directory, name), "rb") as f:
                    f.seek(offset)
                    data = f.read()
            except FileNotFoundError:
                continue
            pos, end, size = 0, len(data), RECORD.size
            while end - pos >= size:
                klen, dlen = RECORD.unpack_from(data, pos)
                stop = pos + size + klen + dlen
                if stop > end:
                    break
                key = data[pos + size:pos + size + klen].decode()
                self._outcomes[key] = data[pos + size + klen:stop]
                pos = stop
            self._offsets[name] = offset + pos

    def take(self, key: str, keep: bool = False) -> bytes | None:
        """The outcome of ``key`` (refreshing once when it is not known yet); None if none."""
        got = self._outcomes.get(key)
        if got is None:
            self.refresh()
            got = self._outcomes.get(key)
        if got is not None and not keep:
            del self._outcomes[key]
        return got

    def __len__(self) -> int:
        return len(self._outcomes)
