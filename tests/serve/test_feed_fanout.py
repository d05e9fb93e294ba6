"""The live feed at speed, against real Redis and real websockets clients: opt-in batch frames with exact
seqs, a stalled client that delays nobody, and two feed processes behind one port (SO_REUSEPORT)."""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
from typing import Any

import pytest
from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection, connect

from connectors.storage.redis_feed import RedisFeed
from connectors.storage.redis_keys import RedisKeys
from serve.feed import FeedServer
from tests.serve.test_feed import (  # noqa: F401 - fixtures
    MIN,
    SLOW,
    T0,
    accounts,
    accounts_db,
    candle,
    client,
    feed,
    keys,
    publish_burst,
    recv,
    server,
    stalled,
    subscribe,
)
from tests.storage.pg_fixtures import _admin, pg_url  # noqa: F401 - fixture
from tests.storage.redis_fixtures import redis_keys, redis_url  # noqa: F401 - fixtures

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def data_messages(ws: ClientConnection, n: int, timeout: float = 10.0) -> tuple[list[dict], list[int]]:
    """The next ``n`` data messages, arrays unpacked, and the number of messages each frame carried."""
    out: list[dict] = []
    sizes: list[int] = []
    async with asyncio.timeout(timeout):
        while len(out) < n:
            msg = json.loads(await ws.recv())
            items = msg if isinstance(msg, list) else [msg]
            if items[0]["op"] == "heartbeat":
                continue
            assert all(m["op"] == "data" for m in items), msg
            out += items
            sizes.append(len(items) if isinstance(msg, list) else 0)  # 0: a plain object
    return out, sizes


async def stream_ids(redis_url: str, key: str) -> list[str]:  # noqa: F811
    r = Redis.from_url(redis_url)
    try:
        return [seq.decode() for seq, _ in await r.xrange(key)]
    finally:
        await r.aclose()


async def test_batch_frames_are_arrays_with_exact_seqs(server: FeedServer, feed: RedisFeed,  # noqa: F811
                                                       keys: dict[str, str], redis_url: str,  # noqa: F811
                                                       redis_keys: RedisKeys) -> None:  # noqa: F811
    async with client(server, keys["enterprise"]) as batched, client(server, keys["enterprise"]) as plain:
        await batched.send(json.dumps({"op": "subscribe", "channels": ["candles:*"], "batch": "yes"}))
        assert (await recv(batched))["code"] == "bad_request"
        await batched.send(json.dumps({"op": "subscribe", "channels": ["candles:*"], "batch": True}))
        assert await recv(batched) == {"op": "subscribed", "channels": ["candles:*"], "batch": True}
        assert await subscribe(plain, ["candles:*"]) == []
        await feed.publish("candles", [candle("BINANCE:BTCUSDT", 0)])  # one alone: a plain object
        (first,), sizes = await data_messages(batched, 1)
        assert sizes == [0] and first["data"] == candle("BINANCE:BTCUSDT", 0)
        await feed.publish("candles", [candle("BINANCE:BTCUSDT", i) for i in range(1, 301)])  # one XADD batch
        got, sizes = await data_messages(batched, 300)
        plain_got, plain_sizes = await data_messages(plain, 301)
    assert max(sizes) > 1, "entries read together must come as array frames"
    assert set(plain_sizes) == {0}, "a client that did not opt in gets one object per frame"
    ids = await stream_ids(redis_url, redis_keys.feed("candles"))
    assert [m["seq"] for m in [first, *got]] == ids[-301:] == [m["seq"] for m in plain_got]
    assert [m["data"] for m in got] == [candle("BINANCE:BTCUSDT", i) for i in range(1, 301)]
    assert all(m["channel"] == "candles:*" for m in got)


@pytest.mark.parametrize("server", [{**SLOW, "max_lags": 3}], indirect=True)
async def test_stalled_client_does_not_delay_a_batch_client(server: FeedServer, feed: RedisFeed,  # noqa: F811
                                                            keys: dict[str, str]) -> None:  # noqa: F811
    n = 6000
    loop = asyncio.get_running_loop()
    async with client(server, keys["enterprise"], max_queue=None) as fast, \
            stalled(server, keys["enterprise"]) as slow:
        await fast.send(json.dumps({"op": "subscribe", "channels": ["candles:*"], "batch": True}))
        assert (await recv(fast))["batch"] is True
        await subscribe(slow, ["candles:*"])  # and never reads again
        receiving = asyncio.create_task(data_messages(fast, n, timeout=20))
        t0 = loop.time()
        await publish_burst(feed, n)
        published = loop.time() - t0
        got, _ = await receiving
        behind = loop.time() - t0 - published
        stats = server.stats()
    assert [m["data"]["open_ts"] for m in got] == [T0 + j * MIN for j in range(n)]
    assert behind < 1.0, f"the fast client finished {behind:.2f}s after the last publish"
    assert stats["closed_slow"] == 1 and stats["dropped"] > 0  # the stalled one lost its oldest, then was closed


def _serve_in_process(redis_url: str, namespace: str, port: int, ready: Any, stop: Any) -> None:  # noqa: F811
    asyncio.run(_serve(redis_url, namespace, port, ready, stop))


async def _serve(redis_url: str, namespace: str, port: int, ready: Any, stop: Any) -> None:  # noqa: F811
    from serve.accounts import Principal
    from serve.tiers import CHANNEL_KINDS, Tier

    principal = Principal("multi", "user", Tier("multi", rate_per_s=1.0, burst=1, channels=CHANNEL_KINDS,
                                                max_markets=None, history_days=0, max_ws_connections=100), "multi000")

    async def authenticate(key: str) -> Principal | None:
        return principal if key == "multi-key" else None

    srv = FeedServer(redis_url, authenticate, port=port, namespace=namespace, block_ms=200, reuse_port=True)
    await srv.start()
    ready.put(srv.port)
    await asyncio.get_running_loop().run_in_executor(None, stop.wait)
    ready.put(srv.stats()["connections"])
    await srv.stop()


async def test_two_processes_behind_one_port_deliver_exact_seqs(feed: RedisFeed, redis_url: str,  # noqa: F811
                                                                redis_keys: RedisKeys) -> None:  # noqa: F811
    ctx = mp.get_context("spawn")
    ready, stop = ctx.Queue(), ctx.Event()
    first = ctx.Process(target=_serve_in_process, args=(redis_url, redis_keys.namespace, 0, ready, stop))
    first.start()
    port = await asyncio.to_thread(ready.get, timeout=60)
    second = ctx.Process(target=_serve_in_process, args=(redis_url, redis_keys.namespace, port, ready, stop))
    second.start()
    try:
        assert await asyncio.to_thread(ready.get, timeout=60) == port
        conns = [await connect(f"ws://127.0.0.1:{port}/ws/v1/feed", additional_headers={"X-API-Key": "multi-key"},
                               open_timeout=10) for _ in range(24)]
        try:
            for i, ws in enumerate(conns):
                await ws.send(json.dumps({"op": "subscribe", "channels": ["candles:BTCUSDT" if i % 2 else "candles:*"],
                                          "batch": i % 3 == 0}))
                assert (await recv(ws))["op"] == "subscribed"
            for lo in range(0, 400, 50):
                await feed.publish("candles", [candle("BINANCE:BTCUSDT" if j % 2 else "BINANCE:ETHUSDT", j)
                                               for j in range(lo, lo + 50)])
            ids = await stream_ids(redis_url, redis_keys.feed("candles"))
            odd = ids[1::2]  # the BTCUSDT candles
            for i, ws in enumerate(conns):
                expect = odd if i % 2 else ids
                got, _ = await data_messages(ws, len(expect))
                assert [m["seq"] for m in got] == expect, f"client {i}"
        finally:
            for ws in conns:
                await ws.close()
        stop.set()
        served = [await asyncio.to_thread(ready.get, timeout=30) for _ in range(2)]
        assert sum(served) == 24 and min(served) > 0, f"connections per process {served}"
    finally:
        stop.set()
        for p in (first, second):
            await asyncio.to_thread(p.join, 30)
            if p.is_alive():
                p.kill()
