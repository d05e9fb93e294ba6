"""The WebSocket live feed against real Redis, real Postgres accounts and real websockets clients:
authentication, filtering, ordered seqs, gapless resume, slow clients, tier limits, heartbeats, no key in logs."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import pytest_asyncio
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from connectors.storage.redis_feed import RedisFeed
from connectors.storage.redis_keys import RedisKeys
from serve.accounts import Accounts
from serve.channels import parse_seq
from serve.feed import FeedServer
from serve.keys import new_api_key
from tests.storage.pg_fixtures import _admin, pg_url  # noqa: F401 - fixture
from tests.storage.redis_fixtures import redis_keys, redis_url  # noqa: F401 - fixtures

pytestmark = pytest.mark.asyncio(loop_scope="session")

T0 = 1_700_000_000_000_000_000
MIN = 60_000_000_000


@pytest.fixture(scope="module")
def accounts_db(pg_url: str) -> Iterator[str]:  # noqa: F811
    """One migrated database for the module: creating one per test would dominate the run time."""
    from connectors.storage.migrate import migrate
    name = f"ci_test_{secrets.token_hex(6)}"
    asyncio.run(_admin(pg_url, f'CREATE DATABASE "{name}"'))
    p = urlsplit(pg_url)
    url = urlunsplit((p.scheme, p.netloc, f"/{name}", p.query, p.fragment))
    try:
        asyncio.run(migrate(url))
        yield url
    finally:
        asyncio.run(_admin(pg_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def accounts(accounts_db: str) -> AsyncIterator[Accounts]:
    acc = await Accounts.create(accounts_db, max_size=3)
    yield acc
    await acc.close()


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def keys(accounts: Accounts) -> dict[str, str]:
    """An API key per tier: free (1 socket, candles+signals), pro (5 sockets, + structure), enterprise."""
    out = {}
    for tier in ("free", "pro", "enterprise"):
        await accounts.create_user(f"{tier}-user", tier=tier)
        out[tier] = await accounts.issue_key(f"{tier}-user")
    return out


@pytest_asyncio.fixture(loop_scope="session")
async def feed(redis_url: str, redis_keys: RedisKeys) -> AsyncIterator[RedisFeed]:  # noqa: F811
    f = RedisFeed.from_url(redis_url, keys=redis_keys, maxlen=100_000)
    yield f
    await f.close()


@pytest_asyncio.fixture(loop_scope="session")
async def server(request: pytest.FixtureRequest, redis_url: str, redis_keys: RedisKeys,  # noqa: F811
                 accounts: Accounts) -> AsyncIterator[FeedServer]:
    options: dict[str, Any] = getattr(request, "param", {})
    srv = FeedServer(redis_url, accounts.authenticate, port=0, namespace=redis_keys.namespace,
                     block_ms=200, **options)
    await srv.start()
    yield srv
    await srv.stop()


def candle(market: str, i: int, tf: str = "1m") -> dict:
    return {"market": market, "timeframe": tf, "open_ts": T0 + i * MIN, "close_ts": T0 + (i + 1) * MIN,
            "open": 100.0 + i, "high": 101.0 + i, "low": 99.0 + i, "close": 100.5 + i, "volume": 1.0 + i}


def signal(market: str, i: int) -> dict:
    return {"id": f"sig-{market}-{i}", "market": market, "timeframe": "1m", "ts": T0 + i * MIN, "kind": "trend",
            "side": "long", "strength": 0.5, "price": 100.0 + i, "reasons": ["test"]}


def url(srv: FeedServer, query: str = "") -> str:
    return f"ws://127.0.0.1:{srv.port}/ws/v1/feed{query}"


def client(srv: FeedServer, key: str | None, **options: Any) -> connect:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return connect(url(srv), additional_headers=headers, open_timeout=5, **options)


async def recv(ws: ClientConnection, timeout: float = 5.0) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def subscribe(ws: ClientConnection, channels: list[str], resume: dict | None = None) -> list[dict]:
    """Subscribe and wait for the ack; returns the error messages that came before it."""
    await ws.send(json.dumps({"op": "subscribe", "channels": channels, **({"from": resume} if resume else {})}))
    errors = []
    while True:
        msg = await recv(ws)
        if msg["op"] == "subscribed":
            return errors
        assert msg["op"] == "error", msg
        errors.append(msg)


async def data(ws: ClientConnection, n: int, timeout: float = 10.0) -> list[dict]:
    """The next ``n`` data messages (heartbeats skipped, anything else fails)."""
    out: list[dict] = []
    async with asyncio.timeout(timeout):
        while len(out) < n:
            msg = json.loads(await ws.recv())
            if msg["op"] == "heartbeat":
                continue
            assert msg["op"] == "data", msg
            out.append(msg)
    return out


async def quiet(ws: ClientConnection, wait_s: float = 0.3) -> None:
    """Assert nothing but heartbeats arrives for ``wait_s``."""
    try:
        async with asyncio.timeout(wait_s):
            while True:
                msg = json.loads(await ws.recv())
                assert msg["op"] == "heartbeat", f"unexpected message {msg}"
    except TimeoutError:
        pass


def assert_increasing(messages: list[dict]) -> None:
    seqs = [parse_seq(m["seq"]) for m in messages]
    assert all(a < b for a, b in zip(seqs, seqs[1:])), "seqs must strictly increase"


async def closed_with(ws: ClientConnection) -> int:
    with pytest.raises(ConnectionClosed) as info:
        async with asyncio.timeout(5):
            while True:
                await ws.recv()
    return info.value.rcvd.code if info.value.rcvd else -1


async def test_rejects_missing_and_wrong_keys(server: FeedServer, keys: dict[str, str]) -> None:
    for key in (None, new_api_key(), keys["free"][:-1]):
        async with client(server, key) as ws:
            assert await closed_with(ws) == 4401
    for header in ("X-API-Key", "Authorization"):
        async with connect(url(server), additional_headers={header: "Bearer nope" if header == "Authorization"
                                                            else "nope"}) as ws:
            assert await closed_with(ws) == 4401
    assert server.stats()["rejected_unauthorized"] == 5
    # the other two ways to pass a key: X-API-Key header and ?key= for browsers
    async with connect(url(server), additional_headers={"X-API-Key": keys["pro"]}) as ws:
        await ws.send(json.dumps({"op": "ping"}))
        assert (await recv(ws))["op"] == "pong"
    async with connect(url(server, f"?key={keys['pro']}")) as ws:
        await ws.send(json.dumps({"op": "ping"}))
        assert (await recv(ws))["op"] == "pong"


async def test_filters_by_market_and_sends_all_signals(server: FeedServer, feed: RedisFeed,
                                                       keys: dict[str, str]) -> None:
    async with client(server, keys["pro"]) as ws:
        assert await subscribe(ws, ["candles:BINANCE:BTCUSDT:1m", "signals:*"]) == []
        for i in range(20):
            await feed.publish("candles", [candle("BINANCE:BTCUSDT", i), candle("BINANCE:ETHUSDT", i),
                                           candle("BINANCE:BTCUSDT", i, tf="5m")])
            await feed.publish("signals", [signal("BINANCE:BTCUSDT", i), signal("BINANCE:ETHUSDT", i)])
        got = await data(ws, 60)
        await quiet(ws)
    candles = [m for m in got if m["channel"] == "candles:BINANCE:BTCUSDT:1m"]
    signals = [m for m in got if m["channel"] == "signals:*"]
    assert [c["data"] for c in candles] == [candle("BINANCE:BTCUSDT", i) for i in range(20)]
    assert [s["data"]["id"] for s in signals] == [f"sig-{m}-{i}" for i in range(20)
                                                  for m in ("BINANCE:BTCUSDT", "BINANCE:ETHUSDT")]
    assert_increasing(candles)
    assert_increasing(signals)


async def test_unsubscribe_and_bad_requests(server: FeedServer, feed: RedisFeed, keys: dict[str, str]) -> None:
    async with client(server, keys["pro"]) as ws:
        errors = await subscribe(ws, ["signals:ETHUSDT", "bogus:*", "candles:a b"])
        assert [e["code"] for e in errors] == ["bad_channel", "bad_channel"]
        await ws.send("not json")
        assert (await recv(ws))["code"] == "bad_request"
        await ws.send("[" * 60_000)  # nested past any parser's depth: an error, not a crashed feed
        assert (await recv(ws))["code"] == "bad_request"
        await feed.publish("signals", [signal("BINANCE:ETHUSDT", 1)])
        assert (await data(ws, 1))[0]["data"]["id"] == "sig-BINANCE:ETHUSDT-1"
        await ws.send(json.dumps({"op": "unsubscribe", "channels": ["signals:ETHUSDT"]}))
        assert await recv(ws) == {"op": "unsubscribed", "channels": ["signals:ETHUSDT"]}
        await feed.publish("signals", [signal("BINANCE:ETHUSDT", 2)])
        await quiet(ws)


async def test_resume_gets_exactly_the_missing_messages(server: FeedServer, feed: RedisFeed,
                                                        keys: dict[str, str]) -> None:
    key = keys["pro"]
    async with client(server, key) as ws:
        await subscribe(ws, ["signals:BTCUSDT"])
        await feed.publish("signals", [signal("BINANCE:BTCUSDT", i) for i in range(10)])
        first = await data(ws, 10)
    last = first[-1]["seq"]
    # published while disconnected, other markets interleaved
    for i in range(10, 30):
        await feed.publish("signals", [signal("BINANCE:BTCUSDT", i), signal("BINANCE:ETHUSDT", i)])

    async def publish_more() -> None:
        # keeps publishing while the replay runs, to cross the replay -> live boundary
        for i in range(30, 130):
            await feed.publish("signals", [signal("BINANCE:BTCUSDT", i)])
            await asyncio.sleep(0.001)

    async with client(server, key) as ws:
        more = asyncio.create_task(publish_more())
        await asyncio.sleep(0.01)
        await subscribe(ws, ["signals:BTCUSDT"], resume={"signals:BTCUSDT": last})
        await more
        rest = await data(ws, 120)
        await quiet(ws)
        (stats,) = server.stats()["clients"].values()
        assert stats["replayed"] >= 20  # the rest came live, across the replay -> live boundary
    assert [m["data"]["id"] for m in rest] == [f"sig-BINANCE:BTCUSDT-{i}" for i in range(10, 130)]
    assert_increasing(first + rest)
    assert server.stats()["dropped"] == 0


def _tiny_socket(port: int) -> socket.socket:
    # a receive buffer of a few KB makes TCP push back on the server almost at once
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


async def publish_burst(feed: RedisFeed, n: int) -> None:
    for lo in range(0, n, 100):
        await feed.publish("candles", [candle(f"BINANCE:M{j % 50}", j) for j in range(lo, lo + 100)])
        await asyncio.sleep(0.002)


def stalled(srv: FeedServer, key: str) -> connect:
    """A client that reads nothing until told: tiny socket buffer, one frame of client-side buffering."""
    return connect(url(srv), additional_headers={"X-API-Key": key}, sock=_tiny_socket(srv.port), max_queue=1)


SLOW = {"queue_size": 64, "send_buffer": 32 * 1024}


@pytest.mark.parametrize("server", [{**SLOW, "max_lags": 3}], indirect=True)
async def test_stalled_client_is_closed_fast_client_gets_everything(server: FeedServer, feed: RedisFeed,
                                                                    keys: dict[str, str]) -> None:
    n = 6000
    async with client(server, keys["enterprise"], max_queue=None) as fast, \
            stalled(server, keys["enterprise"]) as slow:
        await subscribe(fast, ["candles:*"])
        await subscribe(slow, ["candles:*"])  # and never read again until the end
        receiving = asyncio.create_task(data(fast, n, timeout=20))
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await publish_burst(feed, n)
        got = await receiving
        elapsed = loop.time() - t0
        assert [m["data"]["open_ts"] for m in got] == [T0 + j * MIN for j in range(n)]
        assert_increasing(got)
        assert elapsed < 10, f"the fast client took {elapsed:.1f}s for {n} messages"
        stats = server.stats()
        assert stats["closed_slow"] == 1 and stats["dropped"] > 0 and stats["lags"] == 3
        # the slow client finds its connection gone after what was already in flight
        count = 0
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(10):
                while True:
                    count += json.loads(await slow.recv())["op"] == "data"
        assert count < n
    fast_stats = [c for c in server.stats()["clients"].values()]
    assert fast_stats == [] or all(c["dropped"] == 0 for c in fast_stats)


@pytest.mark.parametrize("server", [{**SLOW, "max_lags": 1000}], indirect=True)
async def test_lagging_client_is_told_where_it_skipped_to(server: FeedServer, feed: RedisFeed,
                                                          keys: dict[str, str]) -> None:
    n = 3000
    async with stalled(server, keys["enterprise"]) as slow:
        await subscribe(slow, ["candles:*"])
        await publish_burst(feed, n)
        await asyncio.sleep(0.2)
        assert server.stats()["lags"] >= 1
        messages = []
        try:
            while True:  # until it has caught up
                messages.append(json.loads(await asyncio.wait_for(slow.recv(), 0.5)))
        except TimeoutError:
            pass
        await feed.publish("candles", [candle("BINANCE:M0", n)])  # caught up: live again
        messages.append(json.loads(await slow.recv()))
    lagged = [i for i, m in enumerate(messages) if m["op"] == "lagged"]
    assert lagged and all(messages[i]["channel"] == "candles:*" for i in lagged)
    datas = [m for m in messages if m["op"] == "data"]
    assert len(datas) < n + 1 and datas[-1]["data"]["open_ts"] == T0 + n * MIN
    assert_increasing(datas)
    # after a lag notice, data resumes strictly after the seq it skipped to
    for i in lagged:
        after = next((m for m in messages[i + 1:] if m["op"] == "data"), None)
        assert after is None or parse_seq(after["seq"]) > parse_seq(messages[i]["skipped_to"])
    assert server.stats()["closed_slow"] == 0


async def test_tier_channels_and_connection_limit(server: FeedServer, keys: dict[str, str]) -> None:
    async with client(server, keys["free"]) as ws:
        errors = await subscribe(ws, ["structure:ETHUSDT:15m", "candles:*", "whales"])
        assert [e["code"] for e in errors] == ["channel_not_allowed", "channel_not_allowed"]
        assert "free" in errors[0]["message"]
        async with client(server, keys["free"]) as second:  # free allows one socket
            assert await closed_with(second) == 4429
        assert server.stats()["users"] == {"free-user": 1}
    await asyncio.sleep(0.1)
    async with client(server, keys["free"]) as ws:  # the slot is free again
        await ws.send(json.dumps({"op": "ping"}))
        assert (await recv(ws))["op"] == "pong"
    # sockets of earlier tests with the same key may still be closing on the server's side
    for _ in range(100):
        if not server.stats()["users"].get("pro-user"):
            break
        await asyncio.sleep(0.05)
    pro = [client(server, keys["pro"]) for _ in range(6)]
    opened = [await c.__aenter__() for c in pro]
    try:
        # the server admits sockets as their handlers run, which under load need not be the order the
        # handshakes finished in: exactly one of the six is refused, whichever came last to the count
        answers = []
        for ws in opened:
            try:
                await ws.send(json.dumps({"op": "ping"}))
                answers.append((await recv(ws))["op"])
            except ConnectionClosed as exc:
                answers.append(exc.rcvd.code if exc.rcvd else -1)
        assert sorted(answers, key=str) == [4429] + ["pong"] * 5, answers
        admitted = [ws for ws, a in zip(opened, answers) if a == "pong"]
        assert await subscribe(admitted[0], ["structure:ETHUSDT:15m"]) == []  # pro includes structure
    finally:
        for c in pro:
            await c.__aexit__(None, None, None)


@pytest.mark.parametrize("server", [{"heartbeat_s": 0.1}], indirect=True)
async def test_heartbeat(server: FeedServer, keys: dict[str, str]) -> None:
    async with client(server, keys["pro"]) as ws:
        beats = [await recv(ws, timeout=2), await recv(ws, timeout=2)]
    assert [b["op"] for b in beats] == ["heartbeat", "heartbeat"]
    assert beats[0]["ts"] < beats[1]["ts"] and beats[0]["ts"] > T0


async def test_api_key_never_logged(server: FeedServer, feed: RedisFeed, keys: dict[str, str],
                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="serve")
    caplog.set_level(logging.DEBUG, logger="websockets.server")
    key = keys["enterprise"]
    wrong = new_api_key()
    for query, headers in ((f"?key={key}", {}), ("", {"Authorization": f"Bearer {key}"}), (f"?key={wrong}", {}),
                           ("", {"X-API-Key": wrong})):
        async with connect(url(server, query), additional_headers=headers) as ws:
            await ws.send(json.dumps({"op": "subscribe", "channels": ["signals:*"]}))
            try:
                await recv(ws)
            except ConnectionClosed:
                pass
    await asyncio.sleep(0.1)
    assert "connected: user enterprise-user" in caplog.text and "unknown key" in caplog.text
    for secret in (key, wrong):
        assert secret not in caplog.text and secret[3:20] not in caplog.text
