"""The contract every keyed operator follows, in-process or inside a shard actor."""

from __future__ import annotations

import pickle
from typing import Any, Protocol, runtime_checkable

from schemas.errors import StateError

SNAPSHOT_FORMAT = 1


@runtime_checkable
class Operator(Protocol):
    """A pure, keyed stream operator: state per key, batches in, batches out, no I/O."""

    name: str
    version: str

    def update(self, batch: Any) -> Any:
        """Consume one micro-batch and return what it made final (closed candles, events, signals)."""

    def flush(self) -> Any:
        """End of stream: return what is still open (e.g. the last forming candles), or None."""

    def snapshot(self) -> bytes:
        """Serialise all per-key state."""

    def restore(self, data: bytes) -> None:
        """Replace all per-key state with a snapshot taken by the same operator."""

    def reset(self) -> None:
        """Forget every key, as if freshly built."""


def pack_state(op: Operator, state: dict) -> bytes:
    """Snapshot bytes tagged with the operator's name and version, so a mismatch fails loudly."""
    return pickle.dumps({"format": SNAPSHOT_FORMAT, "operator": op.name, "version": op.version,
                         "state": state}, protocol=5)


def unpack_state(op: Operator, data: bytes) -> dict:
    """Inverse of ``pack_state``; raises StateError when the snapshot belongs to another operator."""
    try:
        payload = pickle.loads(data)
    except Exception as e:  # a corrupt checkpoint must say so, not crash obscurely
        raise StateError(f"{op.name}: snapshot is not readable: {e}") from e
    if payload.get("format") != SNAPSHOT_FORMAT or payload.get("operator") != op.name:
        raise StateError(f"{op.name}: snapshot was written by {payload.get('operator')!r} "
                         f"format {payload.get('format')!r}; cannot restore")
    if payload.get("version") != op.version:
        raise StateError(f"{op.name}: snapshot version {payload.get('version')!r} != {op.version!r}")
    return payload["state"]
