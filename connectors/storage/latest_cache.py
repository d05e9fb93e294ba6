"""Latest record per (kind, market) in Redis, shared by every API replica; kinds: candle, indicators, signal, ..."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import redis.asyncio

from connectors.storage.redis_keys import RedisKeys, decode_record, encode_record
from schemas.errors import ConfigError


class LatestCache:
    """Hash ``keys.latest(kind, market)`` = {data: JSON, updated_at_ns}; set ``keys.latest_index(kind)`` of markets."""

    def __init__(self, client: redis.asyncio.Redis, keys: RedisKeys | None = None,
                 ttl_s: float | None = None) -> None:
        if ttl_s is not None and ttl_s <= 0:
            raise ConfigError(f"LatestCache ttl_s must be positive or None (no expiry), got {ttl_s}")
        self._redis = client
        self._keys = keys or RedisKeys()
        self._ttl_ms = None if ttl_s is None else max(1, round(ttl_s * 1000))

    @classmethod
    def from_url(cls, url: str, keys: RedisKeys | None = None, ttl_s: float | None = None) -> LatestCache:
        """A cache with its own client for ``url``."""
        return cls(redis.asyncio.Redis.from_url(url, decode_responses=True), keys, ttl_s)

    async def put(self, kind: str, market: str, record: dict[str, Any]) -> None:
        """Replace the latest record of (kind, market)."""
        await self.put_many(kind, {market: record})

    async def put_many(self, kind: str, records: Mapping[str, dict[str, Any]]) -> None:
        """Replace the latest records of several markets of one kind in one round trip."""
        if not records:
            return
        now = time.time_ns()
        index = self._keys.latest_index(kind)
        async with self._redis.pipeline(transaction=False) as pipe:
            for market, record in records.items():
                key = self._keys.latest(kind, market)
                pipe.hset(key, mapping={"data": encode_record(record), "updated_at_ns": now})
                if self._ttl_ms is not None:
                    pipe.pexpire(key, self._ttl_ms)
            pipe.sadd(index, *records)
            if self._ttl_ms is not None:
                # the index outlives no market: it expires with the last one written
                pipe.pexpire(index, self._ttl_ms)
            await pipe.execute()

    async def get(self, kind: str, market: str) -> dict[str, Any] | None:
        """The latest record of (kind, market), or None."""
        data = await self._redis.hget(self._keys.latest(kind, market), "data")
        return None if data is None else decode_record(data)

    async def all(self, kind: str) -> dict[str, dict[str, Any]]:
        """Every market's latest record of a kind, by market (sorted)."""
        index = self._keys.latest_index(kind)
        markets = sorted(_text(m) for m in await self._redis.smembers(index))
        if not markets:
            return {}
        async with self._redis.pipeline(transaction=False) as pipe:
            for market in markets:
                pipe.hget(self._keys.latest(kind, market), "data")
            values = await pipe.execute()
        gone = [m for m, v in zip(markets, values) if v is None]
        if gone:
            # records that expired (TTL) leave their market in the index: tidy it on read
            await self._redis.srem(index, *gone)
        return {m: decode_record(v) for m, v in zip(markets, values) if v is not None}

    async def markets(self, kind: str) -> list[str]:
        """Markets listed in the index of a kind (may include just-expired ones), sorted."""
        return sorted(_text(m) for m in await self._redis.smembers(self._keys.latest_index(kind)))

    async def close(self) -> None:
        """Close the client."""
        await self._redis.aclose()


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
