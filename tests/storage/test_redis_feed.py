"""RedisFeed on the shared Redis: stream order and cap, live pub/sub, resuming reads, stats."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
import redis.asyncio

from connectors.storage.redis_feed import RedisFeed
from connectors.storage.redis_keys import RedisKeys, encode_record
from schemas.errors import ConfigError, InputError
from tests.storage.redis_fixtures import aredis, redis_keys, redis_url  # noqa: F401  (fixtures)

pytestmark = pytest.mark.asyncio(loop_scope="session")


def rows(lo: int, hi: int, market: str = "BTC-USDT") -> list[dict]:
    return [{"market": market, "seq": i, "close": 100.0 + i} for i in range(lo, hi)]


@pytest_asyncio.fixture(loop_scope="session")
async def feed(redis_url: str, redis_keys: RedisKeys) -> AsyncIterator[RedisFeed]:  # noqa: F811
    f = RedisFeed.from_url(redis_url, keys=redis_keys, maxlen=1000)
    yield f
    await f.close()


async def test_publish_appends_in_order(feed: RedisFeed, aredis: redis.asyncio.Redis) -> None:  # noqa: F811
    await feed.publish("candles", rows(0, 5))
    await feed.publish("candles", rows(5, 8))
    stream = await aredis.xrange(feed.keys.feed("candles"))
    assert [json.loads(f[b"data"])["seq"] for _, f in stream] == list(range(8))
    # the stream value is the canonical encoding, byte for byte
    assert stream[0][1][b"data"].decode() == encode_record(rows(0, 1)[0])
    assert feed.stats() == {"published": 8, "backlog": 0, "dropped": 0, "reconnects": 0, "errors": 0,
                            "last_error": None}


async def test_stream_is_capped(redis_url: str, redis_keys: RedisKeys,  # noqa: F811
                                aredis: redis.asyncio.Redis) -> None:  # noqa: F811
    async with RedisFeed.from_url(redis_url, keys=redis_keys, maxlen=100) as feed:
        for lo in range(0, 2000, 200):
            await feed.publish("signals", rows(lo, lo + 200))
        length = await aredis.xlen(redis_keys.feed("signals"))
        # MAXLEN ~ trims whole stream nodes (100 entries by default): at least maxlen, at most about a node more
        assert 100 <= length <= 100 + 100
        assert [r["seq"] for _, r in await feed.tail("signals", 3)] == [1997, 1998, 1999]


async def test_subscribers_receive_items_live(feed: RedisFeed, aredis: redis.asyncio.Redis) -> None:  # noqa: F811
    pubsub = aredis.pubsub()
    await pubsub.subscribe(feed.keys.live("signals"))
    try:
        assert (await pubsub.get_message(timeout=1.0))["type"] == "subscribe"
        await feed.publish("signals", rows(0, 4))
        got = []
        while len(got) < 4:
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=2.0)
            assert msg is not None, f"only {len(got)} of 4 live messages arrived"
            got.append(msg["data"].decode())
        assert got == [encode_record(r) for r in rows(0, 4)]
    finally:
        await pubsub.aclose()


async def test_read_resumes_after_an_id(feed: RedisFeed) -> None:
    await feed.publish("candles", rows(0, 10))
    first = await feed.read("candles", count=4)
    assert [r["seq"] for _, r in first] == [0, 1, 2, 3]
    rest = await feed.read("candles", after_id=first[-1][0])  # exclusive: the last one seen is not repeated
    assert [r["seq"] for _, r in rest] == list(range(4, 10))
    assert await feed.read("candles", after_id=rest[-1][0]) == []
    await feed.publish("candles", rows(10, 12))
    assert [r["seq"] for _, r in await feed.read("candles", after_id=rest[-1][0])] == [10, 11]
    assert await feed.read("alerts") == []  # a channel nobody published on yet


async def test_blocking_read_wakes_on_publish(feed: RedisFeed) -> None:
    await feed.publish("alerts", rows(0, 1))
    (last_id, _), = await feed.read("alerts")
    waiter = asyncio.create_task(feed.read("alerts", after_id=last_id, block_ms=3000))
    await asyncio.sleep(0.05)
    await feed.publish("alerts", rows(1, 3))
    assert [r["seq"] for _, r in await asyncio.wait_for(waiter, 5)] == [1, 2]
    assert await feed.read("alerts", after_id="$", block_ms=20) == []
    with pytest.raises(ConfigError, match="socket timeout"):
        await feed.read("alerts", block_ms=60_000)


async def test_tail_is_oldest_first(feed: RedisFeed) -> None:
    await feed.publish("structure", rows(0, 6))
    assert [r["seq"] for _, r in await feed.tail("structure", 2)] == [4, 5]
    assert [r["seq"] for _, r in await feed.tail("structure", 100)] == list(range(6))


async def test_concurrent_publishers_keep_each_call_in_order(feed: RedisFeed) -> None:
    calls = [feed.publish("candles", rows(10 * i, 10 * i + 10, market=f"M{i % 3}")) for i in range(20)]
    await asyncio.gather(*calls)
    items = [r for _, r in await feed.read("candles", count=1000)]
    assert sorted(r["seq"] for r in items) == list(range(200))
    for i in range(20):  # the ten items of one call are contiguous and in order
        pos = [r["seq"] for r in items].index(10 * i)
        assert [r["seq"] for r in items[pos:pos + 10]] == list(range(10 * i, 10 * i + 10))
    assert feed.stats()["published"] == 200


async def test_bad_input_is_rejected_before_queueing(feed: RedisFeed) -> None:
    with pytest.raises(ConfigError):
        await feed.publish("bad:channel", rows(0, 1))
    with pytest.raises(InputError):
        await feed.publish("candles", [{"ok": 1}, {"bad": object()}])
    assert feed.stats()["backlog"] == 0 and feed.stats()["published"] == 0


async def test_a_permanent_error_drops_the_batch_and_the_feed_goes_on(
        feed: RedisFeed, aredis: redis.asyncio.Redis) -> None:  # noqa: F811
    await aredis.set(feed.keys.feed("alerts"), "not a stream")
    await feed.publish("alerts", rows(0, 3))
    stats = feed.stats()
    assert (stats["dropped"], stats["errors"], stats["backlog"]) == (3, 1, 0)
    assert "WRONGTYPE" in stats["last_error"]
    await feed.publish("signals", rows(0, 2))
    assert [r["seq"] for _, r in await feed.read("signals")] == [0, 1]
