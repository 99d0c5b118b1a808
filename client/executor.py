"""pj.client.Executor: Python function calls as PJ tasks, with the concurrent.futures interface.

    from pj.client import Executor, LocalCluster

    with LocalCluster(cores=2) as cluster, Executor(cluster) as ex:
        print(sum(ex.map(abs, range(-1000, 0))))

Each call is one PJ job (``<executor id>-<n>``) whose command line names the warm-worker module
(common/pycall.py): the master schedules, retries, journals and reports it like any task, and the
node's agent runs it on a warm Python worker (agent/pyworkers.py). The function and arguments are
cloudpickled into a batch file under ``CALLS/<executor id>/`` (default ``WORKDIR/calls``); the
worker writes the outcome next to it before the task ends. Calls made close together travel in one
Submit: a thread sends whatever piled up while the previous Submit was on the wire (the first call
goes at once). Ends come from one Watch of every job (never polled); the outcome file is read then.
"""

from __future__ import annotations

import concurrent.futures as cf
import itertools
import os
import secrets
import shutil
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import structlog

from pj.common import pycall
from pj.common.durations import parse_duration
from pj.v1 import pj_pb2

from . import callfiles
from .api import Client
from .callfiles import CallError, CallTooBig, DependencyFailed, RemoteTraceback

__all__ = ["CallError", "CallFuture", "CallTooBig", "DependencyFailed", "Executor", "RemoteTraceback"]

log = structlog.get_logger("pj.client")

_FINAL = frozenset({"SUCCEED", "FAILED", "CANCELED", "OMITTED"})


class CallFuture(cf.Future[Any]):
    """A call's future: ``cancel()`` also cancels its PJ task (queued or running); ``name`` is its job."""

    def __init__(self, executor: Executor, name: str) -> None:
        super().__init__()
        self.name = name
        self._executor = executor
        self._executing = False

    def running(self) -> bool:
        return self._executing and not self.done()

    def cancel(self) -> bool:
        if not super().cancel():
            return False
        self.set_running_or_notify_cancel()  # wakes wait() and as_completed()
        self._executor._canceled(self)
        return True


def _run_chunk(fn: Callable[..., Any], chunk: list[tuple[Any, ...]]) -> list[Any]:
    return [fn(*args) for args in chunk]


class Executor(cf.Executor):
    """A concurrent.futures.Executor whose calls are PJ tasks on warm Python workers.

    ``target``: a LocalCluster, a Client, or a workdir (of a running master). Each call takes
    ``cores`` cores and ``gpus`` GPUs (per call), ``walltime`` (seconds or a duration such as
    "10m"), ``retries``, ``env`` (variables laid over the task's), and runs in ``python`` (default:
    this interpreter; it needs pj and cloudpickle). A call's function and arguments may pickle to
    at most ``max_call_bytes`` (CallTooBig), its result to ``max_result_bytes`` (the call fails with
    a ValueError naming the limit). ``calls_dir``: where the batch and outcome files go (default
    ``WORKDIR/calls``; in Slurm mode it must be on the shared file system).
    """

    def __init__(
        self,
        target: Any,
        *,
        cores: int = 1,
        gpus: int = 0,
        walltime: float | str | None = None,
        retries: int = 0,
        env: Mapping[str, str] | None = None,
        python: str | None = None,
        max_call_bytes: int = pycall.MAX_CALL_BYTES,
        max_result_bytes: int = pycall.MAX_RESULT_BYTES,
        calls_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self._client, self._own_client = _client_of(target)
        base = Path(calls_dir) if calls_dir is not None else (
            self._client.workdir / "calls" if self._client.workdir is not None else None)
        if base is None:
            raise ValueError("Executor: the client has no workdir; give calls_dir= (a directory every node sees)")
        self.id = f"py{os.getpid():x}{secrets.token_hex(3)}"
        self.directory = str(base.absolute() / self.id)
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        self.python = python or sys.executable
        self._template = pj_pb2.JobSpec(cores=pj_pb2.Range(min=cores, max=cores), gpus=gpus, retries=retries)
        if walltime is not None:
            self._template.walltime_s = parse_duration(walltime, "walltime") if isinstance(walltime, str) else float(walltime)
        if env:
            self._template.env.update(env)
        self._max_result = max_result_bytes
        self._pickled = callfiles.Pickled(max_call_bytes)
        self._base_dir = os.getcwd()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._pending: list[tuple[CallFuture, bytes, bytes, list[str]]] = []
        self._to_cancel: list[str] = []
        self._futures: dict[str, CallFuture] = {}  # not settled yet
        self._seq = itertools.count(1)
        self._batches = itertools.count(1)
        self._shutdown = False  # no more submits
        self._closing = False  # the submit thread ends
        self._flushing = False
        self._results = pycall.Results(self.directory)
        self._watching = threading.Event()
        self._watch_error: BaseException | None = None
        self._stream = self._client.watch()
        self._watcher = threading.Thread(target=self._watch, name=f"pj-exec-watch-{self.id}", daemon=True)
        self._flusher = threading.Thread(target=self._flush_loop, name=f"pj-exec-submit-{self.id}", daemon=True)
        self._watcher.start()
        self._flusher.start()
        self._watching.wait()

    # ------------------------------------------------------------ concurrent.futures.Executor

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> CallFuture:
        after: list[str] = []
        if any(isinstance(a, CallFuture) for a in args):
            args = tuple(self._ref(a, after) for a in args)
        if any(isinstance(v, CallFuture) for v in kwargs.values()):
            kwargs = {k: self._ref(v, after) for k, v in kwargs.items()}
        fn_blob, arg_blob = self._pickled.call(fn, args, kwargs)
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            n = next(self._seq)
            name = f"{self.id}-{n}"
            future = CallFuture(self, name)
            self._futures[name] = future
            self._pending.append((future, fn_blob, arg_blob, after))
            if len(self._pending) == 1:
                self._wake.notify()
        return future

    def map(  # type: ignore[override]
        self, fn: Callable[..., Any], *iterables: Iterable[Any], timeout: float | None = None, chunksize: int = 1
    ) -> Iterator[Any]:
        """Like ProcessPoolExecutor.map: ``chunksize`` items per call (per PJ task)."""
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1")
        if chunksize == 1:
            return super().map(fn, *iterables, timeout=timeout)
        items = zip(*iterables, strict=False)
        chunks = iter(lambda: list(itertools.islice(items, chunksize)), [])
        results = super().map(_run_chunk, itertools.repeat(fn), chunks, timeout=timeout)
        return itertools.chain.from_iterable(results)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            if self._closing:
                return
            self._shutdown = True
        if cancel_futures:
            for f in list(self._futures.values()):
                f.cancel()
        self._drain_submits()
        if wait:
            cf.wait(list(self._futures.values()))
        with self._lock:
            self._closing = True
            self._wake.notify_all()
        self._flusher.join()
        self._stream.cancel()
        self._watcher.join(timeout=10)
        if self._own_client:
            self._client.close()
        if wait and not self._futures:
            shutil.rmtree(self.directory, ignore_errors=True)

    # ------------------------------------------------------------ arguments

    def _ref(self, value: Any, after: list[str]) -> Any:
        if not isinstance(value, CallFuture):
            return value
        after.append(value.name)
        return pycall.CallRef(value._executor.directory, value.name)

    # ------------------------------------------------------------ the submit thread

    def _flush_loop(self) -> None:
        while True:
            with self._lock:
                while not self._pending and not self._to_cancel and not self._closing:
                    self._wake.wait()
                pending, self._pending = self._pending, []
                cancels, self._to_cancel = self._to_cancel, []
                self._flushing = bool(pending or cancels)
                if not pending and not cancels:
                    return  # closing
            if pending:
                self._send(pending)
            if cancels:
                try:
                    self._client.cancel(cancels)
                except Exception as e:
                    log.warning("could not cancel calls", calls=len(cancels), error=str(e))
            with self._lock:
                self._flushing = False
                self._wake.notify_all()

    def _drain_submits(self) -> None:
        """Wait until what was submitted before has been sent."""
        with self._lock:
            while self._pending or self._to_cancel or self._flushing:
                if not self._flusher.is_alive():
                    return
                self._wake.wait(0.1)

    def _send(self, pending: list[tuple[CallFuture, bytes, bytes, list[str]]]) -> None:
        batch = callfiles.Batch(self.directory, next(self._batches))
        specs = []
        sent = []
        for future, fn_blob, arg_blob, after in pending:
            if future.cancelled():
                self._futures.pop(future.name, None)
                continue
            fn_span, arg_span = batch.add(fn_blob, arg_blob)
            call = pycall.CallArgs(self.directory, batch.name, fn_span, arg_span, future.name, self._max_result)
            specs.append(callfiles.job_spec(self._template, future.name, self.python, call, after))
            sent.append(future)
        if not specs:
            return
        try:
            batch.write()
            self._client.submit(specs, base_dir=self._base_dir)
        except Exception as e:
            for future in sent:
                self._futures.pop(future.name, None)
                if not future.done():
                    future.set_exception(e)

    def _canceled(self, future: CallFuture) -> None:
        """A future was canceled by its owner: cancel its task too (a call not sent yet is dropped)."""
        with self._lock:
            if self._futures.pop(future.name, None) is None:
                return
            if any(p[0] is future for p in self._pending):
                return  # _send skips it
            self._to_cancel.append(future.name)
            self._wake.notify()

    # ------------------------------------------------------------ the watch thread

    def _watch(self) -> None:
        first = True
        try:
            for event in self._stream:
                if first:
                    first = False
                    self._watching.set()
                futures = self._futures
                for job in event.changed:
                    future = futures.get(job.name)
                    if future is None:
                        continue
                    if job.state in _FINAL:
                        self._settle(future, job.state, job.reason)
                    elif job.state == "EXECUTING":
                        future._executing = True
        except BaseException as e:  # the master is gone for good: every unsettled call fails
            self._watch_error = e
            for future in list(self._futures.values()):
                self._futures.pop(future.name, None)
                if not future.done():
                    future.set_exception(CallError(f"call {future.name}: lost the master: {e}"))
        finally:
            self._watching.set()

    def _settle(self, future: CallFuture, state: str, reason: str) -> None:
        self._futures.pop(future.name, None)
        if future.done():
            return
        if state == "CANCELED":
            if future.cancel():
                return
        data = self._results.take(future.name) if state in ("SUCCEED", "FAILED") else None
        if state == "SUCCEED" and data is None:
            future.set_exception(CallError(f"call {future.name}: no outcome in {self.directory}"))
            return
        if data is not None:
            try:
                ok, value = callfiles.outcome(data)
            except Exception as e:
                if state == "SUCCEED":
                    future.set_exception(CallError(f"call {future.name}: cannot unpickle its result: "
                                                   f"{callfiles.describe(e)}"))
                    return
            else:
                if ok and state == "SUCCEED":
                    future.set_result(value)
                    return
                if not ok:
                    future.set_exception(value)
                    return
        future.set_exception(callfiles.failure(future.name, state, reason))

    def __repr__(self) -> str:
        return f"<pj.client.Executor {self.id} on {self._client.address}>"


def _client_of(target: Any) -> tuple[Client, bool]:
    """(client, whether the Executor made it)."""
    if isinstance(target, Client):
        return target, False
    make = getattr(target, "client", None)
    if callable(make) and hasattr(target, "workdir"):  # a LocalCluster
        return make(), True
    if isinstance(target, str | os.PathLike):
        return Client(target), True
    raise TypeError(f"Executor: expected a LocalCluster, a Client or a workdir, got {type(target).__name__}")
