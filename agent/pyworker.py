"""A warm Python worker: runs function calls (common/pycall.py) one after the other.

``python -m pj.agent.pyworker serve``: started by the agent (pyworkers.py) with fd 3 reading its
orders and fd 4 writing its replies, each a 4-byte little-endian length and a pickle:
  order  (task id, argv, env, wd, stdout, stderr, cpus)   the task's Launch, as the agent got it
  reply  (task id, exit code, cpu user s, cpu system s, max rss kB, traceback tail)
It binds itself to the call's CPUs, lays the task's variables over its environment, enters its
wd, sends stdout/stderr to the task's files when it names some, runs the call, writes the
outcome next to the batch and replies. End of file on fd 3: it exits.

``python -m pj.agent.pyworker call DIR ...`` (the call's own command line): runs that one call in
this new interpreter and exits 0 (returned) or 1 (raised): a call still runs where no warm
worker takes it.
"""

from __future__ import annotations

import os
import pickle
import resource
import socket
import struct
import sys
import traceback
from typing import Any

from pj.common import pycall

ORDERS_FD = 3
REPLIES_FD = 4
_LEN = struct.Struct("<I")
_FN_CACHE_MAX = 256


class Worker:
    def __init__(self) -> None:
        self._fns: dict[tuple[str, int, int], Any] = {}  # (batch path, span): the function
        self._batch_path = ""
        self._batch_fd = -1
        self._env: dict[str, str] = {}
        self._cpus: tuple[int, ...] = ()
        self._wd = ""
        self._log = f"{pycall.LOG_PREFIX}{socket.gethostname()}-{os.getpid()}{pycall.LOG_SUFFIX}"
        self._results: dict[str, pycall.Results] = {}  # calls directory -> outcomes (dependencies)

    # ------------------------------------------------------------ one call

    def _read(self, path: str, span: tuple[int, int]) -> bytes:
        if path != self._batch_path:
            if self._batch_fd >= 0:
                os.close(self._batch_fd)
                self._batch_fd = -1
            self._batch_fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            self._batch_path = path
        data = os.pread(self._batch_fd, span[1], span[0])
        if len(data) != span[1]:
            raise OSError(f"{path}: {len(data)} bytes at {span[0]}, expected {span[1]}")
        return data

    def _function(self, path: str, span: tuple[int, int]) -> Any:
        key = (path, *span)
        fn = self._fns.get(key)
        if fn is None:
            fn = pickle.loads(self._read(path, span))
            if len(self._fns) >= _FN_CACHE_MAX:
                self._fns.clear()
            self._fns[key] = fn
        return fn

    def run(self, call: pycall.CallArgs) -> tuple[int, str]:
        """Run one call and write its outcome; (exit code, traceback text when it raised)."""
        log = os.path.join(call.directory, self._log)
        key = call.result
        try:
            batch = os.path.join(call.directory, call.batch)
            fn = self._function(batch, call.fn_span)
            args, kwargs = pickle.loads(self._read(batch, call.arg_span))
            if any(type(a) is pycall.CallRef for a in args):
                args = tuple(self._resolve(a) for a in args)
            if any(type(v) is pycall.CallRef for v in kwargs.values()):
                kwargs = {k: self._resolve(v) for k, v in kwargs.items()}
            value = fn(*args, **kwargs)
        except BaseException as e:  # the call's own failure, whatever it is, is its outcome
            text = "".join(traceback.format_exception(e))
            _write(log, key, _error_record(e, text, call.max_result))
            return 1, pycall.tail(text)
        try:
            data = _dumps((pycall.OK, value))
        except BaseException as e:
            text = "".join(traceback.format_exception(e))
            _write(log, key, _error_record(TypeError(f"cannot pickle the result: {e}"), text, call.max_result))
            return 1, pycall.tail(text)
        if len(data) > call.max_result:
            msg = (f"the result pickles to {len(data)} bytes, more than the limit of {call.max_result} "
                   f"(Executor max_result_bytes)")
            _write(log, key, _error_record(ValueError(msg), msg, call.max_result))
            return 1, msg
        _write(log, key, data)
        return 0, ""

    def _resolve(self, v: Any) -> Any:
        if type(v) is not pycall.CallRef:
            return v
        results = self._results.get(v.directory)
        if results is None:
            results = self._results[v.directory] = pycall.Results(v.directory)
        data = results.take(v.result, keep=True)
        if data is None:
            raise RuntimeError(f"no outcome of the call this one depends on ({v.result}) in {v.directory}")
        record = pickle.loads(data)
        if record[0] != pycall.OK:  # PJ runs a dependent call only after its dependency succeeded
            raise RuntimeError(f"the call this one depends on ({v.result}) did not succeed: {record[2]}: {record[3]}")
        return record[1]

    # ------------------------------------------------------------ the task's context

    def enter(self, env: dict[str, str], wd: str, cpus: tuple[int, ...]) -> None:
        if env != self._env:
            environ, before = os.environ, self._env
            for k, v in env.items():
                if before.get(k) != v:
                    environ[k] = v
            self._env = env
        if cpus and cpus != self._cpus:
            try:
                os.sched_setaffinity(0, cpus)
                self._cpus = cpus
            except OSError:
                pass
        if wd and wd != self._wd:
            try:
                os.chdir(wd)
                self._wd = wd
            except OSError:
                pass

    def serve(self) -> None:
        orders = os.fdopen(ORDERS_FD, "rb", buffering=0)
        while True:
            head = _read_exactly(orders, 4)
            if not head:
                return
            body = _read_exactly(orders, _LEN.unpack(head)[0])
            task_id, argv, env, wd, stdout, stderr, cpus = pickle.loads(body)
            self.enter(env, wd, cpus)
            before = resource.getrusage(resource.RUSAGE_SELF)
            kids = resource.getrusage(resource.RUSAGE_CHILDREN)
            saved = _redirect(stdout, stderr) if stdout or stderr else None
            try:
                code, text = self.run(pycall.parse(argv))
            except BaseException as e:  # writing the outcome failed: the call fails, the worker goes on
                code, text = 1, pycall.tail("".join(traceback.format_exception(e)))
            finally:
                if saved is not None:
                    _restore(saved)
            after = resource.getrusage(resource.RUSAGE_SELF)
            kids2 = resource.getrusage(resource.RUSAGE_CHILDREN)
            user = after.ru_utime - before.ru_utime + kids2.ru_utime - kids.ru_utime
            system = after.ru_stime - before.ru_stime + kids2.ru_stime - kids.ru_stime
            reply = pickle.dumps((task_id, code, user, system, max(after.ru_maxrss, kids2.ru_maxrss), text))
            os.write(REPLIES_FD, _LEN.pack(len(reply)) + reply)


def _dumps(obj: Any) -> bytes:
    import cloudpickle  # only needed once there is something to write

    return cloudpickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


def _error_record(e: BaseException, text: str, limit: int) -> bytes:
    """The outcome of a call that raised: the exception itself when it pickles within ``limit``."""
    name, msg = type(e).__qualname__, str(e)
    try:
        data = _dumps((pycall.ERROR, e, name, msg, text))
        if len(data) <= limit:
            return data
    except BaseException:
        pass
    return pickle.dumps((pycall.ERROR, None, name, msg[:4096], text[-65536:]))


def _write(log: str, key: str, data: bytes) -> None:
    pycall.append(log, pycall.record(key, data))


def _read_exactly(f: Any, n: int) -> bytes:
    data = f.read(n)
    if not data or len(data) == n:
        return data  # type: ignore[no-any-return]
    parts = [data]
    got = len(data)
    while got < n:
        more = f.read(n - got)
        if not more:
            raise EOFError("the agent closed the worker's orders mid-message")
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def _redirect(stdout: str, stderr: str) -> list[tuple[int, int]]:
    saved = []
    for fd, path in ((1, stdout), (2, stderr)):
        if path:
            (sys.stdout if fd == 1 else sys.stderr).flush()
            target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
            saved.append((fd, os.dup(fd)))
            os.dup2(target, fd)
            os.close(target)
    return saved


def _restore(saved: list[tuple[int, int]]) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    for fd, copy in saved:
        os.dup2(copy, fd)
        os.close(copy)


def main(argv: list[str]) -> int:
    if argv[:1] == ["serve"]:
        Worker().serve()
        return 0
    # A call run cold: argv is the call's own command line less "python -m pj.agent.pyworker".
    call = pycall.parse([sys.executable, "-m", pycall.MODULE, *argv])
    code, text = Worker().run(call)
    if text:
        sys.stderr.write(text)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
