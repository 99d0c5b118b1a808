"""A real grpc.aio server on a free local port for a servicer a test plays (a fake master, a fake
relay's master): the tests that start a real agent or relay against one share it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc


async def serve(add: Callable[[Any, grpc.aio.Server], None], servicer: Any) -> tuple[grpc.aio.Server, int]:
    """Start a server with ``servicer`` added by ``add`` (e.g. ``add_AgentLinkServicer_to_server``);
    return it and its port on 127.0.0.1."""
    server = grpc.aio.server()
    add(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


def token_file(where: Path, token: str) -> Path:
    """A token file as pj-master writes it (owner-only)."""
    path = where / "token"
    path.write_text(token + "\n")
    path.chmod(0o600)
    return path
