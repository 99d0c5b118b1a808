"""pj.client: the Python API (``from pj.client import Client``), the job-file parser and the CLI.

Names are loaded on first use, so that ``import pj.client.jobfile`` stays free of grpc.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .aio import AsyncClient
    from .api import Client, JobFileWarning, WatchStream
    from .cluster import ClusterError, LocalCluster
    from .errors import (
        AuthError,
        InvalidJobError,
        MasterNotFound,
        MasterUnreachable,
        PJError,
        PJTimeout,
        UnknownJobError,
        WatchDropped,
    )
    from .executor import CallError, CallFuture, CallTooBig, DependencyFailed, Executor, RemoteTraceback

_API = ("Client", "JobFileWarning", "WatchStream")
_AIO = ("AsyncClient",)
_CLUSTER = ("ClusterError", "LocalCluster")
_EXECUTOR = ("CallError", "CallFuture", "CallTooBig", "DependencyFailed", "Executor", "RemoteTraceback")
_ERRORS = (
    "AuthError",
    "InvalidJobError",
    "MasterNotFound",
    "MasterUnreachable",
    "PJError",
    "PJTimeout",
    "UnknownJobError",
    "WatchDropped",
)
__all__ = [
    "AsyncClient",
    "AuthError",
    "CallError",
    "CallFuture",
    "CallTooBig",
    "Client",
    "ClusterError",
    "DependencyFailed",
    "Executor",
    "InvalidJobError",
    "JobFileWarning",
    "LocalCluster",
    "MasterNotFound",
    "MasterUnreachable",
    "PJError",
    "PJTimeout",
    "RemoteTraceback",
    "UnknownJobError",
    "WatchDropped",
    "WatchStream",
]


def __getattr__(name: str) -> Any:
    if name in _API:
        from . import api

        return getattr(api, name)
    if name in _AIO:
        from . import aio

        return getattr(aio, name)
    if name in _CLUSTER:
        from . import cluster

        return getattr(cluster, name)
    if name in _EXECUTOR:
        from . import executor

        return getattr(executor, name)
    if name in _ERRORS:
        from . import errors

        return getattr(errors, name)
    raise AttributeError(f"module 'pj.client' has no attribute {name!r}")
