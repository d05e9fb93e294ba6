"""Binance spot and USD-M futures: the recorded real frames parse to exact trades, klines and books."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.venues.binance import BinanceFutures, BinanceSpot
from engine.venues.book import APPLIED, GAP, BookSync
from engine.venues.capture import RECEIVED, read_capture
from engine.venues.frames import FrameOutput, parse_frame
from schemas.batches import SIDE_BUY, SIDE_SELL
from tests.data_paths import SHARED_DATA

WIRE = Path(SHARED_DATA) / "wire"
CASES = [("BINANCE.ws.1.0", "BINANCE.http.0.0", BinanceSpot(), "binance_spot"),
         ("BINANCE_FUTURES.ws.1.0", "BINANCE_FUTURES.http.0.0", BinanceFutures(), "binance_futures")]


def frames(name: str) -> list[str]:
    return [c.payload for c in read_capture(WIRE / name) if c.kind == RECEIVED]


@pytest.mark.parametrize("capture,_,venue,__", CASES, ids=["spot", "futures"])
def test_every_trade_frame_gives_its_trade_exactly(capture, _, venue, __) -> None:
    out = FrameOutput()
    raw = frames(capture)
    for f in raw:
        assert parse_frame(venue.parser(), f, out)
    trades = out.drain_trades()
    expected = [json.loads(f)["data"] for f in raw if json.loads(f)["data"].get("e") == "aggTrade"]
    assert len(trades) == len(expected) > 0 and not out.rejects
    for i, d in enumerate(expected):
        assert trades.markets[trades.market[i]] == f"{venue.key}:{d['s']}"
        assert trades.ts[i] == d["T"] * 1_000_000
        assert trades.price[i] == float(d["p"]) and trades.size[i] == float(d["q"])
        assert trades.side[i] == (SIDE_SELL if d["m"] else SIDE_BUY)  # m: buyer was maker, so a sell hit
        assert trades.trade_id[i] == d["a"]


def test_closed_klines_only_with_taker_volumes() -> None:
    out = FrameOutput()
    for f in frames("BINANCE_FUTURES.ws.1.0"):
        parse_frame(BinanceFutures().parser(), f, out)
    klines = [json.loads(f)["data"]["k"] for f in frames("BINANCE_FUTURES.ws.1.0")
              if json.loads(f)["data"].get("e") == "kline"]
    closed = [k for k in klines if k["x"]]
    assert len(out.candles) == len(closed) and len(closed) < len(klines)
    for c, k in zip(out.candles, closed):
        assert (c.open, c.high, c.low, c.close, c.volume) == tuple(float(k[x]) for x in "ohlcv")
        assert c.open_ts == k["t"] * 1_000_000 and c.close_ts == (k["T"] + 1) * 1_000_000
        assert c.buy_volume == float(k["V"]) and c.trade_count == k["n"] and c.timeframe == "1m"


@pytest.mark.parametrize("capture,rest,venue,rule", CASES, ids=["spot", "futures"])
def test_book_from_snapshot_and_diffs_follows_the_sequence_rule(capture, rest, venue, rule) -> None:
    """The capture has one REST snapshot per symbol: every later diff must chain onto it with no gap,
    diffs older than the snapshot are dropped, and the book never crosses."""
    events = [(c.ts, c) for c in read_capture(WIRE / capture) if c.kind == RECEIVED]
    events += [(c.ts, c) for c in read_capture(WIRE / rest)]
    events.sort(key=lambda e: e[0])
    syncs: dict[str, BookSync] = {}
    parser = venue.parser()
    verdicts: dict[str, int] = {}
    snapshots = 0
    for _, c in events:
        if c.kind != RECEIVED:
            symbol = c.url.split("symbol=")[1].split("&")[0]
            snap = venue.parse_book_snapshot(symbol, c.payload.encode())
            assert snap.snapshot and snap.last_seq == json.loads(c.payload)["lastUpdateId"]
            for v in syncs.setdefault(snap.market, BookSync(snap.market, rule)).on_snapshot(snap):
                verdicts[v] = verdicts.get(v, 0) + 1
            snapshots += 1
            continue
        out = FrameOutput()
        parse_frame(parser, c.payload, out)
        for upd in out.books:
            sync = syncs.setdefault(upd.market, BookSync(upd.market, rule))
            v = sync.on_update(upd)
            verdicts[v] = verdicts.get(v, 0) + 1
            if sync.synced:
                assert not sync.book.crossed(), (upd.market, upd.last_seq)
    assert snapshots == 4 and GAP not in verdicts and verdicts[APPLIED] > 150, verdicts
    assert all(s.synced and s.stats["gaps"] == 0 for s in syncs.values())


def test_a_missing_diff_is_a_gap_and_a_new_snapshot_resyncs() -> None:
    venue = BinanceFutures()
    out = FrameOutput()
    for f in frames("BINANCE_FUTURES.ws.1.0"):
        parse_frame(venue.parser(), f, out)
    diffs = [u for u in out.books if u.market == "BINANCE_FUTURES:SUSHIUSDT"]
    sync = BookSync("BINANCE_FUTURES:SUSHIUSDT", "binance_futures")
    # a snapshot taken inside diffs[1]'s range: diffs[0] is older, diffs[1] is the first to apply
    cut = diffs[1].first_seq
    sync.on_snapshot(diffs[0].model_copy(update={"snapshot": True, "first_seq": cut, "last_seq": cut}))
    assert sync.on_update(diffs[0]) == "stale"
    assert sync.on_update(diffs[1]) == APPLIED
    assert sync.on_update(diffs[3]) == GAP and not sync.synced  # diffs[2] lost
    assert sync.on_update(diffs[4]) == "buffered"
    replayed = sync.on_snapshot(diffs[3].model_copy(update={"snapshot": True}))
    assert replayed == [APPLIED, APPLIED] and sync.synced  # the buffered diffs chain onto it


def test_venue_errors_and_unknown_events_are_counted_not_raised() -> None:
    out = FrameOutput()
    p = BinanceSpot().parser()
    assert not parse_frame(p, '{"code": -1121, "msg": "Invalid symbol."}', out)
    assert not parse_frame(p, '{"stream": "x", "data": {"e": "newThing"}}', out)
    assert not parse_frame(p, '{"stream": "x", "data": {"e": "aggTrade", "s": "BTCUSDT"}}', out)
    assert not parse_frame(p, b'{"stream": "x", "da', out)
    assert parse_frame(p, '{"result": null, "id": 1}', out)
    assert dict(out.rejects) == {"venue_error": 1, "unknown_message": 1, "missing_field": 1, "bad_json": 1}
    assert out.trade_count == 0 and out.control


def test_rest_backfill_and_snapshot_requests() -> None:
    spot, fut = BinanceSpot(), BinanceFutures()
    assert spot.trades_request("BTCUSDT", 99, 5000) == ("/api/v3/aggTrades", {"symbol": "BTCUSDT", "fromId": 100,
                                                                                 "limit": 1000})
    assert fut.book_snapshot_request("ethusdt") == ("/fapi/v1/depth", {"symbol": "ETHUSDT", "limit": 1000})
    url = spot.connect_url("ws://127.0.0.1:1", ["BTCUSDT", "ETHUSDT"])
    assert url == "ws://127.0.0.1:1/stream?streams=btcusdt@aggTrade/ethusdt@aggTrade"
    out = FrameOutput()
    spot.parse_trades_response("BTCUSDT", b'[{"a":26129,"p":"0.01633102","q":"4.70443515","f":27781,"l":27781,'
                                          b'"T":1498793709153,"m":true,"M":true}]', out)
    t = out.drain_trades()
    assert t.trade_id.tolist() == [26129] and t.price.tolist() == [0.01633102] and t.side.tolist() == [SIDE_SELL]
    with pytest.raises(ValueError, match="unknown channels"):
        BinanceSpot(channels=("aggTrade", "nope"))


MUTATIONS = st.sampled_from(["drop_key", "wrong_type", "truncate", "flip", "huge", "negative", "nan", "null"])


def _mutate(frame: str, how: str, where: int) -> str | bytes:
    d = json.loads(frame)
    data = d.get("data", d)
    keys = list(data)
    key = keys[where % len(keys)]
    if how == "drop_key":
        del data[key]
    elif how == "wrong_type":
        data[key] = {"nested": [1, 2]}
    elif how == "truncate":
        return frame[: where % max(1, len(frame))]
    elif how == "flip":
        i = where % len(frame)
        return frame[:i] + chr((ord(frame[i]) + 7) % 128) + frame[i + 1:]
    elif how == "huge":
        data[key] = "9" * 400
    elif how == "negative":
        data[key] = "-1"
    elif how == "nan":
        data[key] = "NaN"
    else:
        data[key] = None
    return json.dumps(d)


@settings(max_examples=400, deadline=None)
@given(st.integers(0, 10_000), MUTATIONS, st.integers(0, 10_000), st.booleans())
def test_fuzzed_real_frames_never_raise_and_rejects_have_reasons(pick, how, where, futures) -> None:
    raw = frames("BINANCE_FUTURES.ws.1.0" if futures else "BINANCE.ws.1.0")
    venue = BinanceFutures() if futures else BinanceSpot()
    out = FrameOutput()
    ok = parse_frame(venue.parser(), _mutate(raw[pick % len(raw)], how, where), out)
    assert ok or sum(out.rejects.values()) == 1
    trades = out.drain_trades()
    assert (trades.price > 0).all() and (trades.size > 0).all() and (trades.ts > 0).all()
    for b in out.books:
        assert all(p > 0 and s >= 0 for p, s in b.bids + b.asks)
