"""One agent's session with the master, however its messages travel: on its own AgentLink stream
(agentlink.py) or as a link of a relay's RelayLink stream (relaylink.py).

``Sessions`` holds the three verbs both transports call: ``admit`` (a Register: checked, a node
that is connected already replaced or refused, joined to the core), ``heard`` (every later message
of the agent: heartbeats and reports) and ``ended`` (its stream ended: the node left, or is cut off
and has the grace to come back). A refusal is ``Refused``: the transport ends the agent's stream
with its status code and details.
"""

from __future__ import annotations

import asyncio
import time

import grpc
import structlog

from pj.common import peercheck as pc
from pj.common.peercheck import PeerError, clip
from pj.v1 import pj_pb2 as pb

from . import convert
from .allocshell import AllocShell
from .reconcile import WrongCampaign
from .runtime import AgentConn, Dispatcher, WakeGroup

log = structlog.get_logger("pj.master")

REPLACE_WAIT_S = 5.0  # how long a returning agent waits for its old stream to be closed


class Refused(Exception):
    """The master will not take this agent's stream: end it with ``code`` and ``details``."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


class Sessions:
    def __init__(self, master: Dispatcher, allocs: AllocShell | None = None) -> None:
        self.m = master
        self.allocs = allocs

    async def admit(self, first: pb.AgentMessage, group: WakeGroup | None = None) -> AgentConn:
        """An agent's first message, which must be its Register: the node joins (or comes back) and
        is connected from now on. ``group``: the writer its orders wake (a relay's, for all its
        links; default: the connection's own). Raises Refused."""
        if not first.HasField("register"):
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, "an agent's first message must be Register")
        reg = first.register
        try:
            pc.check_register(reg)  # before anything is made per core or GPU
        except PeerError as e:
            log.warning("agent refused", node=reg.node[:80], reason=str(e))
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, str(e)) from None
        m = self.m
        old = m.agents.get(reg.node)
        if old is not None:
            await self._replace(old, reg)
        ended = [(t, code, clip(error), used, clip(tail))
                 for t, code, error, used, tail in map(convert.exit_from_pb, reg.ended)]
        try:
            m.core.node_joined(convert.node_from_pb(reg), m.now(), reg.campaign, list(reg.running), ended)
        except WrongCampaign as e:
            log.warning("agent refused", node=reg.node, reason=str(e))
            raise Refused(grpc.StatusCode.FAILED_PRECONDITION, str(e)) from None
        conn = AgentConn(reg.node, reg.pid, reg.hostname, group)
        if m.shutdown_reason:  # it came after the campaign ended: nothing for it to do
            conn.shutdown = m.shutdown_reason
            conn.wake()
        elif self.allocs is not None and not self.allocs.joined(reg.node, reg.alloc_job_id, reg.cores, reg.ends_at):
            m.core.retire(reg.node)  # its allocation is over (cancelled, failed, released)
            conn.shutdown = "its allocation is over"
            conn.wake()
        m.agents[reg.node] = conn
        log.info("agent joined", node=reg.node, cores=reg.cores, gpus=list(reg.gpus),
                 returning=bool(reg.campaign), running=len(reg.running), ended=len(ended))
        m.poke()
        return conn

    def welcome(self) -> pb.MasterMessage:
        """The first message down an admitted agent's stream."""
        m = self.m
        return pb.MasterMessage(welcome=pb.Welcome(heartbeat_interval_s=m.heartbeat_s, campaign=m.core.campaign))

    async def _replace(self, old: AgentConn, reg: pb.Register) -> None:
        """A Register for a node that is connected: the same agent back (``Dispatcher.may_replace``)
        has its old stream ended and rejoins at once with what it runs, instead of waiting out the
        heartbeat. Anyone else is refused (ALREADY_EXISTS)."""
        m = self.m
        if not m.may_replace(old, reg.pid, reg.hostname, reg.campaign):
            log.warning("agent refused", node=reg.node, reason="another agent of this node is connected",
                        pid=reg.pid, hostname=reg.hostname, connected_pid=old.pid)
            raise Refused(grpc.StatusCode.ALREADY_EXISTS, f"node {reg.node!r} is already connected")
        log.info("agent came back on a new stream: its old one is closed", node=reg.node, pid=reg.pid)
        old.replaced = True
        old.end_stream()
        try:
            await asyncio.wait_for(old.closed.wait(), REPLACE_WAIT_S)
        except TimeoutError:
            raise Refused(grpc.StatusCode.UNAVAILABLE, f"node {reg.node!r}: its old stream is still closing") from None
        if reg.node in m.agents:  # another new stream of it got in first
            raise Refused(grpc.StatusCode.ALREADY_EXISTS, f"node {reg.node!r} is already connected")

    def heard(self, conn: AgentConn, msg: pb.AgentMessage) -> None:
        """One message of an admitted agent: a heartbeat, or a batch of reports."""
        kind = msg.WhichOneof("body")
        if kind == "heartbeat":
            self.m.read_lag.heard(conn.node, msg.heartbeat.time, time.time())
        elif kind == "events":
            ev = msg.events
            self.m.agent_reports(
                conn.node,
                [(s.task_id, s.time) for s in ev.started],
                [(e.task_id, e.exit_code, clip(e.error), e.time, convert.usage_from_pb(e), clip(e.stderr_tail))
                 for e in ev.exited],
                ev.withdrawn,
            )
        conn.last_seen = time.monotonic()

    @staticmethod
    def end_status(conn: AgentConn) -> tuple[grpc.StatusCode, str] | None:
        """How the master ends a stream it ends itself (None: the stream ends as usual)."""
        if conn.replaced:  # the agent is on a new stream already: nobody reads this one
            return grpc.StatusCode.UNAVAILABLE, f"node {conn.node!r}: replaced by a newer stream of the same agent"
        if conn.lost.is_set():  # the agent, if it ever wakes, hears why
            return grpc.StatusCode.UNAVAILABLE, f"no word from node {conn.node!r} for too long: it was declared lost"
        return None

    def ended(self, conn: AgentConn, at: float | None = None) -> None:
        """The agent's stream ended (``conn.goodbye``: it closed its side; ``at``: when, if it was
        seen earlier than now, by a relay): the node is no longer connected; it left, or it is cut
        off and has the grace to come back, counted from ``at``."""
        m, node = self.m, conn.node
        del m.agents[node]
        m.read_lag.forget(node)
        if self.allocs is not None:
            self.allocs.left(node)
        if m.agent_gone(node, conn.goodbye, at):
            log.info("agent left", node=node)
        else:  # its agent may still run its tasks: it has the grace to come back
            log.info("agent disconnected", node=node, grace_s=m.core.recon.grace)
        conn.closed.set()
