"""Redis restarts: the engine keeps publishing, nothing escapes, the backlog is bounded, the feed resumes."""

from __future__ import annotations

import asyncio
import json
import secrets

import pytest
import redis.asyncio
from redis.exceptions import ConnectionError as RedisConnectionError

from connectors.storage.redis_feed import RedisFeed
from connectors.storage.redis_keys import RedisKeys
from tests.storage.redis_fixtures import RedisServer, private_redis  # noqa: F401  (fixture)

pytestmark = pytest.mark.asyncio(loop_scope="session")


def rows(lo: int, hi: int) -> list[dict]:
    return [{"market": "ETH-USDT", "seq": i} for i in range(lo, hi)]


def fresh_keys() -> RedisKeys:
    return RedisKeys(f"test-{secrets.token_hex(6)}")


async def test_feed_survives_a_redis_restart(private_redis: RedisServer) -> None:  # noqa: F811
    private_redis.start()
    keys = fresh_keys()
    feed = RedisFeed.from_url(private_redis.url, keys=keys, backoff_initial_s=0.01, backoff_max_s=0.05)
    reader = RedisFeed.from_url(private_redis.url, keys=keys)  # what a WebSocket gateway holds
    live = redis.asyncio.Redis.from_url(private_redis.url)
    try:
        await feed.publish("candles", rows(0, 50))
        await feed.publish("signals", rows(0, 5))
        last_seen = (await reader.read("candles"))[-1][0]

        private_redis.stop()
        for lo in range(50, 350, 10):  # the engine keeps running through the outage
            await feed.publish("candles", rows(lo, lo + 10))
            await feed.publish("signals", rows(lo // 10, lo // 10 + 1))
            await asyncio.sleep(0.002)
        stats = feed.stats()
        assert stats["backlog"] == 300 + 30 and stats["published"] == 55 and stats["dropped"] == 0
        assert stats["errors"] >= 1 and stats["last_error"].startswith("ConnectionError")
        with pytest.raises(RedisConnectionError):
            await reader.read("candles", after_id=last_seen)

        private_redis.start()  # same port, empty: no persistence
        pubsub = live.pubsub()
        await pubsub.subscribe(keys.live("candles"))
        await pubsub.get_message(timeout=1.0)  # the subscribe confirmation
        # a client resuming from the last id it saw, waiting for the feed to come back
        waiter = asyncio.create_task(reader.read("candles", after_id=last_seen, count=10_000, block_ms=5000))
        await asyncio.sleep(0.05)

        assert await feed.flush(timeout_s=5.0)
        await feed.publish("candles", rows(350, 360))

        resumed = await asyncio.wait_for(waiter, 5.0)
        assert [r["seq"] for _, r in resumed][:300] == list(range(50, 350))
        # the outage items arrive in order; ids after the restart sort after the ids seen before it
        after = await reader.read("candles", after_id=last_seen, count=10_000)
        assert [r["seq"] for _, r in after] == list(range(50, 360))
        assert [r["seq"] for _, r in await reader.read("signals")] == list(range(5, 35))
        got = []
        while len(got) < 310:
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=2.0)
            assert msg is not None, f"live feed stopped after {len(got)} of 310 messages"
            got.append(json.loads(msg["data"])["seq"])
        assert got == list(range(50, 360))
        stats = feed.stats()
        assert stats["backlog"] == 0 and stats["published"] == 55 + 330 + 10 and stats["dropped"] == 0
        assert stats["reconnects"] == 1
        await pubsub.aclose()
    finally:
        await live.aclose()
        await reader.close()
        await feed.close(flush_timeout_s=0.0)


async def test_backlog_bound_drops_the_oldest_and_counts_them(private_redis: RedisServer) -> None:  # noqa: F811
    keys = fresh_keys()
    # a long backoff: after the first failure, publishes only queue until flush() or the backoff ends
    feed = RedisFeed.from_url(private_redis.url, keys=keys, buffer_limit=50, backoff_initial_s=30.0,
                              backoff_max_s=30.0)
    try:  # the server is not running yet: Redis is down from the start
        for lo, hi in [(0, 7), (7, 40), (40, 41), (41, 120)]:
            await feed.publish("alerts", rows(lo, hi))
            assert feed.stats()["backlog"] == min(hi, 50)
        assert feed.stats()["errors"] == 1  # one try, then backoff: no connection attempt per publish
        assert not await feed.flush()  # an explicit flush tries at once
        stats = feed.stats()
        assert (stats["backlog"], stats["dropped"], stats["published"], stats["errors"]) == (50, 70, 0, 2)

        private_redis.start()
        assert await feed.flush(timeout_s=5.0)
        assert [r["seq"] for _, r in await feed.read("alerts")] == list(range(70, 120))
        stats = feed.stats()
        assert (stats["backlog"], stats["dropped"], stats["published"], stats["reconnects"]) == (0, 70, 50, 1)
    finally:
        await feed.close(flush_timeout_s=0.0)


async def test_one_call_larger_than_the_bound_is_sent_whole_when_redis_is_up(
        private_redis: RedisServer) -> None:  # noqa: F811
    private_redis.start()
    feed = RedisFeed.from_url(private_redis.url, keys=fresh_keys(), buffer_limit=10, chunk_size=25)
    try:
        await feed.publish("candles", rows(0, 100))
        assert [r["seq"] for _, r in await feed.read("candles")] == list(range(100))
        assert feed.stats()["dropped"] == 0 and feed.stats()["published"] == 100
    finally:
        await feed.close()
