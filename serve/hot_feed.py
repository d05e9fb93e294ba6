"""Keeps a replica's :class:`~serve.hot_cache.ResponseCache` current: reads the live feed's Redis Streams
(candles, signals, structure, alerts) and marks the markets each record touches as changed.

Streams rather than pub/sub: the watcher starts from each stream's last entry, so no record
published after it starts is missed while it reads. If the connection drops, changes may pass
unseen: every cached answer is dropped and nothing is cached until the watcher reads again.
"""

from __future__ import annotations

import asyncio
import logging

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from connectors.storage.redis_keys import RedisKeys
from serve.hot_cache import ResponseCache

log = logging.getLogger(__name__)

KINDS = ("candles", "signals", "structure", "alerts")
BLOCK_MS = 1000
COUNT = 5000


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


class StreamWatcher:
    """One task per replica: XREAD on the feed streams, calling ``cache.changed(kind, market)`` per record."""

    def __init__(self, redis_url: str, keys: RedisKeys, cache: ResponseCache) -> None:
        self._redis = aioredis.Redis.from_url(redis_url, socket_timeout=(BLOCK_MS / 1000) + 5,
                                              socket_connect_timeout=2)
        self._names = {keys.feed(k): k for k in KINDS}
        self.cache = cache
        self._task: asyncio.Task | None = None
        self.records = 0
        self.errors = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="hot-read-watcher")

    async def _last_ids(self) -> dict[str, str]:
        ids = {}
        for name in self._names:
            last = await self._redis.xrevrange(name, count=1)
            ids[name] = _text(last[0][0]) if last else "0-0"
        return ids

    async def _run(self) -> None:
        delay = 0.1
        while True:
            try:
                ids = await self._last_ids()
                # from here on every change is seen: answers computed now may be kept
                self.cache.live = True
                delay = 0.1
                while True:
                    reply = await self._redis.xread(ids, count=COUNT, block=BLOCK_MS)
                    for stream, rows in _streams(reply):
                        stream = _text(stream)
                        kind = self._names[stream]
                        for entry_id, fields in rows:
                            ids[stream] = _text(entry_id)
                            self.records += 1
                            self.cache.changed(kind, _market(fields))
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as e:
                self.errors += 1
                if self.cache.live:
                    log.warning("hot-read cache off: the live feed is unreachable (%s); reading from storage", e)
                self.cache.live = False
                self.cache.forget_all()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - stopping, whatever it raised
                pass
            self._task = None
        self.cache.live = False
        await self._redis.aclose()


def _streams(reply) -> list:
    """[(stream, [(id, fields), ...]), ...] from an XREAD reply in the RESP2 or RESP3 shape."""
    if not reply:
        return []
    if isinstance(reply, dict):
        return [(k, v[0] if len(v) == 1 and isinstance(v[0], list) else v) for k, v in reply.items()]
    return [(k, v) for k, v in reply]


def _market(fields: dict) -> str | None:
    data = fields.get(b"data", fields.get("data"))
    if data is None:
        return None
    try:
        market = orjson.loads(data).get("market")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return market if isinstance(market, str) else None
