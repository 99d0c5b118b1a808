"""What the client API raises. Every message is one line a user can act on."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # grpc is loaded by the api module; the CLI may set GRPC_VERBOSITY first
    import grpc


class PJError(Exception):
    """Base of every error the client raises about the master or the jobs.

    ``kept``: for a ``submit`` of more jobs than go in one Submit (sent in parts), the names of
    the jobs in the parts before the one that failed: the master took them and runs them."""

    kept: tuple[str, ...] | list[str] = ()


class MasterNotFound(PJError):
    """No master is known: no --workdir / PJ_WORKDIR / --master, or no master.json or token there."""


class MasterUnreachable(PJError):
    """The master's address is known, but nothing answers there (gRPC UNAVAILABLE)."""


class WatchDropped(PJError):
    """The master ended a Watch whose client fell too far behind (gRPC RESOURCE_EXHAUSTED, "watch
    dropped: ..."). Waits and watches open a new one at once, which starts with the present."""


class AuthError(PJError):
    """The master refused the token (gRPC UNAUTHENTICATED or PERMISSION_DENIED)."""


class InvalidJobError(PJError, ValueError):
    """A job was rejected: by the job-file parser, or by the master (gRPC INVALID_ARGUMENT)."""


class UnknownJobError(PJError, KeyError):
    """A name the master does not know (gRPC NOT_FOUND)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class PJTimeout(PJError, TimeoutError):
    """A call or a wait ran past its deadline (gRPC DEADLINE_EXCEEDED); also a TimeoutError."""


def one_line(text: str) -> str:
    return " ".join(text.split())


def rpc_code(e: grpc.RpcError) -> grpc.StatusCode | None:
    """The status code of a failed call, blocking (a grpc.Call) or grpc.aio (an AioRpcError)."""
    code = getattr(e, "code", None)
    return code() if callable(code) else None  # type: ignore[no-any-return]


def rpc_details(e: grpc.RpcError) -> str:
    details = getattr(e, "details", None)
    return one_line((details() if callable(details) else None) or str(e))


def from_rpc_error(e: grpc.RpcError, address: str, method: str | None = None) -> PJError:
    """Map a failed call to the PJError subclass for its status code, keeping the server's message.

    ``method``: the RPC that failed; a ``Submit`` over the message size limit (gRPC
    RESOURCE_EXHAUSTED, said by the client's send or the master's receive) becomes an
    InvalidJobError telling the user to split it."""
    import grpc

    from pj.common.speccheck import MESSAGE_BYTES_MAX

    code = rpc_code(e)
    details = rpc_details(e)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and "was not kept" in details:
        return PJError(details)  # the master's disk is full: it says where and what to do
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and details.startswith("watch dropped"):
        return WatchDropped(f"the master at {address}: {details}")
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and method == "Submit":
        return InvalidJobError(
            f"the submission is larger than {MESSAGE_BYTES_MAX >> 20} MB; split it into several "
            f"submissions ({details})"
        )
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidJobError(details)
    if code == grpc.StatusCode.NOT_FOUND:
        return UnknownJobError(details)
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        return AuthError(f"the master at {address} refused the token: {details}")
    if code == grpc.StatusCode.UNAVAILABLE:
        low = details.lower()
        if "ssl" in low or "handshake" in low or "certificate" in low:
            return MasterUnreachable(
                f"the TLS handshake with the master at {address} failed: the certificate trusted here is "
                f"not that master's (another run's tls.crt?), or it does not serve TLS: {details}"
            )
        return MasterUnreachable(f"no master answers at {address}: {details}")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return PJTimeout(f"the master at {address} did not answer in time: {details}")
    name = code.name if code is not None else "UNKNOWN"
    return PJError(f"the master at {address} answered {name}: {details}")
