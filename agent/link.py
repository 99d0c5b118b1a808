"""The agent's one gRPC stream to the master (AgentLink.Connect).

One ``Link.session()`` is one connection: Register -> Welcome, then three tasks
in a TaskGroup: the reader (Orders, Shutdown), the writer (reports in batches,
heartbeats) and a watcher for a local stop (SIGTERM/SIGINT). The runner, and
so the tasks and their pending reports, outlive the session: that is where a
reconnect loop uses that (main.py decides what a broken session means; a session made with
``rejoin`` registers as a returning agent: campaign, running tasks, missed exits).

Batching: the writer sends everything pending as one AgentEvents as soon as
the previous write is done (after one turn of the event loop, so that the exits already
signalled join it), so a burst of exits coalesces into few messages
while a lone exit goes out at once.

Closing: once a shutdown is under way (the master's Shutdown, or a local
signal) and every task has ended, the writer sends the last reports and
half-closes; the master is expected to end the call then (we wait
``close_timeout_s`` for it, then cancel).
"""

from __future__ import annotations

import asyncio
import enum
import time

import grpc
import grpc.aio
import structlog

from pj.common import dial
from pj.common.workdir import TOKEN_METADATA_KEY, MasterAddress
from pj.v1 import pj_pb2, pj_pb2_grpc

from . import convert
from .reconnect import SentExits
from .runner import Runner

log = structlog.get_logger("pj.agent")

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
CHANNEL_OPTIONS = (
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
)
REGISTER_ATTEMPTS = 4
BATCH_LIMIT = 100_000  # reports of each kind per message (well under the size limit)


class Outcome(enum.Enum):
    SHUTDOWN = "shutdown"  # the master said so; every task ended and was reported
    INTERRUPTED = "interrupted"  # a local stop (signal); every task ended and was reported


class LinkBroken(Exception):
    """The stream failed or ended before a shutdown; the message says how (``code``: the gRPC
    status when the master gave one)."""

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.code = code


class LinkRefused(LinkBroken):
    """The master refused us (bad token, bad registration): retrying will not help."""


class _Unclear(Exception):
    """The call failed during registration without saying why (see Link._run)."""


class Link:
    def __init__(
        self,
        address: str,
        token: str,
        register: pj_pb2.AgentMessage,
        runner: Runner,
        *,
        connect_timeout_s: float = 30.0,
        close_timeout_s: float = 5.0,
        tls_cert: bytes | None = None,
        ready_timeout_s: float | None = None,
        sent: SentExits | None = None,
        rejoin: str | None = None,
    ) -> None:
        self.address = address
        self.tls_cert = tls_cert  # the run's certificate (pinned) when the master serves TLS
        self.register = register
        self.runner = runner
        self.connect_timeout_s = connect_timeout_s
        self.close_timeout_s = close_timeout_s
        # How long to wait for the channel to come up (default: connect_timeout_s).
        self.ready_timeout_s = connect_timeout_s if ready_timeout_s is None else ready_timeout_s
        # Exits sent recently (resent on a reconnect: a broken stream may have lost them).
        self.sent = sent if sent is not None else SentExits()
        # Not None: this session is a reconnect of an agent that served that campaign.
        self.rejoin = rejoin
        self.welcomed = False
        self.campaign = ""  # Welcome.campaign
        self._metadata = ((TOKEN_METADATA_KEY, token),)
        # Per session (a reconnect will make a new session; see main.serve).
        self._closing = False
        self._closing_ev = asyncio.Event()
        self._by_master = False
        self._heartbeat_s = 0.0

    @property
    def closing(self) -> bool:
        """A shutdown is under way (the master's or a local stop): a break now is no reason to return."""
        return self._closing

    async def session(self, stop: asyncio.Event) -> Outcome:
        """Run one connection to its end. Raises LinkBroken if it ends before a shutdown."""
        # Always TCP: agents run on other nodes than the master (its Unix socket is for local clients).
        where = MasterAddress(self.address, "", tls_cert=self.tls_cert)
        async with dial.aio_channel(where, CHANNEL_OPTIONS, local=False) as channel:
            if not await self._connect(channel, stop):
                return Outcome.INTERRUPTED
            stub = pj_pb2_grpc.AgentLinkStub(channel)
            attempt = 1
            while True:
                try:
                    return await self._call(stub.Connect(metadata=self._metadata), stop)
                except _Unclear as e:
                    if attempt == REGISTER_ATTEMPTS:
                        raise LinkRefused(
                            f"the master ended the call before welcoming us ({e}); is the token right?"
                        ) from None
                attempt += 1
                await asyncio.sleep(0.1)

    async def _call(self, call: grpc.aio.StreamStreamCall, stop: asyncio.Event) -> Outcome:
        """One AgentLink.Connect call to its end."""
        try:
            return await self._run(call, stop)
        except (grpc.aio.AioRpcError, LinkBroken, BaseExceptionGroup) as e:
            err = _flatten(e)
            if self._by_master and isinstance(err, LinkBroken) and not isinstance(err, LinkRefused):
                # It asked us to go: its leaving before our last reports is no failure.
                log.warning("the master left before our last reports", error=str(err))
                return Outcome.SHUTDOWN
            # Launches still waiting for their cores go now, before an end can start one: the
            # master queues again whatever a reconnect's Register does not name.
            self.runner.link_lost()
            raise err from None
        finally:
            call.cancel()

    async def _connect(self, channel: grpc.aio.Channel, stop: asyncio.Event) -> bool:
        """Wait for the channel to be up; False if stopped first. Raises LinkBroken on timeout."""
        async with asyncio.TaskGroup() as tg:
            ready = tg.create_task(channel.channel_ready())
            stopped = tg.create_task(stop.wait())
            done, _ = await asyncio.wait(
                {ready, stopped}, timeout=self.ready_timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
            ready.cancel()
            stopped.cancel()
        if ready in done:
            return True
        if stopped in done:
            return False
        raise LinkBroken(f"cannot reach the master at {self.address} (waited {self.ready_timeout_s:.3g}s)")

    async def _run(self, call: grpc.aio.StreamStreamCall, stop: asyncio.Event) -> Outcome:
        register, taken = self._register_message()
        try:
            await _send(call, register)
            async with asyncio.timeout(self.connect_timeout_s):
                first = await _recv(call)
        except TimeoutError:
            raise LinkBroken(f"the master at {self.address} did not welcome us") from None
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.INTERNAL:
                # grpc.aio reports a write that races the master's refusal (a bad token, say)
                # as INTERNAL "Internal error from Core", hiding the real status: ask again.
                raise _Unclear(f"{e.code().name}: {e.details()}") from None
            raise
        if not isinstance(first, pj_pb2.MasterMessage):  # grpc.aio.EOF
            raise _status_error(await call.code(), await call.details())
        if first.WhichOneof("body") != "welcome":
            raise LinkRefused(f"the master answered {first.WhichOneof('body')} instead of welcome")
        self._heartbeat_s = first.welcome.heartbeat_interval_s
        self.welcomed = True
        self.campaign = first.welcome.campaign
        if self.rejoin is not None:
            self._rejoined(taken)
            if self.rejoin and self.campaign and self.campaign != self.rejoin:
                log.warning(
                    "the master welcomed us into another campaign", was=self.rejoin, now=self.campaign
                )
        log.info(
            "registered" if self.rejoin is None else "reconnected",
            master=self.address,
            heartbeat_s=self._heartbeat_s,
            campaign=self.campaign,
        )
        async with asyncio.TaskGroup() as tg:
            reader = tg.create_task(self._read(call))
            writer = tg.create_task(self._write(call))
            watcher = tg.create_task(self._watch(stop, call))
            await writer  # returns after the half-close that follows the last report
            watcher.cancel()
            _, pending = await asyncio.wait({reader}, timeout=self.close_timeout_s)
            if pending:
                log.warning("the master did not close the stream; closing it", master=self.address)
                call.cancel()
                reader.cancel()
        return Outcome.SHUTDOWN if self._by_master else Outcome.INTERRUPTED

    def _register_message(self) -> tuple[pj_pb2.AgentMessage, tuple[int, int]]:
        """The Register to send, and (started, exited) counts of the outbox reports it carries.

        A reconnect names the campaign, the tasks still running and every exit the master may
        have missed: those still pending in the outbox and those sent during the resend window."""
        if self.rejoin is None:
            return self.register, (0, 0)
        outbox = self.runner.outbox
        pending = list(outbox.exited)
        ended = self.sent.recent(time.monotonic()) + pending
        msg = pj_pb2.AgentMessage()
        msg.CopyFrom(self.register)
        reg = msg.register
        reg.campaign = self.rejoin
        reg.running.extend(self.runner.state.running_ids())  # never the held launches
        reg.ended.extend(convert.exited_to_pb(r) for r in ended)
        return msg, (len(outbox.started), len(pending))

    def _rejoined(self, taken: tuple[int, int]) -> None:
        """Welcomed back: the reports the Register carried leave the outbox (the started ones are
        covered by Register.running or .ended) and join the resend window."""
        n_started, n_exited = taken
        outbox = self.runner.outbox
        sent = outbox.exited[:n_exited]
        del outbox.started[:n_started]
        del outbox.exited[:n_exited]
        self.sent.add(sent, time.monotonic())
        if not outbox:
            outbox.ready.clear()

    def _begin_shutdown(self, reason: str) -> None:
        if not self._closing:
            self._closing = True
            self._closing_ev.set()
            self.runner.shutdown(reason)
            self.runner.outbox.ready.set()  # wake the writer even if nothing is pending

    async def _watch(self, stop: asyncio.Event, call: grpc.aio.StreamStreamCall) -> None:
        """Turn a local stop into a shutdown; bound the goodbye if the master stops reading."""
        async with asyncio.TaskGroup() as tg:
            stopped = tg.create_task(stop.wait())
            closing = tg.create_task(self._closing_ev.wait())
            await asyncio.wait({stopped, closing}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            closing.cancel()
        if stop.is_set():
            log.info("stopping: killing the tasks")
            self._begin_shutdown("agent stopped")
        await self.runner.drained.wait()
        await asyncio.sleep(self.close_timeout_s)  # the writer is normally done long before
        log.warning("the master is not taking our last reports; closing the stream", master=self.address)
        call.cancel()

    async def _read(self, call: grpc.aio.StreamStreamCall) -> None:
        runner = self.runner
        while True:
            msg = await _recv(call)
            if not isinstance(msg, pj_pb2.MasterMessage):  # grpc.aio.EOF
                if self._closing and runner.drained.is_set():
                    return
                raise _status_error(await call.code(), await call.details())
            kind = msg.WhichOneof("body")
            if kind == "orders":
                orders = msg.orders
                if orders.launch:
                    runner.launch(convert.spec_from_pb(m) for m in orders.launch)
                if orders.cancel:
                    runner.cancel(orders.cancel)
                if orders.withdraw:
                    runner.withdraw(convert.withdraw_from_pb(orders.withdraw))
            elif kind == "shutdown":
                log.info("shutdown requested by the master", reason=msg.shutdown.reason)
                self._by_master = True
                self._begin_shutdown(msg.shutdown.reason)
            else:
                log.warning("unexpected message from the master ignored", kind=kind)

    async def _write(self, call: grpc.aio.StreamStreamCall) -> None:
        outbox = self.runner.outbox
        drained = self.runner.drained
        beat = self._heartbeat_s
        next_beat = time.monotonic() + beat if beat > 0 else None
        while True:
            # Wait unless there is something to send or the stream may close now: ``ready`` was
            # cleared by the last take() even if the drain (which also sets it) came before it.
            if not outbox.ready.is_set() and not (self._closing and drained.is_set()):
                try:
                    delay = None if next_beat is None else max(0.0, next_beat - time.monotonic())
                    async with asyncio.timeout(delay):
                        await outbox.ready.wait()
                except TimeoutError:
                    pass
            if outbox:
                # One turn of the loop first: the exits and orders already waiting there (a SIGCHLD
                # each) join this message instead of each making the next one.
                await asyncio.sleep(0)
                started, exited, withdrawn = outbox.take(BATCH_LIMIT)
                if exited:  # counted as sent before the write: a write that fails may still arrive
                    self.sent.add(exited, time.monotonic())
                await _send(call, convert.events_pb(started, exited, withdrawn))
            elif self._closing and drained.is_set():
                try:
                    await call.done_writing()
                except asyncio.InvalidStateError:
                    raise _status_error(await call.code(), await call.details()) from None
                except asyncio.CancelledError:
                    _raise_if_call_cancelled(call)
                    raise
                return
            else:
                outbox.ready.clear()
            if next_beat is not None and time.monotonic() >= next_beat:
                await _send(call, convert.heartbeat_pb(time.time()))
                next_beat = time.monotonic() + beat


async def _send(call: grpc.aio.StreamStreamCall, msg: pj_pb2.AgentMessage) -> None:
    try:
        await call.write(msg)
    except asyncio.InvalidStateError:  # the call already ended: say how
        raise _status_error(await call.code(), await call.details()) from None
    except asyncio.CancelledError:
        _raise_if_call_cancelled(call)
        raise


async def _recv(call: grpc.aio.StreamStreamCall) -> object:
    try:
        return await call.read()
    except asyncio.CancelledError:
        _raise_if_call_cancelled(call)
        raise


def _raise_if_call_cancelled(call: grpc.aio.StreamStreamCall) -> None:
    """A CancelledError from a read or write whose task nobody cancelled: the call itself was
    cancelled under us (Link._watch gave up on the master); that is a broken link."""
    task = asyncio.current_task()
    if call.done() and task is not None and not task.cancelling():
        raise LinkBroken("the master stopped reading; the stream was closed") from None


def _flatten(e: BaseException) -> BaseException:
    """The LinkBroken that a (group of) failure(s) means; anything else unchanged."""
    if isinstance(e, LinkBroken):
        return e
    if isinstance(e, grpc.aio.AioRpcError):
        return _broken(e)
    if isinstance(e, BaseExceptionGroup):
        leaves = [x for x in e.exceptions if not isinstance(x, asyncio.CancelledError)]
        if len(leaves) == 1 or (
            leaves and all(isinstance(x, LinkBroken | grpc.aio.AioRpcError) for x in leaves)
        ):
            return _flatten(leaves[0])
    return e


# Statuses by which the master turns this agent away: retrying the same way will not help.
_REFUSALS = frozenset(
    {
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.FAILED_PRECONDITION,
    }
)


def _status_error(code: grpc.StatusCode | None, details: str | None) -> LinkBroken:
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return LinkRefused(f"the master refused our token: {details or code.name}", code)
    if code in _REFUSALS:
        return LinkRefused(f"the master refused us: {code.name}: {details or ''}".rstrip(": "), code)
    if code in (grpc.StatusCode.OK, None):
        return LinkBroken("the master closed the stream", code)
    return LinkBroken(f"the stream failed: {code.name}: {details or ''}".rstrip(": "), code)


def _broken(e: grpc.aio.AioRpcError) -> LinkBroken:
    return _status_error(e.code(), e.details())
