"""AgentLink: one bidirectional stream per agent, straight to the master. What happens to the
session is agentsession.py's; this file only reads and writes the stream."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import structlog

from pj.common.firstdone import first_done
from pj.v1 import pj_pb2 as pb
from pj.v1 import pj_pb2_grpc as rpc

from .agentsession import Refused, Sessions
from .runtime import AgentConn

log = structlog.get_logger("pj.master")
EOF_ = grpc.aio.EOF  # type: ignore[attr-defined]


class AgentLinkService(rpc.AgentLinkServicer):
    def __init__(self, sessions: Sessions) -> None:
        self.sessions = sessions

    async def Connect(self, request_iterator: Any, context: grpc.aio.ServicerContext) -> None:
        first = await context.read()
        if first is EOF_:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "an agent's first message must be Register")
        try:
            conn = await self.sessions.admit(first)
        except Refused as r:
            await context.abort(r.code, r.details)
        try:
            await context.write(self.sessions.welcome())
            # until it ends its side, or is silent too long (conn.lost, Dispatcher.watch_agents)
            await first_done(self._read(conn, context), conn.lost.wait(), beside=[self._write(conn, context)])
            status = self.sessions.end_status(conn)
            if status is not None:
                context.set_code(status[0])
                context.set_details(status[1])
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a broken stream: the node is cut off, the master goes on
            log.warning("agent stream broke", node=conn.node, error=repr(e))
        finally:
            self.sessions.ended(conn)

    async def _read(self, conn: AgentConn, context: grpc.aio.ServicerContext) -> None:
        heard = self.sessions.heard
        while True:
            msg = await context.read()
            if msg is EOF_:
                conn.goodbye = True
                return
            heard(conn, msg)

    async def _write(self, conn: AgentConn, context: grpc.aio.ServicerContext) -> None:
        while True:
            await conn.ready.wait()
            conn.ready.clear()
            msg = conn.take()
            if msg is not None:
                await context.write(msg)
            if conn.shutdown:
                await context.write(pb.MasterMessage(shutdown=pb.Shutdown(reason=conn.shutdown)))
                return
