"""LatestCache: latest record per (kind, market), the market index, expiry."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from connectors.storage.latest_cache import LatestCache
from connectors.storage.redis_keys import RedisKeys
from schemas.errors import ConfigError
from tests.storage.redis_fixtures import redis_keys, redis_url  # noqa: F401  (fixtures)

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(loop_scope="session")
async def cache(redis_url: str, redis_keys: RedisKeys) -> AsyncIterator[LatestCache]:  # noqa: F811
    c = LatestCache.from_url(redis_url, redis_keys)
    yield c
    await c.close()


async def test_put_get_all(cache: LatestCache) -> None:
    assert await cache.get("candle", "BTC-USDT") is None and await cache.all("candle") == {}
    await cache.put("candle", "BTC-USDT", {"open_ts": 1, "close": 10.5})
    await cache.put("candle", "BTC-USDT", {"open_ts": 2, "close": 11.0})
    await cache.put("candle", "binance:ETH/USDT", {"open_ts": 2, "close": float("nan")})
    await cache.put("signal", "BTC-USDT", {"side": "long"})
    assert await cache.get("candle", "BTC-USDT") == {"open_ts": 2, "close": 11.0}
    assert await cache.all("candle") == {"BTC-USDT": {"open_ts": 2, "close": 11.0},
                                         "binance:ETH/USDT": {"open_ts": 2, "close": None}}
    assert await cache.markets("signal") == ["BTC-USDT"]


async def test_put_many(cache: LatestCache) -> None:
    await cache.put_many("indicators", {f"M{i}": {"rsi_14": 50.0 + i} for i in range(20)})
    await cache.put_many("indicators", {})
    got = await cache.all("indicators")
    assert len(got) == 20 and got["M7"] == {"rsi_14": 57.0}


async def test_records_expire_and_leave_the_index(redis_url: str, redis_keys: RedisKeys) -> None:  # noqa: F811
    cache = LatestCache.from_url(redis_url, redis_keys, ttl_s=0.15)
    try:
        await cache.put("signal", "A", {"n": 1})
        await asyncio.sleep(0.1)
        await cache.put("signal", "B", {"n": 2})
        await asyncio.sleep(0.1)  # A expired, B not yet
        assert await cache.get("signal", "A") is None
        assert await cache.all("signal") == {"B": {"n": 2}}
        assert await cache.markets("signal") == ["B"]
    finally:
        await cache.close()
    with pytest.raises(ConfigError):
        LatestCache.from_url(redis_url, redis_keys, ttl_s=0)
