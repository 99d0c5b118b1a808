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

A Client may be shared by threads; ``close()`` (or leaving the ``with`` block) ends open watches.
"""

from __future__ import annotations

import builtins
import json
import os
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeAlias

import grpc

from pj.common import dial
from pj.common.workdir import TOKEN_METADATA_KEY, WorkdirError, find_master
from pj.v1 import pj_pb2, pj_pb2_grpc

from . import convert
from .convert import (
    FINAL_STATES,
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

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
]

JobLike: TypeAlias = pj_pb2.JobSpec | Mapping[str, Any]
Jobs: TypeAlias = Sequence[JobLike] | str | os.PathLike[str]


class JobFileWarning(UserWarning):
    """A job file or a job dict was accepted with a remark (an ignored field, a QCG feature...)."""


def _names(names: str | Iterable[str]) -> builtins.list[str]:
    return [names] if isinstance(names, str) else builtins.list(names)


def to_specs(jobs: Jobs) -> tuple[builtins.list[pj_pb2.JobSpec], builtins.list[str]]:
    """Jobs as the master takes them, and the parser's warnings.

    ``jobs``: a path to a job file, or a list of JobSpec and native-format dicts (in any mix;
    the order is kept). Bad input raises InvalidJobError.
    """
    from . import jobfile  # the parser is only needed here

    if isinstance(jobs, str | os.PathLike):
        try:
            jf = jobfile.load_jobfile(Path(jobs), allow_external=True)
        except jobfile.JobFileError as e:
            raise InvalidJobError(str(e)) from None
        return builtins.list(jf.jobs), builtins.list(jf.warnings)
    if isinstance(jobs, Mapping | pj_pb2.JobSpec):
        raise TypeError("submit() takes a list of jobs (or a job-file path), not a single job")
    items = builtins.list(jobs)
    dicts: builtins.list[Mapping[str, Any]] = []
    for i, item in enumerate(items):
        if isinstance(item, Mapping):
            dicts.append(item)
        elif not isinstance(item, pj_pb2.JobSpec):
            raise TypeError(f"job #{i + 1}: expected a pj_pb2.JobSpec or a dict, got {type(item).__name__}")
    if not dicts:
        return items, []  # type: ignore[return-value]
    try:
        text = json.dumps({"jobs": [dict(d) for d in dicts]})
    except (TypeError, ValueError) as e:
        raise InvalidJobError(f"a job dict cannot be written as JSON: {e}") from None
    try:
        jf = jobfile.parse_jobfile(text, "<submit>", allow_external=True)
    except jobfile.JobFileError as e:
        raise InvalidJobError(str(e)) from None
    parsed = iter(jf.jobs)
    specs = [next(parsed) if isinstance(item, Mapping) else item for item in items]
    return specs, builtins.list(jf.warnings)  # type: ignore[arg-type]


class WatchStream(Iterator[WatchEvent]):
    """The events of one Watch call. Iterate it; ``cancel()`` (from any thread) ends it quietly.

    It ends (StopIteration) when canceled or when the master closes the stream; a broken stream
    raises a PJError (MasterUnreachable when the master went away).
    """

    def __init__(self, call: Any, address: str) -> None:
        self._call = call
        self._address = address
        self._canceled = False

    def __iter__(self) -> WatchStream:
        return self

    def __next__(self) -> WatchEvent:
        try:
            return convert.watch_event(next(self._call))
        except grpc.RpcError as e:
            if self._canceled or (isinstance(e, grpc.Call) and e.code() == grpc.StatusCode.CANCELLED):
                raise StopIteration from None
            raise from_rpc_error(e, self._address) from None

    def cancel(self) -> None:
        self._canceled = True
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


class Client:
    """A connection to one PJ master. See the module docstring for an example.

    ``timeout`` (seconds, None for none) bounds every unary call; ``wait`` and ``watch`` have
    their own.
    """

    def __init__(
        self,
        workdir: str | os.PathLike[str] | None = None,
        *,
        address: str | None = None,
        token_file: str | os.PathLike[str] | None = None,
        timeout: float | None = 30.0,
        tls_cert: str | os.PathLike[str] | None = None,
    ) -> None:
        try:
            self._master = find_master(workdir, address, token_file, tls_cert=tls_cert)
        except WorkdirError as e:
            raise MasterNotFound(str(e)) from None
        self.timeout = timeout
        self._metadata = ((TOKEN_METADATA_KEY, self._master.token),)
        # The master's Unix socket when it runs on this host, else TCP (TLS when the run has it).
        self._target = dial.target(self._master, local=True)
        self._channel = dial.channel(self._master, CHANNEL_OPTIONS, local=True)
        self._stub = pj_pb2_grpc.PilotJobStub(self._channel)
        self._closed = False

    # ------------------------------------------------------------ plumbing

    @property
    def address(self) -> str:
        return self._master.address

    @property
    def workdir(self) -> Path | None:
        return self._master.workdir

    def __repr__(self) -> str:
        return f"Client(address={self.address!r}, workdir={str(self.workdir) if self.workdir else None!r})"

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _call(self, method: str, request: Any) -> Any:
        if self._closed:
            raise PJError("this Client is closed")
        try:
            return getattr(self._stub, method)(request, metadata=self._metadata, timeout=self.timeout)
        except grpc.RpcError as e:
            raise from_rpc_error(e, self._target, method) from None

    def _watch_call(self, names: Sequence[str], timeout: float | None, counts_only: bool = False) -> Any:
        if self._closed:
            raise PJError("this Client is closed")
        request = pj_pb2.WatchRequest(names=names, counts_only=counts_only)
        return self._stub.Watch(request, metadata=self._metadata, timeout=timeout)

    # ------------------------------------------------------------ the PilotJob service

    def submit(self, jobs: Jobs, base_dir: str | os.PathLike[str] | None = None) -> builtins.list[str]:
        """Submit jobs atomically (all or none); return their names in order.

        ``jobs``: a list of ``pj_pb2.JobSpec`` and native-format dicts, or the path of a job file
        (native or QCG-PilotJob). Relative paths in the jobs are resolved by the master against
        ``base_dir`` (default: the current directory). Parser remarks are issued as JobFileWarning.
        """
        specs, remarks = to_specs(jobs)
        for remark in remarks:
            warnings.warn(remark, JobFileWarning, stacklevel=2)
        if not specs:
            return []
        base = os.fspath(Path(base_dir).absolute()) if base_dir is not None else os.getcwd()
        reply = self._call("Submit", pj_pb2.SubmitRequest(jobs=specs, base_dir=base))
        return builtins.list(reply.names)

    def status(self) -> Status:
        """Counts of jobs and tasks per state, resources in use, whether the master is finishing."""
        return convert.status(self._call("Status", pj_pb2.StatusRequest()))

    def info(self, names: str | Iterable[str], with_tasks: bool = False) -> builtins.list[JobInfo]:
        """Details of the named jobs (history; with_tasks: every task started so far)."""
        reply = self._call("Info", pj_pb2.InfoRequest(names=_names(names), with_tasks=with_tasks))
        return [convert.job_info(j) for j in reply.jobs]

    def list(self, states: Iterable[str] | None = None, page_size: int = 0) -> Iterator[JobSummary]:
        """Every job (or those in ``states``, e.g. ``["FAILED", "OMITTED"]``), page after page."""
        wanted = [convert.state_value(s) for s in _names(states)] if states is not None else []
        token = ""
        while True:
            reply = self._call(
                "List", pj_pb2.ListRequest(states=wanted, page_size=page_size, page_token=token)
            )
            for j in reply.jobs:
                yield convert.job_summary(j)
            if not reply.next_page_token or reply.next_page_token == token:
                return
            token = reply.next_page_token

    def cancel(self, names: str | Iterable[str]) -> CancelResult:
        """Cancel the named jobs: queued ones are dequeued, running ones stopped."""
        return convert.cancel_result(self._call("Cancel", pj_pb2.CancelRequest(names=_names(names))))

    def watch(self, names: str | Iterable[str] | None = None, counts_only: bool = False) -> WatchStream:
        """Events about the named jobs (None: every job, including later ones) as they happen.

        The first event describes the present. The stream lasts until ``cancel()``, the end of
        the ``with`` block, or the master's exit. ``counts_only`` (for progress displays): events
        carry the jobs per state (``WatchEvent.jobs``) and list only the jobs that ended FAILED,
        CANCELED or OMITTED, which is far cheaper for the master and for you on big campaigns.
        """
        call = self._watch_call(_names(names) if names is not None else [], None, counts_only)
        return WatchStream(call, self._target)

    def wait(
        self, names: str | Iterable[str] | None = None, timeout: float | None = None
    ) -> dict[str, str]:
        """Block until the named jobs (None: every job) have finished; return name -> final state.

        Uses the Watch stream, never polls. Past ``timeout`` seconds, raises PJTimeout (a TimeoutError).
        """
        wanted = _names(names) if names is not None else []
        if names is not None and not wanted:
            return {}
        states: dict[str, str] = {}
        total = unfinished = -1
        done = False
        call = self._watch_call(wanted, timeout)
        try:
            for m in call:
                for j in m.changed:
                    states[j.name] = convert.state_name(j.state)
                total, unfinished = int(m.watched_total), int(m.watched_unfinished)
                if unfinished == 0:
                    done = True
                    break
        except grpc.RpcError as e:
            if isinstance(e, grpc.Call) and e.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                left = f"{unfinished} of {total} jobs still unfinished" if total >= 0 else "no answer yet"
                raise PJTimeout(f"waited {timeout:g} s: {left}") from None
            raise from_rpc_error(e, self._target) from None
        finally:
            call.cancel()
        if not done:
            raise PJError(f"the master at {self.address} ended the watch before the jobs finished")
        if wanted:
            missing = [n for n in wanted if states.get(n) not in FINAL_STATES]
            if missing:
                states.update((j.name, j.state) for j in self.info(missing))
            return {n: states.get(n, "UNKNOWN") for n in wanted}
        if len(states) < total or any(s not in FINAL_STATES for s in states.values()):
            states = {j.name: j.state for j in self.list()}
        return states

    def resources(self) -> Resources:
        """The nodes (agents) known to the master, with their free cores and GPUs."""
        return convert.resources(self._call("Resources", pj_pb2.ResourcesRequest()))

    def finish(self, drain: bool = True) -> None:
        """Ask the master to end: drain=True lets every job end first; False cancels what runs."""
        self._call("Finish", pj_pb2.FinishRequest(drain=drain))
