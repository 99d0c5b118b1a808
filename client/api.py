"""A synchronous Python API to a running PJ master.

Example (a master runs with ``--workdir runs/demo``; ``pj run`` makes one)::

    from pj.client import Client

    with Client("runs/demo") as pj:
        names = pj.submit([
            {"name": "prep", "exec": "/bin/date", "stdout": "prep.out"},
            {"name": "sim", "exec": "/bin/echo", "args": ["case ${it}"], "iterations": 4,
             "after": ["prep"]},
        ])
        final = pj.wait(names, timeout=600)      # {"prep": "SUCCEED", "sim": "SUCCEED"}
        for job in pj.list(states=["FAILED"]):
            print(job.name, job.reason)

The master is found like the CLI finds it: ``workdir`` (else ``$PJ_WORKDIR``) holds ``master.json``
and ``token``; or give ``address=`` with ``token_file=`` (or a workdir for the token), and
``tls_cert=`` when that master runs with ``--tls``. Every call carries the token. Results are frozen dataclasses from ``pj.client.convert`` (states are strings
such as ``"SUCCEED"``), never protobuf objects. Failures raise ``PJError`` subclasses:
``InvalidJobError`` (a rejected job, also a ValueError), ``UnknownJobError`` (also a KeyError),
``AuthError``, ``MasterUnreachable``, ``MasterNotFound`` and ``PJTimeout`` (also a TimeoutError).

``wait`` and ``watch`` outlive a master restart (``pj-master --resume``, even on another port): they
look for the master again (through the workdir, when the client was made from one) and reopen
their Watch, with back-off, for ``reconnect_timeout`` seconds (default 60; None: no limit; 0: no
retry), then raise MasterUnreachable. Other calls do not retry.

A Client may be shared by threads; ``close()`` (or leaving the ``with`` block) ends open watches.
"""

from __future__ import annotations

import builtins
import os
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any

import grpc

from pj.common import dial
from pj.common.specbatch import request_jobs
from pj.v1 import pj_pb2, pj_pb2_grpc

from . import allocs, calls, convert, redial
from .allocs import AllocList
from .calls import CHANNEL_OPTIONS as CHANNEL_OPTIONS  # shared with AsyncClient, named here too
from .calls import MAX_MESSAGE_BYTES as MAX_MESSAGE_BYTES
from .calls import SUBMIT_CHUNK_JOBS as SUBMIT_CHUNK_JOBS
from .calls import JobFileWarning, Jobs, Names
from .calls import JobLike as JobLike
from .calls import to_specs as to_specs
from .convert import (
    CancelResult,
    JobInfo,
    JobSummary,
    Resources,
    Status,
    WatchEvent,
)
from .errors import (
    AuthError,
    InvalidJobError,
    MasterNotFound,
    MasterUnreachable,
    PJError,
    PJTimeout,
    UnknownJobError,
    from_rpc_error,
)
from .redial import RECONNECT_TIMEOUT_S

__all__ = [
    "AuthError",
    "CancelResult",
    "Client",
    "InvalidJobError",
    "JobFileWarning",
    "JobInfo",
    "JobSummary",
    "MasterNotFound",
    "MasterUnreachable",
    "PJError",
    "PJTimeout",
    "Resources",
    "Status",
    "UnknownJobError",
    "WatchEvent",
    "WatchStream",
]

class WatchStream(Iterator[WatchEvent]):
    """The events of one Watch call. Iterate it; ``cancel()`` (from any thread) ends it quietly.

    It ends (StopIteration) when canceled or when the master closes the stream. When the master
    goes away it is reopened (redial.py: the first event after that describes the present) until
    the client's ``reconnect_timeout``, then raises MasterUnreachable; other breaks raise a PJError.
    """

    def __init__(self, client: Client, request: pj_pb2.WatchRequest) -> None:
        self._client = client
        self._request = request
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._canceled = False
        self._retry = redial.Retry(client.reconnect_timeout)
        self._call = client._watch_call(request, None)

    def __iter__(self) -> WatchStream:
        return self

    def __next__(self) -> WatchEvent:
        while True:
            try:
                m = next(self._call)
            except grpc.RpcError as e:
                error = calls.watch_end(e, self._canceled, self._client._target)
                if error is None:
                    raise StopIteration from None
                self._reopen(error)
                continue
            self._retry.heard()
            return convert.watch_event(m)

    def _reopen(self, error: PJError) -> None:
        """Wait, find the master again and open a new call; StopIteration if canceled meanwhile."""
        while True:
            if self._stop.wait(self._retry.after(error)):
                raise StopIteration
            try:
                self._client._redial()
            except MasterNotFound as e:
                error = e
                continue
            with self._lock:
                if self._canceled:
                    raise StopIteration
                self._call = self._client._watch_call(self._request, None)
            return

    def cancel(self) -> None:
        with self._lock:
            self._canceled = True
            self._stop.set()
            self._call.cancel()

    def __enter__(self) -> WatchStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel()

    def __del__(self) -> None:
        try:
            self._call.cancel()
        except Exception:
            pass


class Client(calls.Endpoint):
    """A connection to one PJ master. See the module docstring for an example.

    ``timeout`` (seconds, None for none) bounds every unary call; ``wait`` and ``watch`` have
    their own. ``reconnect_timeout``: how long ``wait`` and ``watch`` look for a master that went
    away (seconds; None: no limit; 0: they raise at once).
    """

    def __init__(
        self,
        workdir: str | os.PathLike[str] | None = None,
        *,
        address: str | None = None,
        token_file: str | os.PathLike[str] | None = None,
        timeout: float | None = 30.0,
        tls_cert: str | os.PathLike[str] | None = None,
        reconnect_timeout: float | None = RECONNECT_TIMEOUT_S,
    ) -> None:
        super().__init__(workdir, address, token_file, timeout, tls_cert, reconnect_timeout)
        self._channel = dial.channel(self._master, CHANNEL_OPTIONS, local=True)
        self._stub = pj_pb2_grpc.PilotJobStub(self._channel)
        self._redial_lock = threading.Lock()
        # Channels to where the master was before it moved: other threads may still read them.
        self._retired: builtins.list[grpc.Channel] = []

    # ------------------------------------------------------------ plumbing

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._channel.close()
            for channel in self._retired:
                channel.close()

    def _redial(self) -> None:
        """Find the master again (redial.py); dial anew when it moved. Raises MasterNotFound."""
        with self._redial_lock:
            self._check_open()
            if self._refind():
                self._retired.append(self._channel)
                self._channel = dial.channel(self._master, CHANNEL_OPTIONS, local=True)
                self._stub = pj_pb2_grpc.PilotJobStub(self._channel)

    def _pause(self, retry: redial.Retry, error: PJError) -> None:
        """After ``error``: back off, then find the master again, until it is found (or give up)."""
        while True:
            time.sleep(retry.after(error))
            try:
                self._redial()
                return
            except MasterNotFound as e:
                error = e

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _call(self, method: str, request: Any) -> Any:
        self._check_open()
        try:
            return getattr(self._stub, method)(request, metadata=self._metadata, timeout=self.timeout)
        except grpc.RpcError as e:
            raise from_rpc_error(e, self._target, method) from None

    def _watch_call(self, request: pj_pb2.WatchRequest, timeout: float | None) -> Any:
        self._check_open()
        return self._stub.Watch(request, metadata=self._metadata, timeout=timeout)

    # ------------------------------------------------------------ the PilotJob service

    def submit(self, jobs: Jobs, base_dir: str | os.PathLike[str] | None = None) -> builtins.list[str]:
        """Submit jobs; return their names in order.

        ``jobs``: a list of ``pj_pb2.JobSpec`` and native-format dicts, or the path of a job file
        (native or QCG-PilotJob). Relative paths in the jobs are resolved by the master against
        ``base_dir`` (default: the current directory). Parser remarks are issued as JobFileWarning.

        Every job is checked here first: a bad one refuses them all. Up to ``SUBMIT_CHUNK_JOBS``
        (50,000) jobs go in one Submit, taken atomically (all or none). More go in parts of that
        size, in order (a job never before one it waits for), each atomic: if a part is refused,
        the error's ``kept`` names the jobs of the parts before it, which the master keeps and
        runs, and no later part is sent.
        """
        kept: builtins.list[str] = []
        requests = calls.submit_requests(jobs, base_dir, stacklevel=2)
        total = sum(map(request_jobs, requests))
        for request in requests:
            try:
                kept.extend(calls.submitted(self._call("Submit", request)))
            except PJError as e:
                raise calls.chunk_refused(e, kept, total, request_jobs(request)) from None
        return kept

    def status(self) -> Status:
        """Counts of jobs and tasks per state, resources in use, whether the master is finishing."""
        return convert.status(self._call("Status", pj_pb2.StatusRequest()))

    def info(self, names: Names, with_tasks: bool = False) -> builtins.list[JobInfo]:
        """Details of the named jobs (history; with_tasks: every task started so far)."""
        return calls.infos(self._call("Info", calls.info_request(names, with_tasks)))

    def list(self, states: Iterable[str] | None = None, page_size: int = 0) -> Iterator[JobSummary]:
        """Every job (or those in ``states``, e.g. ``["FAILED", "OMITTED"]``), page after page."""
        wanted = calls.list_states(states)
        token: str | None = ""
        while token is not None:
            reply = self._call("List", calls.list_request(wanted, page_size, token))
            yield from map(convert.job_summary, reply.jobs)
            token = calls.next_page(reply, token)

    def cancel(self, names: Names) -> CancelResult:
        """Cancel the named jobs: queued ones are dequeued, running ones stopped."""
        return convert.cancel_result(self._call("Cancel", calls.cancel_request(names)))

    def watch(self, names: Names | None = None, counts_only: bool = False) -> WatchStream:
        """Events about the named jobs (None: every job, including later ones) as they happen.

        The first event describes the present. The stream lasts until ``cancel()``, the end of
        the ``with`` block, or the master's exit. ``counts_only`` (for progress displays): events
        carry the jobs per state (``WatchEvent.jobs``) and list only the jobs that ended FAILED,
        CANCELED or OMITTED, which is far cheaper for the master and for you on big campaigns.
        """
        return WatchStream(self, calls.watch_request(names, counts_only))

    def wait(self, names: Names | None = None, timeout: float | None = None) -> dict[str, str]:
        """Block until the named jobs (None: every job) have finished; return name -> final state.

        Uses the Watch stream, never polls. Past ``timeout`` seconds, raises PJTimeout (a TimeoutError).
        A master that goes away meanwhile is waited for (redial.py) until ``reconnect_timeout``.
        """
        tally = calls.WaitTally(names)
        if tally.nothing_to_wait:
            return {}
        retry = redial.Retry(self.reconnect_timeout, timeout)
        while True:
            call = self._watch_call(tally.request(), retry.call_timeout())
            try:
                for m in call:
                    retry.heard()
                    if tally.feed(m):
                        break
                error = None if tally.done else tally.ended_early(self._target)
            except grpc.RpcError as e:
                error = tally.error(e, timeout, self._target)
            finally:
                call.cancel()
            if error is None:
                break
            self._pause(retry, error)
        ask = tally.lookups(self.address)
        if ask is None:
            return tally.result(((j.name, j.state) for j in self.list()), every_job=True)
        return tally.result((j.name, j.state) for j in self.info(ask)) if ask else tally.result()

    def resources(self) -> Resources:
        """The nodes (agents) known to the master, with their free cores and GPUs."""
        return convert.resources(self._call("Resources", pj_pb2.ResourcesRequest()))

    def alloc_add(self, specs: Sequence[pj_pb2.AllocQueueSpec]) -> builtins.list[int]:
        """New alloc queues (``allocs.spec_pb``): the master asks Slurm for allocations as work waits."""
        return list(self._call("AllocAdd", pj_pb2.AllocAddRequest(queues=specs)).ids)

    def alloc_list(self) -> AllocList:
        """Every alloc queue and every allocation the master asked for, with their states."""
        return allocs.alloc_list(self._call("AllocList", pj_pb2.AllocListRequest()))

    def alloc_remove(self, ids: Iterable[int]) -> builtins.list[int]:
        """Stop alloc queues and cancel their allocations (their tasks are queued again)."""
        return list(self._call("AllocRemove", pj_pb2.AllocRemoveRequest(ids=list(ids))).removed)

    def finish(self, drain: bool = True) -> None:
        """Ask the master to end: drain=True lets every job end first; False cancels what runs."""
        self._call("Finish", calls.finish_request(drain))
