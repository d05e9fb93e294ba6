"""Every Redis key name and value encoding of the engine, in one place.

Keys are ``{namespace}:v1:{area}:...``. The version segment changes when a value format changes,
so an old and a new deployment can share one Redis without reading each other's data; the
namespace lets tests and several deployments share one Redis as well.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from schemas.errors import ConfigError, InputError

VERSION = "v1"
# the channels the engine publishes on (feed streams and pub/sub share these names)
CHANNELS = ("candles", "signals", "structure", "alerts")

# segments that are followed by more segments must not contain ':' (or 'a:b' + 'c' would equal 'a' + 'b:c')
_SEGMENT = re.compile(r"^[A-Za-z0-9_.\-]+$")


def _segment(what: str, value: str) -> str:
    if not isinstance(value, str) or not _SEGMENT.match(value):
        raise ConfigError(f"Redis key {what} {value!r} is invalid: use letters, digits, '_', '.' or '-' only")
    return value


def _last(what: str, value: str) -> str:
    # the last segment (market, API key id, ...) may hold any text, ':' included, but not nothing
    if not isinstance(value, str) or not value:
        raise ConfigError(f"Redis key {what} must be a non-empty string, got {value!r}")
    return value


@dataclass(frozen=True)
class RedisKeys:
    """Builds the key and channel names of one namespace, e.g. ``RedisKeys("ci").feed("candles")``."""

    namespace: str = "ci"

    def __post_init__(self) -> None:
        _segment("namespace", self.namespace)

    @property
    def prefix(self) -> str:
        """``{namespace}:v1:`` — every key of this namespace and version starts with it."""
        return f"{self.namespace}:{VERSION}:"

    def pattern(self) -> str:
        """SCAN pattern matching every key of this namespace and version."""
        return self.prefix + "*"

    def feed(self, channel: str) -> str:
        """Stream holding the recent items of a channel (capped, for resuming clients)."""
        return f"{self.prefix}feed:{_segment('channel', channel)}"

    def live(self, channel: str) -> str:
        """Pub/sub channel carrying the same items as ``feed(channel)`` as they are published."""
        return f"{self.prefix}live:{_segment('channel', channel)}"

    def checkpoint(self, pipeline: str, shard: int) -> str:
        """Hash with one shard's snapshot, source offsets, save time and epoch."""
        if isinstance(shard, bool) or not isinstance(shard, int) or shard < 0:
            raise ConfigError(f"checkpoint shard must be a non-negative int, got {shard!r}")
        return f"{self.prefix}ckpt:{_segment('pipeline', pipeline)}:{shard}"

    def checkpoint_index(self, pipeline: str) -> str:
        """Set of the shard numbers a pipeline has checkpoints for."""
        return f"{self.prefix}idx:ckpt:{_segment('pipeline', pipeline)}"

    def latest(self, kind: str, market: str) -> str:
        """Hash with the latest record of a kind (candle, indicators, signal, ...) for a market."""
        return f"{self.prefix}latest:{_segment('kind', kind)}:{_last('market', market)}"

    def latest_index(self, kind: str) -> str:
        """Set of the markets that have a latest record of a kind."""
        return f"{self.prefix}idx:latest:{_segment('kind', kind)}"

    def auth_events(self) -> str:
        """Pub/sub channel carrying revocations (keys, users, sessions, signing keys) to every API process."""
        return f"{self.prefix}auth:events"

    def rate_limit(self, name: str, key: str) -> str:
        """Hash with one token bucket's tokens and last refill time."""
        return f"{self.prefix}rl:{_segment('name', name)}:{_last('key', key)}"


def encode_record(record: dict[str, Any]) -> str:
    """Canonical compact JSON of a record: sorted keys, no spaces, NaN and infinities as null."""
    try:
        return json.dumps(_finite(record), sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as e:
        raise InputError(f"record is not JSON-serialisable ({e}); pass plain dicts, e.g. "
                         f"model.model_dump(mode='json')") from e


def decode_record(data: str | bytes) -> dict[str, Any]:
    """Inverse of :func:`encode_record`."""
    return json.loads(data)


def _finite(value: Any) -> Any:
    # JSON has no NaN: gap candles and warm-up indicators carry null, as in the JSONL sink
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
