"""``pj.client.AsyncClient``: the Client API for asyncio programs, over grpc.aio.

Example (a master runs with ``--workdir runs/demo``)::

    import asyncio
    from pj.client import AsyncClient

    async def main() -> None:
        async with AsyncClient("runs/demo") as pj:
            names = await pj.submit([{"name": "hello", "exec": "/bin/echo", "args": ["hi"]}])
            print(await pj.wait(names, timeout=600))    # {"hello": "SUCCEED"}
            async for job in pj.list(states=["FAILED"]):
                print(job.name, job.reason)

    asyncio.run(main())

It finds the master, takes the same arguments, returns the same dataclasses
(``pj.client.convert``) and raises the same ``PJError`` subclasses as ``Client``; requests and
decoding are shared with it (``calls.py``). ``watch()`` is an async iterator that ends quietly on
its ``cancel()`` (from any task of the loop) or on ``close()``. Use one AsyncClient in one event
loop (its channel is made on the first call, in the loop that makes it); any number of tasks of
that loop may call it at once.
"""

from __future__ import annotations

import asyncio
import builtins
import os
import weakref
from collections.abc import AsyncIterator, Iterable
from types import TracebackType
from typing import Any

import grpc
import grpc.aio

from pj.common import dial
from pj.common.specbatch import request_jobs
from pj.v1 import pj_pb2, pj_pb2_grpc

from . import calls, convert, redial
from .calls import CHANNEL_OPTIONS, Jobs, Names
from .convert import CancelResult, JobInfo, JobSummary, Resources, Status, WatchEvent
from .errors import MasterNotFound, PJError, from_rpc_error

__all__ = ["AsyncClient", "AsyncWatchStream"]

_EOF: Any = grpc.aio.EOF  # type: ignore[attr-defined]  # (grpc-stubs lack it) what read() gives at the end


def _cancelling() -> bool:
    """Whether the running task is being canceled (then a CancelledError must go on up)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class AsyncWatchStream(AsyncIterator[WatchEvent]):
    """The events of one Watch call: ``async for event in stream``.

    It ends (StopAsyncIteration) when ``cancel()`` is called (by any task of the loop), when its
    AsyncClient is closed or when the master closes the stream. When the master goes away it is
    reopened (redial.py: the first event after that describes the present) until the client's
    ``reconnect_timeout``, then raises MasterUnreachable; other breaks raise a PJError.
    ``async with`` cancels it on leaving.
    """

    def __init__(self, client: AsyncClient, request: pj_pb2.WatchRequest) -> None:
        self._client = client
        self._request = request
        self._canceled = False
        self._stop = asyncio.Event()
        self._retry = redial.Retry(client.reconnect_timeout)
        self._call = client._watch_call(request, None)

    def __aiter__(self) -> AsyncWatchStream:
        return self

    async def __anext__(self) -> WatchEvent:
        while True:
            if self._canceled:
                raise StopAsyncIteration
            try:
                m = await self._call.read()
            except grpc.RpcError as e:
                error = calls.watch_end(e, self._canceled, self._client._target)
                if error is None:
                    raise StopAsyncIteration from None
                await self._reopen(error)
                continue
            except asyncio.CancelledError:
                # grpc.aio raises CancelledError in the reader when the call was canceled locally:
                # that is our cancel() (or close()), unless this very task is being canceled.
                if self._canceled and not _cancelling():
                    raise StopAsyncIteration from None
                raise
            if m is _EOF:
                raise StopAsyncIteration
            self._retry.heard()
            return convert.watch_event(m)

    async def _reopen(self, error: PJError) -> None:
        """Wait, find the master again and open a new call; StopAsyncIteration if canceled meanwhile."""
        while True:
            try:
                async with asyncio.timeout(self._retry.after(error)):
                    await self._stop.wait()
                raise StopAsyncIteration
            except TimeoutError:
                pass
            try:
                await self._client._redial()
            except MasterNotFound as e:
                error = e
                continue
            if self._canceled:
                raise StopAsyncIteration
            self._call = self._client._watch_call(self._request, None)
            return

    def cancel(self) -> None:
        """End the stream: a reader waiting in ``async for`` stops quietly."""
        self._canceled = True
        self._stop.set()
        self._call.cancel()

    async def __aenter__(self) -> AsyncWatchStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.cancel()


class AsyncClient(calls.Endpoint):
    """A grpc.aio connection to one PJ master. See the module docstring for an example.

    ``timeout`` (seconds, None for none) bounds every unary call; ``wait`` and ``watch`` have
    their own. ``reconnect_timeout``: as Client's (a wait or watch outlives a master restart).
    """

    def __init__(
        self,
        workdir: str | os.PathLike[str] | None = None,
        *,
        address: str | None = None,
        token_file: str | os.PathLike[str] | None = None,
        timeout: float | None = 30.0,
        tls_cert: str | os.PathLike[str] | None = None,
        reconnect_timeout: float | None = redial.RECONNECT_TIMEOUT_S,
    ) -> None:
        super().__init__(workdir, address, token_file, timeout, tls_cert, reconnect_timeout)
        self._channel: grpc.aio.Channel | None = None
        self._stub: pj_pb2_grpc.PilotJobStub | None = None
        self._streams: weakref.WeakSet[AsyncWatchStream] = weakref.WeakSet()
        # Channels to where the master was before it moved: other tasks may still read them.
        self._retired: builtins.list[grpc.aio.Channel] = []

    # ------------------------------------------------------------ plumbing

    async def close(self) -> None:
        """Close the channel; open watches end quietly, calls under way raise PJError."""
        if self._closed:
            return
        self._closed = True
        for stream in builtins.list(self._streams):
            stream.cancel()
        if self._channel is not None:
            await self._channel.close(None)
        for channel in self._retired:
            await channel.close(None)

    async def _redial(self) -> None:
        """Find the master again (redial.py); dial anew when it moved. Raises MasterNotFound."""
        self._check_open()
        if self._refind() and self._channel is not None:
            self._retired.append(self._channel)
            self._channel = self._stub = None  # made again by the next call, in this loop

    async def _pause(self, retry: redial.Retry, error: PJError) -> None:
        """After ``error``: back off, then find the master again, until it is found (or give up)."""
        while True:
            await asyncio.sleep(retry.after(error))
            try:
                await self._redial()
                return
            except MasterNotFound as e:
                error = e

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def _get_stub(self) -> pj_pb2_grpc.PilotJobStub:
        self._check_open()
        if self._stub is None:  # a grpc.aio channel belongs to the loop it is made in
            self._channel = dial.aio_channel(self._master, CHANNEL_OPTIONS, local=True)
            self._stub = pj_pb2_grpc.PilotJobStub(self._channel)  # type: ignore[no-untyped-call]
        return self._stub

    def _closed_meanwhile(self) -> PJError:
        return PJError(f"this {type(self).__name__} was closed during the call")

    async def _call(self, method: str, request: Any) -> Any:
        stub = self._get_stub()
        try:
            return await getattr(stub, method)(request, metadata=self._metadata, timeout=self.timeout)
        except grpc.RpcError as e:
            raise from_rpc_error(e, self._target, method) from None
        except asyncio.CancelledError:
            if self._closed and not _cancelling():
                raise self._closed_meanwhile() from None
            raise

    def _watch_call(self, request: pj_pb2.WatchRequest, timeout: float | None) -> Any:
        return self._get_stub().Watch(request, metadata=self._metadata, timeout=timeout)

    # ------------------------------------------------------------ the PilotJob service

    async def submit(self, jobs: Jobs, base_dir: str | os.PathLike[str] | None = None) -> builtins.list[str]:
        """Submit jobs; return their names in order (see Client.submit: more than 50,000 go in parts)."""
        kept: builtins.list[str] = []
        requests = calls.submit_requests(jobs, base_dir, stacklevel=2)
        total = sum(map(request_jobs, requests))
        for request in requests:
            try:
                kept.extend(calls.submitted(await self._call("Submit", request)))
            except PJError as e:
                raise calls.chunk_refused(e, kept, total, request_jobs(request)) from None
        return kept

    async def status(self) -> Status:
        """Counts of jobs and tasks per state, resources in use, whether the master is finishing."""
        return convert.status(await self._call("Status", pj_pb2.StatusRequest()))

    async def info(self, names: Names, with_tasks: bool = False) -> builtins.list[JobInfo]:
        """Details of the named jobs (history; with_tasks: every task started so far)."""
        return calls.infos(await self._call("Info", calls.info_request(names, with_tasks)))

    async def list(self, states: Iterable[str] | None = None, page_size: int = 0) -> AsyncIterator[JobSummary]:
        """Every job (or those in ``states``), page after page: ``async for job in pj.list()``."""
        wanted = calls.list_states(states)
        token: str | None = ""
        while token is not None:
            reply = await self._call("List", calls.list_request(wanted, page_size, token))
            for j in reply.jobs:
                yield convert.job_summary(j)
            token = calls.next_page(reply, token)

    async def cancel(self, names: Names) -> CancelResult:
        """Cancel the named jobs: queued ones are dequeued, running ones stopped."""
        return convert.cancel_result(await self._call("Cancel", calls.cancel_request(names)))

    def watch(self, names: Names | None = None, counts_only: bool = False) -> AsyncWatchStream:
        """Events about the named jobs (None: every job) as they happen: ``async for e in pj.watch()``.

        The first event describes the present. It lasts until the stream's ``cancel()``, ``close()``
        or the master's exit. ``counts_only``: see Client.watch. Call it from the event loop.
        """
        stream = AsyncWatchStream(self, calls.watch_request(names, counts_only))
        self._streams.add(stream)
        return stream

    async def wait(self, names: Names | None = None, timeout: float | None = None) -> dict[str, str]:
        """Until the named jobs (None: every job) have finished; return name -> final state.

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
                while (m := await call.read()) is not _EOF:
                    retry.heard()
                    if tally.feed(m):
                        break
                error = None if tally.done else tally.ended_early(self._target)
            except grpc.RpcError as e:
                error = tally.error(e, timeout, self._target)
            except asyncio.CancelledError:
                if self._closed and not _cancelling():
                    raise self._closed_meanwhile() from None
                raise
            finally:
                call.cancel()
            if error is None:
                break
            await self._pause(retry, error)
        ask = tally.lookups(self.address)
        if ask is None:
            return tally.result([(j.name, j.state) async for j in self.list()], every_job=True)
        return tally.result((j.name, j.state) for j in await self.info(ask)) if ask else tally.result()

    async def resources(self) -> Resources:
        """The nodes (agents) known to the master, with their free cores and GPUs."""
        return convert.resources(await self._call("Resources", pj_pb2.ResourcesRequest()))

    async def finish(self, drain: bool = True) -> None:
        """Ask the master to end: drain=True lets every job end first; False cancels what runs."""
        await self._call("Finish", calls.finish_request(drain))
