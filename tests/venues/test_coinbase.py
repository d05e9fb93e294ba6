"""Coinbase: the recorded real feed parses to exact trades and a book that agrees with the venue's ticker."""

from __future__ import annotations

import calendar
import json
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.venues.book import L2Book
from engine.venues.capture import SENT, read_capture, received_frames
from engine.venues.coinbase import Coinbase, iso_ns
from engine.venues.frames import FrameError, FrameOutput, parse_frame
from engine.venues.registry import make_venue
from schemas.batches import SIDE_BUY, SIDE_SELL
from tests.data_paths import SHARED_DATA

WIRE = Path(SHARED_DATA) / "wire"
CAPTURE = WIRE / "COINBASE.ws.28.0"
FIXTURES = WIRE / "venue-fixtures" / "coinbase" / "test_data"
RAW = received_frames(CAPTURE)


def ns_of(text: str) -> int:
    """Independent reading of an RFC 3339 time: the standard library's parser, microseconds kept as ints."""
    dt = datetime.fromisoformat(text)
    return calendar.timegm(dt.utctimetuple()) * 10**9 + dt.microsecond * 1000


def market(product: str) -> str:
    return "COINBASE:" + product.replace("-", "")


def test_every_match_of_the_capture_gives_its_trade_exactly() -> None:
    out = FrameOutput()
    parser = Coinbase().parser()
    assert all(parse_frame(parser, f, out) for f in RAW) and not out.rejects
    trades = out.drain_trades()
    expected = [d for d in map(json.loads, RAW) if d["type"] in ("match", "last_match")]
    assert len(trades) == len(expected) == 107  # 97 match + 10 last_match (one per product on subscribing)
    for i, d in enumerate(expected):
        assert trades.markets[trades.market[i]] == market(d["product_id"])
        assert trades.ts[i] == ns_of(d["time"]) and trades.ts[i] % 1000 == 0
        assert trades.price[i] == float(d["price"]) and trades.size[i] == float(d["size"])
        # side names the maker order: a resting sell was lifted by a buyer
        assert trades.side[i] == (SIDE_BUY if d["side"] == "sell" else SIDE_SELL)
        assert trades.trade_id[i] == d["trade_id"]
    # ids are consecutive per product: check the claim behind trade_ids_contiguous on the real feed
    by_product: dict[str, list[int]] = {}
    for d in expected:
        by_product.setdefault(d["product_id"], []).append(d["trade_id"])
    assert all(ids == list(range(ids[0], ids[0] + len(ids))) for ids in by_product.values())


def test_level2_book_never_crosses_and_matches_every_live_ticker() -> None:
    """The ticker of a trade seen live carries best bid/ask after it: the kept book must agree. The ticker
    sent on subscribing (same sequence as ``last_match``) describes the book before we connected: skipped."""
    frames = [json.loads(f) for f in RAW]
    live_seq = {(d["product_id"], d["sequence"]) for d in frames if d["type"] == "match"}
    parser, books = Coinbase().parser(), {}
    compared = skipped = updates = 0
    for raw, d in zip(RAW, frames):
        out = FrameOutput()
        assert parse_frame(parser, raw, out)
        for u in out.books:
            book = books.setdefault(u.market, L2Book(u.market))
            book.reset(u) if u.snapshot else book.apply(u)
            assert not book.crossed(), (u.market, u.ts)
            updates += 1
        if d["type"] == "ticker":
            book = books[market(d["product_id"])]
            if (d["product_id"], d["sequence"]) not in live_seq:
                skipped += 1
                continue
            (bid, _), (ask, _) = book.best()
            assert (bid, ask) == (float(d["best_bid"]), float(d["best_ask"])), d
            compared += 1
    assert updates == 9729 and compared == 97 and skipped == 10


def test_subscribe_frame_and_the_capture_s_own_requests() -> None:
    sent = [json.loads(c.payload) for c in read_capture(CAPTURE) if c.kind == SENT]
    assert {c for s in sent for c in s["channels"]} == {"level2", "ticker", "matches"}
    venue = Coinbase(channels=("matches", "level2_batch"))
    (frame,) = venue.subscribe_frames(["btc-usd", "ETH-USD"])
    assert json.loads(frame) == {"type": "subscribe", "product_ids": ["BTC-USD", "ETH-USD"],
                                 "channels": ["matches", "level2_batch"]}
    assert json.loads(Coinbase().subscribe_frames(["BTC-USD"])[0])["channels"] == ["matches", "heartbeat"]
    assert Coinbase().market("BTC-USD") == "COINBASE:BTCUSD" and Coinbase.trade_ids_contiguous
    assert isinstance(make_venue("coinbase"), Coinbase)
    with pytest.raises(ValueError, match="unknown channels"):
        Coinbase(channels=("full",))


def test_advanced_trade_fixtures() -> None:
    out = FrameOutput()
    parser = Coinbase().parser()
    assert parse_frame(parser, (FIXTURES / "ws_market_trades.json").read_bytes(), out)
    assert parse_frame(parser, (FIXTURES / "ws_ticker.json").read_bytes(), out)
    assert parse_frame(parser, (FIXTURES / "ws_candles.json").read_bytes(), out)
    t = out.drain_trades()
    assert t.markets == ["COINBASE:BTCUSD"] and t.trade_id.tolist() == [995098700, 995098701]
    assert t.price.tolist() == [68900.50, 68900.00] and t.size.tolist() == [0.0015, 0.05]
    assert t.ts.tolist() == [1775572202789012000, 1775572202800000000]
    assert t.side.tolist() == [SIDE_SELL, SIDE_BUY]  # read as the maker side, like the Exchange feed
    assert not out.rejects and not out.books


def test_control_and_error_messages() -> None:
    out = FrameOutput()
    p = Coinbase().parser()
    assert parse_frame(p, '{"type":"heartbeat","sequence":90,"last_trade_id":20,"product_id":"BTC-USD",'
                          '"time":"2014-11-07T08:19:28.464459Z"}', out)
    assert not parse_frame(p, '{"type":"error","message":"Failed to subscribe","reason":"FOO-BAR is not a valid '
                              'product"}', out)
    assert not parse_frame(p, '{"type":"received","order_id":"x"}', out)
    assert not parse_frame(p, '[1, 2]', out)
    assert not parse_frame(p, '{"type":"match","trade_id":1,"side":"up","size":"1","price":"1",'
                              '"product_id":"BTC-USD","time":"2021-04-17T16:43:30.244075Z"}', out)
    assert not parse_frame(p, '{"type":"l2update","product_id":"BTC-USD","changes":[["buy","1","2"],'
                              '["sell","-1","2"]],"time":"2021-04-17T16:43:30Z"}', out)
    assert dict(out.rejects) == {"venue_error": 1, "unknown_message": 2, "bad_value": 2}
    assert [c["type"] for c in out.control] == ["heartbeat"] and not out.books  # refused frames roll back


def test_iso_times_are_exact_nanoseconds() -> None:
    assert iso_ns("2021-04-17T16:43:30.244075Z") == 1618677810244075000
    assert iso_ns("2021-04-17T16:43:30Z") == 1618677810000000000
    assert iso_ns("2021-04-17T16:43:30.123456789Z") == 1618677810123456789
    assert iso_ns("2021-04-17T18:43:30.5+02:00") == 1618677810500000000
    assert iso_ns("1970-01-01T00:00:00.000001Z") == 1000
    for bad in ("2021-02-30T00:00:00Z", "2021-04-17 16:43:30Z", "2021-04-17T16:43:30", "2021-04-17T24:00:00Z",
                "2021-04-17T16:43:30.1234567890Z", "٢٠٢١-04-17T16:43:30Z", 1618677810):
        with pytest.raises((FrameError, ValueError)):
            iso_ns(bad)


def test_rest_trades_page_and_book_snapshot() -> None:
    venue = Coinbase()
    assert venue.trades_request("btc-usd", 100, 50) == ("/products/BTC-USD/trades", {"after": 151, "limit": 50})
    assert venue.trades_request("BTC-USD", 100, 5000) == ("/products/BTC-USD/trades", {"after": 1101, "limit": 1000})
    # the documented shape, newest first; side is the maker's
    body = (b'[{"time":"2014-11-07T22:19:28.578544Z","trade_id":76,"price":"10.00000000","size":"0.01000000",'
            b'"side":"buy"},{"time":"2014-11-07T01:08:43.642366Z","trade_id":75,"price":"9.50000000",'
            b'"size":"0.30000000","side":"sell"},{"time":"2014-11-07T01:08:43.6Z","trade_id":74,'
            b'"price":"9.40000000","size":"2.5","side":"sell"}]')
    out = FrameOutput()
    venue.parse_trades_response("BTC-USD", body, out)
    t = out.drain_trades()
    assert t.trade_id.tolist() == [74, 75, 76] and t.markets == ["COINBASE:BTCUSD"]
    assert t.side.tolist() == [SIDE_BUY, SIDE_BUY, SIDE_SELL] and t.price.tolist() == [9.4, 9.5, 10.0]
    assert t.ts.tolist() == [1415322523600000000, 1415322523642366000, 1415398768578544000]
    with pytest.raises(FrameError):
        venue.parse_trades_response("BTC-USD", b'{"message":"NotFound"}', FrameOutput())
    assert venue.book_snapshot_request("BTC-USD") == ("/products/BTC-USD/book", {"level": 2})
    snap = venue.parse_book_snapshot("BTC-USD", b'{"sequence":3,"bids":[["295.96","4.39088265",2]],'
                                                b'"asks":[["295.97","25.23542881",12]]}')
    assert snap.snapshot and snap.last_seq == snap.first_seq == 3 and snap.market == "COINBASE:BTCUSD"
    assert snap.bids == [[295.96, 4.39088265]] and snap.asks == [[295.97, 25.23542881]]
    with pytest.raises(FrameError, match="missing_field"):  # the Advanced Trade product book is another API's shape
        venue.parse_book_snapshot("BTC-USD", (FIXTURES / "http_product_book.json").read_bytes())


# ---- fuzzing ------------------------------------------------------------------------------------
MUTATIONS = st.sampled_from(["drop", "wrong_type", "truncate", "flip", "huge", "negative", "nan", "null", "zero"])


def _slots(node, out: list) -> list:
    """Every (container, key) in a decoded JSON tree, parents before children."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for k, v in items:
        out.append((node, k))
        _slots(v, out)
    return out


def mutate(frame: str, how: str, where: int) -> str:
    if how == "truncate":
        return frame[: where % max(1, len(frame))]
    if how == "flip":
        i = where % len(frame)
        return frame[:i] + chr((ord(frame[i]) + 7) % 128) + frame[i + 1:]
    tree = json.loads(frame)
    container, key = _slots(tree, [])[where % len(_slots(tree, []))]
    if how == "drop":
        del container[key]
    else:
        container[key] = {"wrong_type": {"nested": [1, 2]}, "huge": "9" * 400, "negative": "-1", "nan": "NaN",
                          "null": None, "zero": "0"}[how]
    return json.dumps(tree)


PARSER = Coinbase().parser()
BY_KIND: dict[str, list[str]] = {}
for _f in RAW:
    BY_KIND.setdefault(json.loads(_f)["type"], []).append(_f)
KINDS = sorted(BY_KIND)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 100_000), MUTATIONS, st.integers(0, 100_000))
def test_fuzzed_real_frames_never_raise_and_rejects_have_reasons(pick, how, where) -> None:
    # l2update frames are 9,719 of 9,952: pick the kind first so matches and snapshots get fuzzed too
    pool = BY_KIND[KINDS[pick % len(KINDS)]]
    out = FrameOutput()
    ok = parse_frame(PARSER, mutate(pool[pick % len(pool)], how, where), out)
    assert ok or (sum(out.rejects.values()) == 1 and not out.books and not out.trade_count)
    trades = out.drain_trades()
    assert (trades.price > 0).all() and (trades.size > 0).all() and (trades.ts > 0).all()
    for b in out.books:
        assert all(p > 0 and s >= 0 for p, s in b.bids + b.asks)
