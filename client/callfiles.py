"""The files of pj.client.Executor's calls (layout in common/pycall.py): pickling calls into one
batch file per Submit, the jobs that name them, and reading outcomes back.

Pure but for the file writes and reads; the Executor (executor.py) owns the threads.
"""

from __future__ import annotations

import os
import pickle
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import cloudpickle

from pj.common import pycall
from pj.v1 import pj_pb2

from .errors import PJError

_FN_CACHE_MAX = 256


class CallTooBig(PJError, ValueError):
    """A call's function and arguments pickle to more than the Executor's ``max_call_bytes``."""


class CallError(PJError):
    """A call that raised an exception that could not be brought back as itself (it does not
    pickle), or whose task ended without an outcome (its worker died, its walltime passed, its
    cores were lost and no retry was left): the type name, the message, and the task's reason."""


class DependencyFailed(PJError):
    """A call with a future among its arguments whose call did not succeed (PJ omitted it)."""


class RemoteTraceback(Exception):
    """The ``__cause__`` of an exception raised by a call: the traceback text of the worker."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return self.tb


def dumps(obj: Any) -> bytes:
    return cloudpickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)  # type: ignore[no-any-return]


class Pickled:
    """What a call is on disk: its function (shared per function object) and its arguments."""

    def __init__(self, max_call_bytes: int) -> None:
        self.max_call_bytes = max_call_bytes
        self._fns: dict[int, tuple[Callable[..., Any], bytes]] = {}

    def function(self, fn: Callable[..., Any]) -> bytes:
        hit = self._fns.get(id(fn))
        if hit is not None and hit[0] is fn:
            return hit[1]
        data = dumps(fn)
        if len(self._fns) >= _FN_CACHE_MAX:
            self._fns.clear()
        self._fns[id(fn)] = (fn, data)  # the reference keeps id(fn) from being reused
        return data

    def call(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[bytes, bytes]:
        """(function, (args, kwargs)) pickled; CallTooBig past ``max_call_bytes``."""
        f = self.function(fn)
        a = dumps((args, dict(kwargs)))
        if len(f) + len(a) > self.max_call_bytes:
            name = getattr(fn, "__qualname__", repr(fn))
            raise CallTooBig(
                f"call of {name}: its function and arguments pickle to {len(f) + len(a)} bytes, more than "
                f"the limit of {self.max_call_bytes} (Executor max_call_bytes): pass large data in files")
        return f, a


class Batch:
    """The calls of one Submit: their blobs in ``DIR/b<seq>.in`` and their JobSpecs."""

    def __init__(self, directory: str, seq: int) -> None:
        self.directory = directory
        self.name = f"b{seq}.in"
        self._parts: list[bytes] = []
        self._size = 0
        self._fn_spans: dict[int, tuple[int, int]] = {}  # id(bytes of a function) -> span

    def add(self, fn_blob: bytes, arg_blob: bytes) -> tuple[tuple[int, int], tuple[int, int]]:
        fn_span = self._fn_spans.get(id(fn_blob))
        if fn_span is None:
            fn_span = self._fn_spans[id(fn_blob)] = self._put(fn_blob)
        return fn_span, self._put(arg_blob)

    def _put(self, blob: bytes) -> tuple[int, int]:
        span = (self._size, len(blob))
        self._parts.append(blob)
        self._size += len(blob)
        return span

    def write(self) -> None:
        path = os.path.join(self.directory, self.name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            data = memoryview(b"".join(self._parts))
            while data:
                data = data[os.write(fd, data):]
        finally:
            os.close(fd)
        self._parts = []


def job_spec(
    template: pj_pb2.JobSpec, name: str, python: str, call: pycall.CallArgs, after: Sequence[str]
) -> pj_pb2.JobSpec:
    """The job of one call: ``template`` (cores, gpus, walltime, retries, env) with its name,
    command line and dependencies."""
    spec = pj_pb2.JobSpec()
    spec.CopyFrom(template)
    spec.name = name
    spec.exec = python
    spec.args.extend(pycall.call_args(python, call))
    if after:
        spec.after.extend(after)
    return spec


def outcome(data: bytes) -> tuple[bool, Any]:
    """(True, value) or (False, exception to raise) from a call's outcome record (pickle errors
    when it does not unpickle here)."""
    record = pickle.loads(data)
    if record[0] == pycall.OK:
        return True, record[1]
    _, exc, type_name, message, tb = record
    if not isinstance(exc, BaseException):
        exc = CallError(f"{type_name}: {message}")
    exc.__cause__ = RemoteTraceback(f'\n"""\n{tb}"""')
    return False, exc


def failure(name: str, state: str, reason: str) -> BaseException:
    """What ``result()`` raises for a call that ended without an outcome."""
    if state == "OMITTED":
        return DependencyFailed(f"call {name} did not run: a call it depends on did not succeed ({reason})")
    return CallError(f"call {name} ended {state} without a result: {reason or 'no reason given'}")


def describe(e: BaseException) -> str:
    return "".join(traceback.format_exception_only(e)).strip()
