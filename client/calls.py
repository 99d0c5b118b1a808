"""What ``Client`` (api.py) and ``AsyncClient`` (aio.py) share: one place for each verb's request,
each reply's decoding, the bookkeeping of ``wait`` over Watch messages and the jobs' conversion to
``JobSpec``. The two clients only differ in how they carry a call (blocking gRPC or grpc.aio).
"""

from __future__ import annotations

import builtins
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc

from pj.common import dial
from pj.common.specbatch import SpecBatch, chunk_bounds
from pj.common.workdir import TOKEN_METADATA_KEY, MasterAddress, WorkdirError, find_master
from pj.v1 import pj_pb2

from . import convert
from .convert import FINAL_STATES, JobInfo
from .errors import (
    InvalidJobError,
    MasterNotFound,
    MasterUnreachable,
    PJError,
    PJTimeout,
    from_rpc_error,
    rpc_code,
)
from .redial import RECONNECT_TIMEOUT_S

if TYPE_CHECKING:
    from .jobfile import JobFile

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    # A master restarted at the same address (a fixed --listen port, the same DIR/master.sock) is
    # dialed again within redial.BACKOFF_MAX_S, not after gRPC's default back-off of up to 2 min.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
]

JobLike: TypeAlias = pj_pb2.JobSpec | Mapping[str, Any]
Jobs: TypeAlias = Sequence[JobLike] | SpecBatch | str | os.PathLike[str]  # SpecBatch: e.g. a JobFile's batch
Names: TypeAlias = str | Iterable[str]


class JobFileWarning(UserWarning):
    """A job file or a job dict was accepted with a remark (an ignored field, a QCG feature...)."""


class Endpoint:
    """The master a client talks to (found like the CLI finds it) and what goes with every call."""

    def __init__(
        self,
        workdir: str | os.PathLike[str] | None,
        address: str | None,
        token_file: str | os.PathLike[str] | None,
        timeout: float | None,
        tls_cert: str | os.PathLike[str] | None,
        reconnect_timeout: float | None = RECONNECT_TIMEOUT_S,
    ) -> None:
        if reconnect_timeout is not None and not reconnect_timeout >= 0:
            raise ValueError(f"reconnect_timeout must be a number of seconds >= 0 or None, not {reconnect_timeout!r}")
        self._how = (workdir, address, token_file, tls_cert)  # to find the master again (redial.py)
        self._master = self._find()
        self._use(self._master)
        self.timeout = timeout
        # How long a wait or watch looks for a master that went away (None: no limit; 0: no retry).
        self.reconnect_timeout = reconnect_timeout
        self._closed = False

    def _find(self) -> MasterAddress:
        workdir, address, token_file, tls_cert = self._how
        try:
            return find_master(workdir, address, token_file, tls_cert=tls_cert)
        except WorkdirError as e:
            raise MasterNotFound(str(e)) from None

    def _use(self, master: MasterAddress) -> None:
        self._master = master
        self._metadata = ((TOKEN_METADATA_KEY, master.token),)
        # The master's Unix socket when it runs on this host, else TCP (TLS when the run has it).
        self._target = dial.target(master, local=True)

    def _refind(self) -> bool:
        """Look for the master again (a restarted one may listen elsewhere, with a new token or
        certificate); True when it changed: the caller dials anew. Raises MasterNotFound."""
        master = self._find()
        if master == self._master:
            return False
        self._use(master)
        return True

    @property
    def address(self) -> str:
        return self._master.address

    @property
    def workdir(self) -> Path | None:
        return self._master.workdir

    def __repr__(self) -> str:
        wd = str(self.workdir) if self.workdir else None
        return f"{type(self).__name__}(address={self.address!r}, workdir={wd!r})"

    def _check_open(self) -> None:
        if self._closed:
            raise PJError(f"this {type(self).__name__} is closed")


# ---------------------------------------------------------------- requests, one per verb


def names_list(names: Names) -> builtins.list[str]:
    return [names] if isinstance(names, str) else builtins.list(names)


def parse_data(data: Any, source: str) -> JobFile:
    """Jobs given as Python data in a job file's layout (PJ's ``{"jobs": [...]}`` or a QCG-PilotJob
    request list), read by the job-file parser like a file. Bad input raises InvalidJobError."""
    from . import jobfile  # the parser is only needed here

    try:
        return jobfile.parse_objects(data, source, allow_external=True)
    except jobfile.JobFileError as e:
        raise InvalidJobError(str(e)) from None


def to_batch(jobs: Jobs) -> tuple[SpecBatch, builtins.list[str]]:
    """Jobs as the master takes them, and the parser's warnings: ``to_specs``, with jobs alike but
    for their names sharing one spec (``SpecBatch``), as a Submit sends them."""
    from . import jobfile  # the parser is only needed here

    if isinstance(jobs, SpecBatch):
        return jobs, []
    if isinstance(jobs, str | os.PathLike):
        try:
            jf = jobfile.load_jobfile(Path(jobs), allow_external=True)
        except jobfile.JobFileError as e:
            raise InvalidJobError(str(e)) from None
        return jf.batch, builtins.list(jf.warnings)
    if isinstance(jobs, Mapping | pj_pb2.JobSpec):
        raise TypeError("submit() takes a list of jobs (or a job-file path), not a single job")
    items = builtins.list(jobs)
    dicts: builtins.list[Mapping[str, Any]] = []
    for i, item in enumerate(items):
        if isinstance(item, Mapping):
            dicts.append(item if isinstance(item, dict) else dict(item))
        elif not isinstance(item, pj_pb2.JobSpec):
            raise TypeError(f"job #{i + 1}: expected a pj_pb2.JobSpec or a dict, got {type(item).__name__}")
    if not dicts:
        return SpecBatch.of(items), []  # type: ignore[arg-type]
    jf = parse_data({"jobs": dicts}, "<submit>")
    if len(dicts) == len(items):
        return jf.batch, builtins.list(jf.warnings)
    out = SpecBatch()  # dicts and messages mixed, in their order
    parsed = jf.batch
    where: builtins.list[int] = []  # where[j]: the position of parsed job j in out
    for item in items:
        if isinstance(item, pj_pb2.JobSpec):
            out.add(item)
            continue
        j = len(where)
        k = parsed.copy_of[j]
        if k >= 0:
            out.add_copy(where[k], parsed.names[j])
        else:
            out.add(parsed.specs[j])
        where.append(len(out) - 1)
    return out, builtins.list(jf.warnings)


def to_specs(jobs: Jobs) -> tuple[builtins.list[pj_pb2.JobSpec], builtins.list[str]]:
    """Jobs as the master takes them, and the parser's warnings.

    ``jobs``: a path to a job file, or a list of JobSpec and native-format dicts (in any mix;
    the order is kept). Bad input raises InvalidJobError.
    """
    batch, remarks = to_batch(jobs)
    return batch.expand(), remarks


def submit_request(
    jobs: Jobs, base_dir: str | os.PathLike[str] | None, stacklevel: int
) -> pj_pb2.SubmitRequest | None:
    """The Submit for ``jobs`` (None: nothing to submit). The parser's remarks are issued as
    JobFileWarning, ``stacklevel`` frames up from the caller (the user's line)."""
    requests = submit_requests(jobs, base_dir, stacklevel + 1, chunk=0)
    return requests[0] if requests else None


# A Submit bigger than this many jobs goes as several (``submit_requests``): each is parsed,
# checked and journaled by the master in one go, during which it serves nothing else, and each
# must fit one gRPC message (MAX_MESSAGE_BYTES).
SUBMIT_CHUNK_JOBS = 50_000
SUBMIT_CHUNK_BYTES = MAX_MESSAGE_BYTES // 2


def submit_requests(
    jobs: Jobs, base_dir: str | os.PathLike[str] | None, stacklevel: int, chunk: int | None = None
) -> builtins.list[pj_pb2.SubmitRequest]:
    """The Submits for ``jobs``, in order, each of about ``chunk`` jobs (None: SUBMIT_CHUNK_JOBS; 0:
    one Submit) and at most
    SUBMIT_CHUNK_BYTES; [] for no jobs. Every job is converted and checked here first, so a bad one
    refuses the whole list before anything is sent. A job is never in an earlier Submit than a job
    of this list it waits for (``after``), so each Submit is valid once those before it are in.
    Jobs alike but for their names, one after another, go as one spec and their names."""
    batch, remarks = to_batch(jobs)
    for remark in remarks:
        warnings.warn(remark, JobFileWarning, stacklevel=stacklevel + 1)
    if not len(batch):
        return []
    base = os.fspath(Path(base_dir).absolute()) if base_dir is not None else os.getcwd()
    if chunk is None:
        chunk = SUBMIT_CHUNK_JOBS
    parts = _parts(batch, 0, len(batch), base, chunk or len(batch))
    for k, part in enumerate(parts):
        part.parts_after = len(parts) - 1 - k
    return parts


def _parts(batch: SpecBatch, a: int, b: int, base: str, chunk: int) -> builtins.list[pj_pb2.SubmitRequest]:
    out = []
    for x, y in chunk_bounds(batch, chunk, a, b) if b - a > chunk else [(a, b)]:
        request = batch.request(x, y, base)
        if request.ByteSize() > SUBMIT_CHUNK_BYTES and y - x > 1:  # big jobs: fewer per Submit
            out.extend(_parts(batch, x, y, base, max(1, (y - x) // 4)))
        else:
            out.append(request)
    return out


def chunk_refused(e: PJError, kept: builtins.list[str], total: int, refused: int) -> PJError:
    """The error for the part of a submit after ``kept`` (the names of the parts before it, which
    the master took and keeps): the same kind as ``e``, saying what was kept; ``.kept`` lists them."""
    if not kept:
        return e
    unsure = isinstance(e, PJTimeout | MasterUnreachable)  # the master may have taken this part
    fate = "got no answer (ask Info whether they were taken)" if unsure else "were refused"
    err = type(e)(
        f"{e} [jobs {len(kept) + 1}-{len(kept) + refused} of {total} {fate}, the later ones were "
        f"not sent; the first {len(kept)} ({kept[0]} ... {kept[-1]}) were submitted before them "
        "and are kept: submit only the others again]"
    )
    err.kept = kept
    return err


def submitted(reply: pj_pb2.SubmitReply) -> builtins.list[str]:
    return builtins.list(reply.names)


def info_request(names: Names, with_tasks: bool) -> pj_pb2.InfoRequest:
    return pj_pb2.InfoRequest(names=names_list(names), with_tasks=with_tasks)


def infos(reply: pj_pb2.InfoReply) -> builtins.list[JobInfo]:
    return [convert.job_info(j) for j in reply.jobs]


def list_states(states: Names | None) -> builtins.list[pj_pb2.JobState.ValueType]:
    """``states`` as List wants them (ValueError for an unknown one); [] for every state."""
    return [convert.state_value(s) for s in names_list(states)] if states is not None else []


def list_request(
    states: Sequence[pj_pb2.JobState.ValueType], page_size: int, token: str
) -> pj_pb2.ListRequest:
    return pj_pb2.ListRequest(states=states, page_size=page_size, page_token=token)


def next_page(reply: pj_pb2.ListReply, token: str) -> str | None:
    """The token of the page after ``reply`` (got with ``token``); None after the last one."""
    if not reply.next_page_token or reply.next_page_token == token:
        return None
    return str(reply.next_page_token)


def cancel_request(names: Names) -> pj_pb2.CancelRequest:
    return pj_pb2.CancelRequest(names=names_list(names))


def watch_request(names: Names | None, counts_only: bool = False) -> pj_pb2.WatchRequest:
    return pj_pb2.WatchRequest(names=names_list(names) if names is not None else [], counts_only=counts_only)


def finish_request(drain: bool) -> pj_pb2.FinishRequest:
    return pj_pb2.FinishRequest(drain=drain)


def watch_end(e: grpc.RpcError, canceled: bool, address: str) -> PJError | None:
    """How a watch stream's failed read ends it: None (quietly: canceled here), else the error."""
    if canceled or rpc_code(e) == grpc.StatusCode.CANCELLED:
        return None
    return from_rpc_error(e, address)


# ---------------------------------------------------------------- wait


class WaitTally:
    """The bookkeeping of ``wait(names)`` over the messages of one Watch.

    Feed each message to ``feed`` until it returns True (every watched job has ended); then
    ``lookups()`` says what to ask the master for the states the stream did not tell (some final
    states come only by Info or List), and ``result`` gives name -> final state.
    """

    def __init__(self, names: Names | None) -> None:
        self.every = names is None
        self.wanted = [] if names is None else names_list(names)
        self.states: dict[str, str] = {}
        self.total = self.unfinished = -1
        self.done = False

    @property
    def nothing_to_wait(self) -> bool:
        """An empty list of names: the answer is {} without a call."""
        return not self.every and not self.wanted

    def request(self) -> pj_pb2.WatchRequest:
        return watch_request(self.wanted)

    def feed(self, m: pj_pb2.WatchEvent) -> bool:
        for j in m.changed:
            self.states[j.name] = convert.state_name(j.state)
        self.total, self.unfinished = int(m.watched_total), int(m.watched_unfinished)
        self.done = self.unfinished == 0
        return self.done

    def error(self, e: grpc.RpcError, timeout: float | None, address: str) -> PJError:
        """The error for a Watch that broke: PJTimeout past the wait's deadline."""
        if rpc_code(e) == grpc.StatusCode.DEADLINE_EXCEEDED:
            left = (
                f"{self.unfinished} of {self.total} jobs still unfinished" if self.total >= 0 else "no answer yet"
            )
            return PJTimeout(f"waited {timeout:g} s: {left}")
        return from_rpc_error(e, address)

    def ended_early(self, address: str) -> PJError:
        """The error for a Watch the master closed before the jobs ended (it stopped midway: a
        restart may follow, so it is worth another try)."""
        return MasterUnreachable(f"the master at {address} ended the watch before the jobs finished")

    def lookups(self, address: str) -> builtins.list[str] | None:
        """After the stream: the names to ask with Info ([] for none), or None to List every job.

        Raises PJError if the stream ended before the jobs did."""
        if not self.done:
            raise PJError(f"the master at {address} ended the watch before the jobs finished")
        if not self.every:
            return [n for n in self.wanted if self.states.get(n) not in FINAL_STATES]
        if len(self.states) < self.total or any(s not in FINAL_STATES for s in self.states.values()):
            return None
        return []

    def result(self, looked_up: Iterable[tuple[str, str]] = (), every_job: bool = False) -> dict[str, str]:
        """name -> final state, with what ``lookups`` asked for (``every_job``: it was a List)."""
        if every_job:
            self.states = dict(looked_up)
        else:
            self.states.update(looked_up)
        if self.every:
            return self.states
        return {n: self.states.get(n, "UNKNOWN") for n in self.wanted}
