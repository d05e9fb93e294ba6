"""Errors of the chain package: bad data from a node, and RPC calls that failed."""

from __future__ import annotations

from schemas.errors import CryptoIntelError


class ChainDataError(CryptoIntelError, ValueError):
    """A node's answer (or a row built from one) is malformed: missing field, wrong type, bad hex, truncated."""


class RpcError(CryptoIntelError, RuntimeError):
    """A JSON-RPC call that failed for good; carries the method and the node's error code and message."""

    def __init__(self, method: str, message: str, code: int | None = None) -> None:
        super().__init__(f"{method}: {message}" + (f" (code {code})" if code is not None else ""))
        self.method = method
        self.code = code
        self.node_message = message


class RpcMethodNotFound(RpcError):
    """The node does not offer the method (-32601 or an equivalent message); callers may fall back."""


class RpcUnavailable(RpcError):
    """Connection errors, timeouts, 5xx or 429 answers on every attempt."""
