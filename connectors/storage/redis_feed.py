"""Live feed through Redis: each item goes to a capped stream (to resume from) and to pub/sub (to watch live).

Publishing never raises because Redis is down or restarting: unsent items wait in a bounded
in-memory backlog (oldest dropped first, counted) and are sent, in order, by a later publish or
``flush()`` once Redis answers again. Delivery is at-least-once: a connection lost after Redis ran
a batch but before it replied makes the batch go out twice, so readers deduplicate by the record's
natural key (rule 7).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    ConnectionError as RedisConnectionError,
)
from redis.exceptions import (
    ExecAbortError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
)
from redis.exceptions import (
    TimeoutError as RedisTimeoutError,
)

from connectors.retry import Backoff
from connectors.storage.redis_keys import RedisKeys, decode_record, encode_record
from schemas.errors import ConfigError

log = logging.getLogger(__name__)

# errors after which the same batch can succeed later (BusyLoadingError is a ConnectionError);
# EXECABORT means Redis ran none of the batch, so resending cannot duplicate anything
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    RedisConnectionError, RedisTimeoutError, ReadOnlyError, OutOfMemoryError, ExecAbortError,
    OSError, TimeoutError,
)

Entry = tuple[str, dict[str, Any]]


class RedisFeed:
    """Publishes JSON records per channel to ``keys.feed(channel)`` (stream) and ``keys.live(channel)``."""

    def __init__(self, redis: Redis, keys: RedisKeys | None = None, maxlen: int = 100_000,
                 buffer_limit: int = 100_000, chunk_size: int = 10_000, backoff_initial_s: float = 0.1,
                 backoff_max_s: float = 5.0, owns_client: bool = False) -> None:
        for name, value in (("maxlen", maxlen), ("buffer_limit", buffer_limit), ("chunk_size", chunk_size)):
            if value < 1:
                raise ConfigError(f"RedisFeed {name} must be >= 1, got {value}")
        if not 0 < backoff_initial_s <= backoff_max_s:
            raise ConfigError("RedisFeed needs 0 < backoff_initial_s <= backoff_max_s, "
                              f"got {backoff_initial_s} and {backoff_max_s}")
        self._redis = redis
        self._keys = keys or RedisKeys()
        self._maxlen = maxlen
        self._limit = buffer_limit
        self._chunk = chunk_size
        self._backoff = Backoff(backoff_initial_s, backoff_max_s)
        self._owns_client = owns_client
        self._backlog: deque[tuple[str, str]] = deque()
        self._lock = asyncio.Lock()  # one sender at a time keeps the order across concurrent publishers
        self._retry_at = 0.0
        self._failing = False
        self._stream_keys: dict[str, tuple[str, str]] = {}
        self._published = self._dropped = self._reconnects = self._errors = 0
        self._last_error: str | None = None

    @classmethod
    def from_url(cls, url: str, keys: RedisKeys | None = None, maxlen: int = 100_000,
                 buffer_limit: int = 100_000, socket_timeout_s: float = 10.0, **options: Any) -> RedisFeed:
        """A feed with its own client for ``url`` (e.g. ``redis://127.0.0.1:6379/0``); options go to __init__."""
        # no client-side retries: the feed's own backlog and backoff decide when to try again,
        # and a publish must not stall for seconds inside redis-py while Redis is down
        client = Redis.from_url(url, decode_responses=True, socket_connect_timeout=min(2.0, socket_timeout_s),
                                socket_timeout=socket_timeout_s, retry=Retry(NoBackoff(), 0))
        return cls(client, keys, maxlen, buffer_limit, owns_client=True, **options)

    @property
    def keys(self) -> RedisKeys:
        """The key names this feed writes to."""
        return self._keys

    # ---- writing --------------------------------------------------------------------------
    async def publish(self, channel: str, items: Iterable[dict[str, Any]]) -> None:
        """Append items to the channel's stream and pub/sub, in one round trip; buffers if Redis is down."""
        self._names(channel)  # reject a bad channel name now, not later inside a retry
        encoded = [(channel, encode_record(item)) for item in items]  # all or nothing on a bad item
        self._backlog.extend(encoded)
        if self._lock.locked() or time.monotonic() < self._retry_at:
            # the running sender picks the new items up; during backoff they wait for the next try
            self._trim()
            return
        await self._drain()

    async def flush(self, timeout_s: float = 0.0) -> bool:
        """Send the backlog now, retrying with backoff for up to ``timeout_s``; True when nothing is left."""
        deadline = time.monotonic() + timeout_s
        while not await self._drain():
            wait = max(0.0, self._retry_at - time.monotonic())
            if time.monotonic() + wait > deadline:
                return False
            await asyncio.sleep(wait)
        return True

    async def _drain(self) -> bool:
        """Send the backlog in chunks, oldest first; False (and backoff) when Redis fails."""
        async with self._lock:
            while self._backlog:
                chunk = [self._backlog.popleft() for _ in range(min(self._chunk, len(self._backlog)))]
                try:
                    await self._send(chunk)
                except TRANSIENT_ERRORS as e:
                    self._backlog.extendleft(reversed(chunk))
                    await self._failed(e)
                    self._trim()
                    return False
                except asyncio.CancelledError:
                    # the caller gave up waiting; the items stay queued for the next publish or flush
                    self._backlog.extendleft(reversed(chunk))
                    raise
                except RedisError as e:
                    # a permanent error (a feed key of the wrong type, ...) fails the same way every
                    # time: drop this chunk rather than block the feed behind it
                    self._dropped += len(chunk)
                    self._record_error(e)
                    log.error("Redis feed dropped %d items: %s; check the keys under %s",
                              len(chunk), self._last_error, self._keys.prefix)
                    continue
                self._published += len(chunk)
                self._recovered()
            return True

    async def _send(self, chunk: list[tuple[str, str]]) -> None:
        # MULTI/EXEC: Redis applies a chunk whole or not at all, so a retry after an abort duplicates nothing
        async with self._redis.pipeline(transaction=True) as pipe:
            for channel, data in chunk:
                stream, live = self._names(channel)
                pipe.xadd(stream, {"data": data}, maxlen=self._maxlen, approximate=True)
                pipe.publish(live, data)
            await pipe.execute()

    def _names(self, channel: str) -> tuple[str, str]:
        names = self._stream_keys.get(channel)
        if names is None:
            names = self._stream_keys[channel] = (self._keys.feed(channel), self._keys.live(channel))
        return names

    def _trim(self) -> None:
        excess = len(self._backlog) - self._limit
        for _ in range(excess):
            self._backlog.popleft()
        if excess > 0:
            self._dropped += excess

    def _record_error(self, e: BaseException) -> None:
        self._errors += 1
        self._last_error = f"{type(e).__name__}: {e}"

    async def _failed(self, e: BaseException) -> None:
        self._record_error(e)
        if not self._failing:
            log.warning("Redis feed unavailable (%s); buffering up to %d items and retrying",
                        self._last_error, self._limit)
        self._failing = True
        self._retry_at = time.monotonic() + self._backoff.next()
        # idle pooled connections still point at the old server process: open fresh ones next time
        try:
            await self._redis.connection_pool.disconnect(inuse_connections=False)
        except (RedisError, OSError):
            pass

    def _recovered(self) -> None:
        if self._failing:
            self._reconnects += 1
            log.info("Redis feed reconnected; %d items still queued", len(self._backlog))
        self._failing = False
        self._retry_at = 0.0
        self._backoff.reset()

    # ---- reading --------------------------------------------------------------------------
    async def read(self, channel: str, after_id: str = "0-0", count: int = 1000,
                   block_ms: int | None = None) -> list[Entry]:
        """Up to ``count`` stream entries after ``after_id`` (exclusive); waits up to ``block_ms`` if given."""
        key = self._keys.feed(channel)
        if block_ms is None:
            rows = await self._redis.xrange(key, min=f"({after_id}", max="+", count=count)
        else:
            timeout = self._redis.connection_pool.connection_kwargs.get("socket_timeout")
            if timeout is not None and block_ms >= timeout * 1000:
                raise ConfigError(f"block_ms={block_ms} must be below the client's socket timeout "
                                  f"({timeout} s) or the read fails with a timeout")
            reply = await self._redis.xread({key: after_id}, count=count, block=block_ms)
            rows = _xread_rows(reply)
        return [(_text(i), decode_record(fields[_field(fields)])) for i, fields in rows]

    async def tail(self, channel: str, n: int) -> list[Entry]:
        """The last ``n`` stream entries of a channel, oldest first."""
        rows = await self._redis.xrevrange(self._keys.feed(channel), max="+", min="-", count=n)
        return [(_text(i), decode_record(fields[_field(fields)])) for i, fields in reversed(rows)]

    # ---- state ----------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Counters: items published, queued (backlog), dropped; reconnects, send errors, last error."""
        return {"published": self._published, "backlog": len(self._backlog), "dropped": self._dropped,
                "reconnects": self._reconnects, "errors": self._errors, "last_error": self._last_error}

    async def close(self, flush_timeout_s: float = 1.0) -> None:
        """Try to send the backlog, then close the client if this feed created it."""
        if self._backlog and not await self.flush(flush_timeout_s):
            log.warning("Redis feed closed with %d unsent items (%s)", len(self._backlog), self._last_error)
        if self._owns_client:
            await self._redis.aclose()

    async def __aenter__(self) -> RedisFeed:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _field(fields: dict) -> str | bytes:
    # the client may or may not decode responses
    return "data" if "data" in fields else b"data"


def _xread_rows(reply: Any) -> list:
    if not reply:
        return []
    rows = next(iter(reply.values())) if isinstance(reply, dict) else reply[0][1]  # RESP3 or RESP2 shape
    # redis-py's RESP3 parser wraps the entries (tuples) in one more list
    return rows[0] if len(rows) == 1 and isinstance(rows[0], list) else rows
