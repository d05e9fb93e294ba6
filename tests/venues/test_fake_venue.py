"""The fake venue itself: replay order, subscribe gating, pings, drops with real gaps, frame faults,
stalls, rejected upgrades, REST 429/5xx, recorded snapshots and the computed trade endpoints."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import aiohttp
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError

from connectors.venues.rest import VenueRest
from engine.venues.binance import BinanceSpot
from engine.venues.capture import RESPONSE, read_capture, received_frames
from engine.venues.frames import FrameOutput, parse_frame
from tests.data_paths import SHARED_DATA
from tests.venues.fake_venue import (
    BINANCE_AGG_TRADES_PATHS,
    COINBASE_TRADES_PATH,
    FakeVenue,
    binance_agg_trades_route,
    binance_depth_route,
    coinbase_trades_route,
    synthetic_binance_frames,
)

WIRE = Path(SHARED_DATA) / "wire"
FUTURES_WS = WIRE / "BINANCE_FUTURES.ws.1.0"
FUTURES_HTTP = WIRE / "BINANCE_FUTURES.http.0.0"
STREAM_PATH = "/stream?streams=sushiusdt@aggTrade/ctkusdt@aggTrade"


@pytest.fixture(scope="module")
def futures_frames() -> list[str]:
    return received_frames(FUTURES_WS)


async def read_n(ws: aiohttp.ClientWebSocketResponse, n: int, timeout: float = 5.0) -> list[aiohttp.WSMessage]:
    """The next ``n`` messages of a client connection (data frames only)."""
    out = []
    while len(out) < n:
        msg = await asyncio.wait_for(ws.receive(), timeout)
        assert msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY), msg
        out.append(msg)
    return out


async def nothing_within(ws: aiohttp.ClientWebSocketResponse, seconds: float) -> bool:
    try:
        await asyncio.wait_for(ws.receive(), seconds)
    except TimeoutError:
        return True
    return False


async def test_replays_the_capture_in_order_then_idles(futures_frames) -> None:
    async with FakeVenue.from_capture(FUTURES_WS) as venue, aiohttp.ClientSession() as http:
        async with http.ws_connect(venue.ws_url + STREAM_PATH) as ws:
            got = [m.data for m in await read_n(ws, len(futures_frames))]
            assert got == futures_frames
            await asyncio.wait_for(venue.exhausted.wait(), 2)
            assert venue.sent_count == len(futures_frames) and venue.delivered == list(range(len(futures_frames)))
            assert await nothing_within(ws, 0.1) and not ws.closed  # exhausted: idle, still open
        conn = venue.connections[0]
        assert conn.path == "/stream" and conn.query == STREAM_PATH.split("?", 1)[1]
        assert conn.received == len(futures_frames)


async def test_waits_for_subscribe_frames_and_answers_app_pings() -> None:
    venue = FakeVenue.from_capture(WIRE / "OKX.ws.1.0", wait_for_subscribe=3)
    assert len(venue.recorded_sent) == 3
    async with venue, aiohttp.ClientSession() as http:
        async with http.ws_connect(venue.ws_url + "/ws/v5/public") as ws:
            # pings are answered but do not count as subscriptions
            for ping, pong in [("ping", "pong"), ('{"op":"ping"}', {"op": "pong"}),
                               ('{"event":"ping","reqid":7}', {"event": "pong", "reqid": 7})]:
                await ws.send_str(ping)
                reply = await asyncio.wait_for(ws.receive_str(), 2)
                assert (reply if isinstance(pong, str) else json.loads(reply)) == pong
            for frame in venue.recorded_sent[:2]:
                await ws.send_str(frame)
            assert await nothing_within(ws, 0.2) and venue.sent_count == 0
            await ws.send_str(venue.recorded_sent[2])
            first = await read_n(ws, 2)
            assert [m.data for m in first] == venue.frames[:2]
        assert venue.connections[0].sent[3:] == venue.recorded_sent
        assert venue.connections[0].path == "/ws/v5/public"


async def test_drop_cuts_without_close_frame_and_lost_frames_stay_missing(futures_frames) -> None:
    async with FakeVenue(futures_frames) as venue:
        venue.drop_at(100, lost=5)
        first: list[str] = []
        async with connect(venue.ws_url + STREAM_PATH) as ws:
            with pytest.raises(ConnectionClosedError) as closed:
                while True:
                    first.append(await asyncio.wait_for(ws.recv(), 5))
        assert closed.value.rcvd is None  # abrupt: no close frame from the venue
        assert first == futures_frames[:100]
        async with connect(venue.ws_url + STREAM_PATH) as ws:  # resumes from the global cursor
            second = [await asyncio.wait_for(ws.recv(), 5) for _ in range(len(futures_frames) - 105)]
        assert second == futures_frames[105:]
        assert venue.lost == list(range(100, 105)) and venue.faults_applied == ["drop@100 lost=5 connections=1"]
        assert [c.closed_at is not None for c in venue.connections] == [True, True]


async def test_with_a_clock_frames_pass_while_nobody_listens(futures_frames) -> None:
    frames = futures_frames[:60]
    async with FakeVenue(frames, rate_per_s=200) as venue, aiohttp.ClientSession() as http:
        venue.drop_at(20)
        async with http.ws_connect(venue.ws_url + "/ws") as ws:
            first = [m.data for m in await read_n(ws, 20)]
            assert (await ws.receive()).type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
        await asyncio.sleep(0.1)  # ~20 turns pass before the client is back
        async with http.ws_connect(venue.ws_url + "/ws") as ws:
            await asyncio.wait_for(venue.exhausted.wait(), 3)
            rest = [m.data for m in await read_n(ws, venue.sent_count - 20)]
        assert first == frames[:20]
        assert venue.lost and venue.lost == list(range(20, 20 + len(venue.lost)))
        assert rest == frames[20 + len(venue.lost):]


async def test_skip_duplicate_and_malformed_frames(futures_frames) -> None:
    frames = futures_frames[:20]
    async with FakeVenue(frames) as venue, aiohttp.ClientSession() as http:
        venue.skip(3, count=2)
        venue.duplicate(5)
        for i, mode in zip(range(7, 11), ("truncate", "garbage", "wrong_type", "binary")):
            venue.malform(i, mode)
        with pytest.raises(ValueError):
            venue.malform(11, "bogus")
        async with http.ws_connect(venue.ws_url + STREAM_PATH) as ws:
            got = await read_n(ws, 20 - 2 + 1)
    text = [m.data for m in got]
    assert text[:3] == frames[:3] and text[3:6] == [frames[5], frames[5], frames[6]]
    assert text[6] == frames[7][: len(frames[7]) // 2]
    with pytest.raises(ValueError):
        json.loads(text[7])
    damaged = json.loads(text[8])
    assert isinstance(damaged["data"]["e"], dict) and damaged["stream"] == json.loads(frames[9])["stream"]
    assert got[9].type == aiohttp.WSMsgType.BINARY and got[9].data == frames[10].encode()
    assert text[10:] == frames[11:]
    assert venue.faults_applied == ["skip@3", "skip@4", "duplicate@5 x2", "malform@7 truncate",
                                    "malform@8 garbage", "malform@9 wrong_type", "malform@10 binary"]


async def test_stall_holds_frames_and_pongs(futures_frames) -> None:
    frames = futures_frames[:10]
    async with FakeVenue(frames) as venue, aiohttp.ClientSession() as http:
        venue.stall_at(5, 0.4)
        t0 = time.monotonic()
        async with http.ws_connect(venue.ws_url + "/ws") as ws:
            assert [m.data for m in await read_n(ws, 5)] == frames[:5]
            await ws.send_str('{"op":"ping"}')  # unanswered: the venue is hung
            nxt = await read_n(ws, 5)
            assert time.monotonic() - t0 >= 0.38  # frames 0-4 go out at once, then the stall
            assert [m.data for m in nxt] == frames[5:]
            await ws.send_str('{"op":"ping"}')  # answered again once the stall is over
            assert json.loads(await asyncio.wait_for(ws.receive_str(), 2)) == {"op": "pong"}
    assert venue.faults_applied == ["stall@5 0.4s"]


async def test_rejected_upgrades_get_503() -> None:
    async with FakeVenue(["{}"]) as venue, aiohttp.ClientSession() as http:
        venue.reject_connections(2)
        for _ in range(2):
            with pytest.raises(aiohttp.WSServerHandshakeError) as e:
                await http.ws_connect(venue.ws_url + "/realtime")
            assert e.value.status == 503
        async with http.ws_connect(venue.ws_url + "/realtime") as ws:
            assert (await read_n(ws, 1))[0].data == "{}"
    assert len(venue.connections) == 1 and venue.faults_applied == ["reject ws 503 /realtime"] * 2


async def test_recorded_depth_snapshot_by_query_and_404_otherwise() -> None:
    recorded = {line.url.split("?")[1]: line.payload for line in read_capture(FUTURES_HTTP) if line.kind == RESPONSE}
    async with FakeVenue.from_capture(None, rest_capture=FUTURES_HTTP) as venue, aiohttp.ClientSession() as http:
        async with http.get(venue.rest_url + "/fapi/v1/depth", params={"limit": "1000", "symbol": "CTKUSDT"}) as r:
            assert r.status == 200 and await r.text() == recorded["symbol=CTKUSDT&limit=1000"]
        for params in ({"symbol": "BTCUSDT", "limit": "1000"}, {"symbol": "CTKUSDT", "limit": "5"}):
            async with http.get(venue.rest_url + "/fapi/v1/depth", params=params) as r:
                assert r.status == 404 and (await r.json())["query"] == params
        async with http.get(venue.rest_url + "/fapi/v1/nothing") as r:
            assert r.status == 404 and (await r.json())["error"] == "unknown path"
    async with FakeVenue([], rest={"https://x.test/v1/time?a=1": {"t": 1}}) as venue, aiohttp.ClientSession() as http:
        for _ in range(2):  # a single recorded answer is served again
            async with http.get(venue.rest_url + "/v1/time?a=1") as r:
                assert await r.json() == {"t": 1}


async def test_malformed_rest_bodies_are_served_in_turn_then_normal_answers_resume() -> None:
    spot_ws, spot_http = WIRE / "BINANCE.ws.1.0", WIRE / "BINANCE.http.0.0"
    frames = [f for f in received_frames(spot_ws) if '"stream":"nknusdt@' in f]
    snapshot = next(c.payload for c in read_capture(spot_http) if "NKNUSDT" in c.url)
    last_u = [json.loads(f)["data"]["u"] for f in frames if "depthUpdate" in f][-1]
    venue = FakeVenue(frames)
    venue.add_route("GET", "/api/v3/depth", binance_depth_route(frames, {"NKNUSDT": snapshot}))
    venue.malform_rest("/api/v3/depth", [b"[]", b'{"lastUpdateId":'])
    venue.malform_rest("/api/v3/depth", ["not json"], from_frame=5)  # only once frame 5's turn has come
    params = {"symbol": "NKNUSDT", "limit": "1000"}
    async with venue, aiohttp.ClientSession() as http:
        bodies = []
        for _ in range(3):
            async with http.get(venue.rest_url + "/api/v3/depth", params=params) as r:
                assert r.status == 200
                bodies.append(await r.read())
        assert bodies[:2] == [b"[]", b'{"lastUpdateId":'] and json.loads(bodies[2]) == json.loads(snapshot)
        async with http.ws_connect(venue.ws_url + "/stream") as ws:
            await read_n(ws, len(frames))
        for expected in (b"not json", None):
            async with http.get(venue.rest_url + "/api/v3/depth", params=params) as r:
                body = await r.read()
                if expected is not None:
                    assert body == expected
                else:  # the book now: the recorded snapshot plus every diff after it
                    assert json.loads(body)["lastUpdateId"] == last_u
    assert sum(f.startswith("rest body /api/v3/depth") for f in venue.faults_applied) == 3


async def test_429_with_retry_after_and_5xx_through_the_engine_rest_client() -> None:
    async with FakeVenue.from_capture(None, rest_capture=FUTURES_HTTP) as venue, aiohttp.ClientSession() as http:
        venue.rate_limit(1, retry_after=1)
        async with http.get(venue.rest_url + "/fapi/v1/depth", params={"symbol": "CTKUSDT", "limit": "1000"}) as r:
            assert r.status == 429 and r.headers["Retry-After"] == "1"
        venue.rate_limit(2, retry_after=0.05)
        venue.fail_rest(1, status=502)
        rest = VenueRest(http, venue.rest_url, backoff_s=0.01)
        body = await rest.get("/fapi/v1/depth", {"symbol": "SUSHIUSDT", "limit": 1000})
        assert json.loads(body)["lastUpdateId"] == 600859605926
        assert rest.stats["rate_limited"] == 2 and rest.stats["retries"] == 3  # every retry, 429s included
        assert [c.status for c in venue.rest_calls] == [429, 429, 429, 502, 200]


async def test_binance_agg_trades_route(futures_frames) -> None:
    trades = [json.loads(f)["data"] for f in futures_frames if "@aggTrade" in f]
    sushi = sorted((d for d in trades if d["s"] == "SUSHIUSDT"), key=lambda d: d["a"])
    async with FakeVenue(futures_frames) as venue, aiohttp.ClientSession() as http:
        handler = binance_agg_trades_route(futures_frames)
        for path in BINANCE_AGG_TRADES_PATHS:
            venue.add_route("GET", path, handler)
        url = venue.rest_url + "/fapi/v1/aggTrades"
        async with http.get(url, params={"symbol": "SUSHIUSDT"}) as r:
            assert await r.json() == []  # nothing has traded yet: the replay has not started
        async with http.ws_connect(venue.ws_url + STREAM_PATH) as ws:
            await read_n(ws, len(futures_frames))
        async with http.get(url, params={"symbol": "SUSHIUSDT", "fromId": sushi[5]["a"], "limit": 10}) as r:
            rows = await r.json()
        assert [x["a"] for x in rows] == [d["a"] for d in sushi[5:15]]
        assert rows[0] == {k: sushi[5][k] for k in ("a", "p", "q", "f", "l", "T", "m")}  # futures: no M
        async with http.get(venue.rest_url + "/api/v3/aggTrades", params={"symbol": "SUSHIUSDT", "limit": 3}) as r:
            assert [x["a"] for x in await r.json()] == [d["a"] for d in sushi[-3:]]  # latest, ascending
        async with http.get(url, params={"symbol": "NOPE"}) as r:
            assert r.status == 400 and (await r.json())["code"] == -1121


async def test_coinbase_trades_route_pages_newest_first() -> None:
    frames = received_frames(WIRE / "COINBASE.ws.28.0")
    matches = [json.loads(f) for f in frames if '"match"' in f or '"last_match"' in f]
    ids = sorted({m["trade_id"] for m in matches if m["product_id"] == "SKL-USD"}, reverse=True)
    async with FakeVenue([]) as venue, aiohttp.ClientSession() as http:
        venue.add_route("GET", COINBASE_TRADES_PATH, coinbase_trades_route(frames, live=False))
        url = venue.rest_url + "/products/SKL-USD/trades"
        async with http.get(url, params={"limit": 10}) as r:
            page = await r.json()
            assert [t["trade_id"] for t in page] == ids[:10]
            assert r.headers["CB-AFTER"] == str(ids[9]) and r.headers["CB-BEFORE"] == str(ids[0])
        async with http.get(url, params={"limit": 10, "after": ids[9]}) as r:
            assert [t["trade_id"] for t in await r.json()] == ids[10:20]
        async with http.get(url, params={"limit": 5, "before": ids[20]}) as r:
            assert [t["trade_id"] for t in await r.json()] == ids[15:20]
        src = next(m for m in matches if m["trade_id"] == ids[0])
        assert page[0] == {k: src[k] for k in ("time", "trade_id", "price", "size", "side")}
        async with http.get(venue.rest_url + "/products/NOPE-USD/trades") as r:
            assert r.status == 404


def test_synthetic_frames_have_contiguous_ids_and_parse() -> None:
    frames = synthetic_binance_frames(Path(SHARED_DATA) / "trades" / "btcusdt-trades.parquet", "BTCUSDT",
                                      first_id=1, repeat=2)
    out = FrameOutput()
    for f in frames:
        assert parse_frame(BinanceSpot().parser(), f, out)
    batch = out.drain_trades()
    assert len(batch) == len(frames) == 2 * 2001 and list(batch.trade_id) == list(range(1, len(frames) + 1))
    assert all(b >= a for a, b in zip(batch.ts, batch.ts[1:]))  # the repeat is shifted after the first pass
