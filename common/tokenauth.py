"""The run's secret token on every RPC: the interceptor of the master's server and of a relay's
(a call without the token, or with another one, is refused UNAUTHENTICATED)."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from .workdir import TOKEN_METADATA_KEY


async def _deny(request: Any, context: grpc.aio.ServicerContext) -> None:
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong PJ token")


# A refusal of the same kind as the method refused: a unary handler in place of a streaming one
# would wait for a request message that a streaming caller (an agent, a client-streaming call) may
# never send or half-close, and the caller would hang instead of hearing UNAUTHENTICATED.
_DENY = {
    (False, False): grpc.unary_unary_rpc_method_handler(_deny),
    (False, True): grpc.unary_stream_rpc_method_handler(_deny),
    (True, False): grpc.stream_unary_rpc_method_handler(_deny),
    (True, True): grpc.stream_stream_rpc_method_handler(_deny),
}


class TokenInterceptor(grpc.aio.ServerInterceptor):
    """Every RPC of every service must carry the run's secret token."""

    def __init__(self, token: str) -> None:
        self._token = token.encode()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:  # no such method: let grpc answer UNIMPLEMENTED
            return handler
        for key, value in details.invocation_metadata or ():
            if key == TOKEN_METADATA_KEY:
                v = value.encode() if isinstance(value, str) else value
                if hmac.compare_digest(v, self._token):
                    return handler
                break
        return _DENY[(bool(handler.request_streaming), bool(handler.response_streaming))]
