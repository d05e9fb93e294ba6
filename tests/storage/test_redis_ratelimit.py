"""Token bucket: burst then deny, refill, atomic under concurrency, sensible retry times, expiry."""

from __future__ import annotations

import asyncio
import secrets

import pytest
import redis.asyncio

from connectors.storage.ratelimit import Decision, TokenBucket
from connectors.storage.redis_keys import RedisKeys
from schemas.errors import ConfigError
from tests.storage.redis_fixtures import (  # noqa: F401
    RedisServer,
    aredis,
    private_redis,
    redis_keys,
    redis_url,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_burst_then_denied_with_retry_time(aredis: redis.asyncio.Redis,  # noqa: F811
                                                 redis_keys: RedisKeys) -> None:  # noqa: F811
    bucket = TokenBucket(aredis, redis_keys, rate_per_s=1.0, burst=5, name="api")
    got = [await bucket.take("key-1") for _ in range(5)]
    assert all(d.allowed for d in got) and got[-1].remaining < 0.1
    denied = await bucket.take("key-1")
    assert denied == Decision(False, denied.remaining, denied.retry_after_ms)
    assert not denied.allowed and 800 <= denied.retry_after_ms <= 1000  # about one token at 1/s
    assert (await bucket.take("key-2")).allowed  # buckets are per key
    # a cost of 3 needs 3 tokens: about three seconds from empty
    assert 2500 <= (await bucket.take("key-1", cost=3)).retry_after_ms <= 3000


async def test_refills_over_time(aredis: redis.asyncio.Redis, redis_keys: RedisKeys) -> None:  # noqa: F811
    bucket = TokenBucket(aredis, redis_keys, rate_per_s=20.0, burst=2)
    assert (await bucket.take("k")).allowed and (await bucket.take("k")).allowed
    denied = await bucket.take("k")
    assert not denied.allowed and 0 < denied.retry_after_ms <= 50
    await asyncio.sleep(denied.retry_after_ms / 1000 + 0.01)
    assert (await bucket.take("k")).allowed
    await asyncio.sleep(0.15)  # refills up to the burst, never beyond
    got = [(await bucket.take("k")).allowed for _ in range(3)]
    assert got == [True, True, False]


async def test_atomic_under_concurrency(redis_url: str, redis_keys: RedisKeys) -> None:  # noqa: F811
    # four clients stand for four API replicas sharing one bucket
    clients = [redis.asyncio.Redis.from_url(redis_url) for _ in range(4)]
    try:
        buckets = [TokenBucket(c, redis_keys, rate_per_s=0.001, burst=50) for c in clients]
        decisions = await asyncio.gather(*(b.take("shared") for b in buckets for _ in range(50)))
    finally:
        for c in clients:
            await c.aclose()
    assert len(decisions) == 200 and sum(d.allowed for d in decisions) == 50
    assert all(d.retry_after_ms > 0 for d in decisions if not d.allowed)


async def test_bucket_key_expires_when_full_again(aredis: redis.asyncio.Redis,  # noqa: F811
                                                  redis_keys: RedisKeys) -> None:  # noqa: F811
    bucket = TokenBucket(aredis, redis_keys, rate_per_s=10.0, burst=4, name="ws")
    await bucket.take("c", cost=2)
    ttl = await aredis.pttl(redis_keys.rate_limit("ws", "c"))
    assert 150 <= ttl <= 200  # two tokens at 10/s
    await asyncio.sleep(0.25)
    assert await aredis.exists(redis_keys.rate_limit("ws", "c")) == 0
    assert (await bucket.take("c", cost=4)).allowed  # a forgotten bucket is a full one


async def test_script_is_loaded_again_after_a_flush(private_redis: RedisServer) -> None:  # noqa: F811
    private_redis.start()
    client = redis.asyncio.Redis.from_url(private_redis.url)
    try:
        bucket = TokenBucket(client, RedisKeys(f"test-{secrets.token_hex(4)}"), rate_per_s=1.0, burst=2)
        assert (await bucket.take("k")).allowed  # first call: EVALSHA misses, the script is loaded
        await client.script_flush()
        assert (await bucket.take("k")).allowed
        assert not (await bucket.take("k")).allowed
    finally:
        await client.aclose()


async def test_bad_settings_are_rejected(aredis: redis.asyncio.Redis, redis_keys: RedisKeys) -> None:  # noqa: F811
    for rate, burst in [(0, 5), (-1, 5), (1.0, 0), (1.0, 2.5)]:
        with pytest.raises(ConfigError):
            TokenBucket(aredis, redis_keys, rate_per_s=rate, burst=burst)
    with pytest.raises(ConfigError):
        TokenBucket(aredis, redis_keys, rate_per_s=1.0, burst=1, name="a:b")
    bucket = TokenBucket(aredis, redis_keys, rate_per_s=1.0, burst=3)
    for cost in (0, 4, 1.5):
        with pytest.raises(ValueError, match="cost"):
            await bucket.take("k", cost=cost)
