"""Shard checkpoints in Redis: operator snapshot bytes plus the source offsets they reflect, saved atomically.

One hash per (pipeline, shard) with ``state`` (bytes), ``offsets`` (JSON), ``saved_at_ns`` and
``epoch``; a set per pipeline lists its shards. ``RedisCheckpointStore`` is async (actors, Serve),
``SyncCheckpointStore`` the same for the synchronous Ray driver; both share the encoding below.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio

from connectors.storage.redis_keys import RedisKeys
from schemas.errors import ConfigError, InputError


@dataclass(frozen=True)
class Checkpoint:
    """One shard's saved state; ``epoch`` counts the saves of that shard (1, 2, ...)."""

    pipeline: str
    shard: int
    state: bytes
    offsets: dict[str, Any]
    saved_at_ns: int
    epoch: int


# ---- encoding shared by the sync and async stores ------------------------------------------
def _check_binary(client: redis.Redis | redis.asyncio.Redis) -> None:
    if client.connection_pool.connection_kwargs.get("decode_responses"):
        raise ConfigError("checkpoint stores need a Redis client with decode_responses=False: "
                          "snapshots are binary and would be corrupted by decoding")


def _encode_offsets(offsets: dict[str, Any]) -> str:
    if not isinstance(offsets, dict) or not all(isinstance(k, str) for k in offsets):
        raise InputError("checkpoint offsets must be a dict with str keys (source name -> offset), "
                         f"got {offsets!r}")
    try:
        # integers of any size survive JSON exactly; NaN has no place in an offset
        return json.dumps(offsets, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as e:
        raise InputError(f"checkpoint offsets are not JSON-serialisable: {e}") from e


def _queue_save(pipe: Any, keys: RedisKeys, pipeline: str, shard: int, state: bytes,
                offsets: dict[str, Any]) -> None:
    """Queue the save commands on a MULTI pipeline (sync or async: queuing is the same)."""
    if not isinstance(state, (bytes, bytearray, memoryview)):
        raise InputError(f"checkpoint state must be bytes (an operator snapshot), got {type(state).__name__}")
    key = keys.checkpoint(pipeline, shard)
    pipe.hset(key, mapping={"state": bytes(state), "offsets": _encode_offsets(offsets),
                            "saved_at_ns": time.time_ns()})
    pipe.hincrby(key, "epoch", 1)
    pipe.sadd(keys.checkpoint_index(pipeline), shard)


def _epoch(results: list[Any]) -> int:
    return int(results[1])  # the HINCRBY reply


def _decode(pipeline: str, shard: int, raw: dict[bytes, bytes]) -> Checkpoint | None:
    if not raw:
        return None
    return Checkpoint(pipeline=pipeline, shard=shard, state=raw[b"state"], offsets=json.loads(raw[b"offsets"]),
                      saved_at_ns=int(raw[b"saved_at_ns"]), epoch=int(raw[b"epoch"]))


def _shard_numbers(members: set[bytes]) -> list[int]:
    return sorted(int(m) for m in members)


def _keys_to_delete(keys: RedisKeys, pipeline: str, shards: list[int]) -> list[str]:
    return [keys.checkpoint(pipeline, s) for s in shards] + [keys.checkpoint_index(pipeline)]


# ---- stores ---------------------------------------------------------------------------------
class RedisCheckpointStore:
    """Async checkpoint store on a ``redis.asyncio`` client (binary responses)."""

    def __init__(self, client: redis.asyncio.Redis, keys: RedisKeys | None = None) -> None:
        _check_binary(client)
        self._redis = client
        self._keys = keys or RedisKeys()

    @classmethod
    def from_url(cls, url: str, keys: RedisKeys | None = None) -> RedisCheckpointStore:
        """A store with its own client for ``url``."""
        return cls(redis.asyncio.Redis.from_url(url), keys)

    async def save(self, pipeline: str, shard: int, state: bytes, offsets: dict[str, Any]) -> int:
        """Save state and offsets in one MULTI/EXEC; return the shard's new epoch."""
        async with self._redis.pipeline(transaction=True) as pipe:
            _queue_save(pipe, self._keys, pipeline, shard, state, offsets)
            return _epoch(await pipe.execute())

    async def load(self, pipeline: str, shard: int) -> Checkpoint | None:
        """The shard's last checkpoint, or None if it has none."""
        return _decode(pipeline, shard, await self._redis.hgetall(self._keys.checkpoint(pipeline, shard)))

    async def shards(self, pipeline: str) -> list[int]:
        """Shard numbers with a checkpoint, ascending."""
        return _shard_numbers(await self._redis.smembers(self._keys.checkpoint_index(pipeline)))

    async def delete(self, pipeline: str) -> int:
        """Delete every checkpoint of a stopped pipeline; return how many shards had one."""
        shards = await self.shards(pipeline)
        await self._redis.delete(*_keys_to_delete(self._keys, pipeline, shards))
        return len(shards)

    async def close(self) -> None:
        """Close the client."""
        await self._redis.aclose()


class SyncCheckpointStore:
    """The same store for synchronous callers (the Ray driver), on a ``redis.Redis`` client."""

    def __init__(self, client: redis.Redis, keys: RedisKeys | None = None) -> None:
        _check_binary(client)
        self._redis = client
        self._keys = keys or RedisKeys()

    @classmethod
    def from_url(cls, url: str, keys: RedisKeys | None = None) -> SyncCheckpointStore:
        """A store with its own client for ``url``."""
        return cls(redis.Redis.from_url(url), keys)

    def save(self, pipeline: str, shard: int, state: bytes, offsets: dict[str, Any]) -> int:
        """Save state and offsets in one MULTI/EXEC; return the shard's new epoch."""
        with self._redis.pipeline(transaction=True) as pipe:
            _queue_save(pipe, self._keys, pipeline, shard, state, offsets)
            return _epoch(pipe.execute())

    def load(self, pipeline: str, shard: int) -> Checkpoint | None:
        """The shard's last checkpoint, or None if it has none."""
        return _decode(pipeline, shard, self._redis.hgetall(self._keys.checkpoint(pipeline, shard)))

    def shards(self, pipeline: str) -> list[int]:
        """Shard numbers with a checkpoint, ascending."""
        return _shard_numbers(self._redis.smembers(self._keys.checkpoint_index(pipeline)))

    def delete(self, pipeline: str) -> int:
        """Delete every checkpoint of a stopped pipeline; return how many shards had one."""
        shards = self.shards(pipeline)
        self._redis.delete(*_keys_to_delete(self._keys, pipeline, shards))
        return len(shards)

    def close(self) -> None:
        """Close the client."""
        self._redis.close()
