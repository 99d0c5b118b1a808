"""Channels to a master found by ``pj.common.workdir.find_master``: one place decides how to dial.

- the Unix socket (``local=True`` and the master's socket is usable from here): plaintext, the
  socket file is the owner's alone (0600);
- else the TCP address: TLS pinned to the run's certificate when the master runs with ``--tls``,
  plaintext otherwise.
The token travels as metadata on every call either way (the master's interceptor checks it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc

from .workdir import MasterAddress

Options = Sequence[tuple[str, Any]]


def target(master: MasterAddress, local: bool) -> str:
    return master.socket if local and master.socket else master.address


def _credentials(master: MasterAddress, local: bool) -> grpc.ChannelCredentials | None:
    if (local and master.socket) or master.tls_cert is None:
        return None
    return grpc.ssl_channel_credentials(root_certificates=master.tls_cert)


def channel(master: MasterAddress, options: Options, *, local: bool = True) -> grpc.Channel:
    creds = _credentials(master, local)
    t = target(master, local)
    if creds is None:
        return grpc.insecure_channel(t, options=options)
    return grpc.secure_channel(t, creds, options=options)


def aio_channel(master: MasterAddress, options: Options, *, local: bool = False) -> grpc.aio.Channel:
    creds = _credentials(master, local)
    t = target(master, local)
    if creds is None:
        return grpc.aio.insecure_channel(t, options=options)
    return grpc.aio.secure_channel(t, creds, options=options)
