"""RelayLink: one stream per relay (pj-relay, agent/relay.py), carrying the AgentLink streams of
many agents as numbered links (issue 16: tens of streams for thousands of nodes).

Each link is an agent session exactly as a direct stream is (agentsession.py): its first message
is the Register, a refusal ends the link with the refusal's status, later messages are heard in
order, and the link's end (the agent's stream ended at the relay) or the relay's (its stream
broke: every link of it is cut off, with the grace to come back) ends the session. Down the
stream, one writer gathers what waits for any of the relay's links into one RelayDown per wake:
every link's AgentConn is in the relay's ``WakeGroup`` (one event, and the links that have
something). Each RelayDown also says how many RelayUps were read since the last (``taken``): the
relay keeps only a few unread here and gathers the rest into the next, since a stream gives the
master one message per turn of its loop (16 relays sending as fast as their writes completed
queued ~20 s of small messages here while the master was busy: heartbeats and link ends read that
late, so a storm's losses came spread over 10 s and more).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
import structlog

from pj.common.firstdone import first_done
from pj.v1 import pj_pb2 as pb
from pj.v1 import pj_pb2_grpc as rpc

from .agentsession import Refused, Sessions
from .readlag import SentClock
from .runtime import AgentConn, WakeGroup

log = structlog.get_logger("pj.master")
EOF_ = grpc.aio.EOF  # type: ignore[attr-defined]
_GOODBYE = pb.NodeUp.END_GOODBYE


class _Link:
    __slots__ = ("conn", "shut")

    def __init__(self, conn: AgentConn) -> None:
        self.conn = conn
        self.shut = False  # its Shutdown has gone down


class _Relay:
    """The links of one relay stream."""

    def __init__(self, sessions: Sessions, peer: str) -> None:
        self.sessions = sessions
        self.peer = peer
        self.links: dict[int, _Link] = {}
        self.lids: dict[AgentConn, int] = {}  # each link's connection -> its number
        self.done: set[int] = set()  # links refused or ended by the master: what more comes up is dropped
        self.pending: list[pb.NodeDown] = []  # welcomes and refusals, before any orders
        self.group = WakeGroup()
        self.taken = 0  # RelayUps read since the last RelayDown
        self.clock = SentClock()  # the relay's: when it saw a link end, on ours

    async def read(self, context: grpc.aio.ServicerContext) -> None:
        while True:
            up = await context.read()
            if up is EOF_:
                return
            read = time.time()
            self.clock.heard(up.time, read)
            for u in up.up:
                link = self.links.get(u.link)
                if u.end:
                    if link is not None:
                        link.conn.goodbye = u.end == _GOODBYE
                        self._end(u.link, self.clock.ours(u.ended_at, read))
                    self.done.discard(u.link)
                elif link is not None:
                    self.sessions.heard(link.conn, pb.AgentMessage.FromString(u.message))
                elif u.link not in self.done:
                    await self._admit(u.link, pb.AgentMessage.FromString(u.message))
            self.taken += 1
            self.group.ready.set()

    async def _admit(self, lid: int, first: pb.AgentMessage) -> None:
        group = self.group
        try:
            conn = await self.sessions.admit(first, group)
        except Refused as r:
            self.done.add(lid)
            self.pending.append(pb.NodeDown(link=lid, code=r.code.value[0], details=r.details))
            group.ready.set()
            return
        self.links[lid] = _Link(conn)
        self.lids[conn] = lid
        self.pending.append(pb.NodeDown(link=lid, message=self.sessions.welcome().SerializeToString()))
        group.dirty.add(conn)  # a Shutdown set while it was admitted goes down after the Welcome
        group.ready.set()

    def _end(self, lid: int, at: float | None = None) -> None:
        link = self.links.pop(lid)
        del self.lids[link.conn]
        self.sessions.ended(link.conn, at)

    async def write(self, context: grpc.aio.ServicerContext) -> None:
        group = self.group
        while True:
            await group.ready.wait()
            group.ready.clear()
            batch = pb.RelayDown(taken=self.taken)
            self.taken = 0
            down = batch.down
            if self.pending:
                down.extend(self.pending)
                self.pending.clear()
            woken = list(group.dirty)
            group.dirty.clear()
            ending: list[int] = []
            for conn in woken:
                lid = self.lids.get(conn)
                if lid is None:
                    continue  # its link ended meanwhile
                link = self.links[lid]
                msg = None if link.shut else conn.take()  # nothing after the Shutdown, as on a direct stream
                if msg is not None:
                    down.add(link=lid, message=msg.SerializeToString())
                if conn.shutdown and not link.shut:
                    link.shut = True
                    bye = pb.MasterMessage(shutdown=pb.Shutdown(reason=conn.shutdown))
                    down.add(link=lid, message=bye.SerializeToString())
                if conn.lost.is_set():
                    code, details = self.sessions.end_status(conn) or (grpc.StatusCode.UNAVAILABLE, "")
                    down.add(link=lid, code=code.value[0], details=details)
                    ending.append(lid)
            for lid in ending:
                self.done.add(lid)
                self._end(lid)
            if down or batch.taken:
                await context.write(batch)

    def close(self) -> None:
        """The relay's stream ended: every link still open is cut off."""
        for lid in list(self.links):
            self._end(lid)


class RelayLinkService(rpc.RelayLinkServicer):
    def __init__(self, sessions: Sessions) -> None:
        self.sessions = sessions

    async def Connect(self, request_iterator: Any, context: grpc.aio.ServicerContext) -> None:
        relay = _Relay(self.sessions, context.peer())
        log.info("relay connected", peer=relay.peer)
        try:
            await first_done(relay.read(context), relay.write(context))
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a broken stream: its nodes are cut off, the master goes on
            log.warning("relay stream broke", peer=relay.peer, links=len(relay.links), error=repr(e))
        finally:
            log.info("relay disconnected", peer=relay.peer, links=len(relay.links))
            relay.close()
