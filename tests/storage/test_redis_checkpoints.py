"""Checkpoints: exact round trip of state bytes and offsets, increasing epochs, sync and async stores agree."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
import redis
import redis.asyncio

from connectors.storage.checkpoints import (
    Checkpoint,
    RedisCheckpointStore,
    SyncCheckpointStore,
)
from connectors.storage.redis_keys import RedisKeys
from schemas.errors import ConfigError, InputError
from tests.storage.redis_fixtures import redis_keys, redis_url  # noqa: F401  (fixtures)

ASYNC = pytest.mark.asyncio(loop_scope="session")

STATE = bytes(range(256)) * 3 + b"\x00\r\n"
OFFSETS = {"binance": 2**70 + 1, "file:/data/a.csv": 123, "chain": {"block": 19_000_000, "hash": "0xab"},
           "trades": [1, 2, 3]}


@pytest_asyncio.fixture(loop_scope="session")
async def store(redis_url: str, redis_keys: RedisKeys) -> AsyncIterator[RedisCheckpointStore]:  # noqa: F811
    s = RedisCheckpointStore.from_url(redis_url, redis_keys)
    yield s
    await s.close()


@pytest.fixture
def sync_store(redis_url: str, redis_keys: RedisKeys) -> Iterator[SyncCheckpointStore]:  # noqa: F811
    s = SyncCheckpointStore.from_url(redis_url, redis_keys)
    yield s
    s.close()


@ASYNC
async def test_round_trip_is_exact_and_epochs_increase(store: RedisCheckpointStore) -> None:
    assert await store.load("live", 0) is None
    assert await store.save("live", 0, STATE, OFFSETS) == 1
    cp = await store.load("live", 0)
    assert isinstance(cp, Checkpoint)
    assert (cp.pipeline, cp.shard, cp.state, cp.offsets, cp.epoch) == ("live", 0, STATE, OFFSETS, 1)
    assert cp.saved_at_ns > 1_600_000_000 * 10**9
    assert await store.save("live", 0, b"", {"binance": 7}) == 2
    cp2 = await store.load("live", 0)
    assert (cp2.state, cp2.offsets, cp2.epoch) == (b"", {"binance": 7}, 2)
    assert cp2.saved_at_ns >= cp.saved_at_ns


@ASYNC
async def test_shards_and_delete(store: RedisCheckpointStore) -> None:
    for shard in (3, 0, 11):
        await store.save("replay", shard, b"s%d" % shard, {"file": shard})
    await store.save("other", 1, b"x", {})
    assert await store.shards("replay") == [0, 3, 11]
    assert await store.delete("replay") == 3
    assert await store.shards("replay") == [] and await store.load("replay", 3) is None
    assert (await store.load("other", 1)).state == b"x"  # other pipelines untouched
    assert await store.delete("replay") == 0
    # epochs start again after a delete
    assert await store.save("replay", 0, b"", {}) == 1


def test_sync_store_round_trip(sync_store: SyncCheckpointStore) -> None:
    assert sync_store.load("live", 2) is None
    assert [sync_store.save("live", 2, STATE, OFFSETS) for _ in range(3)] == [1, 2, 3]
    cp = sync_store.load("live", 2)
    assert (cp.state, cp.offsets, cp.epoch) == (STATE, OFFSETS, 3)
    assert sync_store.shards("live") == [2]
    assert sync_store.delete("live") == 1 and sync_store.load("live", 2) is None


@ASYNC
async def test_sync_and_async_stores_share_one_format(store: RedisCheckpointStore,
                                                      sync_store: SyncCheckpointStore) -> None:
    sync_store.save("live", 5, STATE, OFFSETS)
    assert await store.save("live", 5, STATE[:10], {"binance": 1}) == 2
    cp = sync_store.load("live", 5)
    assert (cp.state, cp.offsets, cp.epoch) == (STATE[:10], {"binance": 1}, 2)
    assert await store.load("live", 5) == cp


@ASYNC
async def test_bad_arguments_are_rejected(store: RedisCheckpointStore, redis_url: str) -> None:  # noqa: F811
    with pytest.raises(InputError, match="bytes"):
        await store.save("live", 0, "text", {})
    with pytest.raises(InputError, match="str keys"):
        await store.save("live", 0, b"", {1: 2})
    with pytest.raises(InputError, match="JSON"):
        await store.save("live", 0, b"", {"a": float("nan")})
    with pytest.raises(ConfigError):
        await store.save("live", -1, b"", {})
    assert await store.shards("live") == []  # nothing half-written
    with pytest.raises(ConfigError, match="decode_responses"):
        RedisCheckpointStore(redis.asyncio.Redis.from_url(redis_url, decode_responses=True))
    with pytest.raises(ConfigError, match="decode_responses"):
        SyncCheckpointStore(redis.Redis.from_url(redis_url, decode_responses=True))
