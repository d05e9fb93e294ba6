"""Kraken: the recorded real v1 book feed is kept exactly (every venue checksum matches), trades parse exactly."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.venues.book import L2Book
from engine.venues.capture import SENT, read_capture, received_frames
from engine.venues.frames import FrameError, FrameOutput, parse_frame
from engine.venues.kraken import (
    Kraken,
    KrakenBook,
    KrakenParser,
    kraken_checksum,
    seconds_ns,
)
from engine.venues.registry import make_venue
from schemas.batches import SIDE_BUY, SIDE_SELL
from tests.data_paths import SHARED_DATA

WIRE = Path(SHARED_DATA) / "wire"
CAPTURE = WIRE / "KRAKEN.ws.50.0"
FIXTURES = WIRE / "venue-fixtures" / "kraken" / "test_data"
RAW = received_frames(CAPTURE)
# Kraken's documented v1 trade message (the capture holds book channels only)
V1_TRADE = ('[0,[["5541.20000","0.15850568","1534614057.321597","s","l",""],'
            '["6060.00000","0.02455000","1534614057.324998","b","l",""]],"trade","XBT/USD"]')


def test_every_checksum_of_the_capture_matches_the_kept_book() -> None:
    """4,269 updates carry ``c``; both the parser's string book and a plain L2Book fed only its BookUpdates
    must reproduce each one, which holds only if every level was applied exactly."""
    parser, out, books = KrakenParser(), FrameOutput(), {}
    decimals: dict[str, int] = {}  # the pair's price decimals, read from its snapshot strings
    with_c = matched = 0
    for raw in RAW:
        assert parse_frame(parser, raw, out), out.last_error
        d = json.loads(raw)
        if isinstance(d, list) and "as" in d[1]:
            decimals[d[-1]] = len(d[1]["as"][0][0].split(".")[1])
        for u in out.books:
            book = books.setdefault(u.market, L2Book(u.market))
            book.reset(u) if u.snapshot else book.apply(u)
            assert not book.crossed()
            if u.checksum is not None:
                with_c += 1
                expected = int(d[-3]["c"])  # the last dict before channel name and pair
                assert u.checksum == expected
                matched += kraken_checksum(book, decimals[d[-1]]) == expected
        out.books.clear()
    assert with_c == matched == parser.checksums_verified == 4269 and parser.checksum_mismatches == 0
    assert not out.rejects and out.trade_count == 0
    # the one update with both sides in two dicts: [id, {"a": ...}, {"b": ..., "c": ...}, "book-1000", pair]
    assert sum(1 for f in RAW if f.startswith("[") and len(json.loads(f)) == 5) == 1


def test_snapshot_and_update_levels_are_read_exactly() -> None:
    parser, out = KrakenParser(), FrameOutput()
    for raw in RAW[:40]:
        parse_frame(parser, raw, out)
    first = next(json.loads(f) for f in RAW if f.startswith("[") and '"as"' in f)
    snap = next(u for u in out.books if u.snapshot and u.market == "KRAKEN:ADABTC")
    assert first[-1] == "ADA/XBT" and snap.asks == [[float(p), float(v)] for p, v, _ in first[1]["as"]]
    assert snap.bids == [[float(p), float(v)] for p, v, _ in first[1]["bs"]]
    assert snap.ts == max(seconds_ns(r[2]) for r in first[1]["as"] + first[1]["bs"])
    controls = [c["event"] for c in out.control]
    assert controls.count("subscriptionStatus") == 10 and "systemStatus" in controls and "heartbeat" in controls


def test_v1_trades_from_the_documented_format() -> None:
    out = FrameOutput()
    assert parse_frame(KrakenParser(), V1_TRADE, out)
    t = out.drain_trades()
    assert t.markets == ["KRAKEN:BTCUSD"] and t.price.tolist() == [5541.2, 6060.0]
    assert t.size.tolist() == [0.15850568, 0.02455] and t.side.tolist() == [SIDE_SELL, SIDE_BUY]
    assert t.ts.tolist() == [1534614057321597000, 1534614057324998000] and t.trade_id.tolist() == [-1, -1]


def test_v2_fixtures() -> None:
    out = FrameOutput()
    p = KrakenParser()
    for name in ("ws_trade_update.json", "ws_book_snapshot.json", "ws_book_update.json"):
        assert parse_frame(p, (FIXTURES / name).read_bytes(), out), (name, out.last_error)
    t = out.drain_trades()
    assert t.markets == ["KRAKEN:BTCUSD"] and t.trade_id.tolist() == [10218208, 10218209]
    assert t.price.tolist() == [105944.2, 105910.5] and t.size.tolist() == [0.00027625, 0.0001246]
    assert t.side.tolist() == [SIDE_BUY, SIDE_SELL]  # v2 side is the taker's
    assert t.ts.tolist() == [1696613755440295000, 1696613756123456000]
    snap, upd = out.books
    assert snap.snapshot and snap.checksum == 2439117997 and snap.bids[0] == [105944.2, 0.136]
    assert not upd.snapshot and upd.checksum == 2114181697 and upd.bids == [[105944.2, 0.25]] and upd.asks == []


def test_depth_cut_goes_out_as_removals_and_a_bad_checksum_is_reported() -> None:
    """Kraken drops levels beyond the subscribed depth; the parser emits them as size-0 rows so an L2Book
    fed its output stays equal to the venue's book."""
    p, out = KrakenParser(), FrameOutput()
    snap = ('[7,{"as":[["10.10","1.00000000","1.1"],["10.20","2.00000000","1.2"],["10.30","3.00000000","1.3"]],'
            '"bs":[["9.90","1.00000000","1.1"],["9.80","2.00000000","1.2"],["9.70","3.00000000","1.3"]]},'
            '"book-3","XBT/USD"]')
    assert parse_frame(p, snap, out)
    # a new best ask and a new best bid push 10.30 and 9.70 out of the 3-level window
    text = "1005" + "50000000" + "1010" + "100000000" + "1020" + "200000000" + "995" + "50000000" \
           + "990" + "100000000" + "980" + "200000000"
    c = zlib.crc32(text.encode())
    upd = (f'[7,{{"a":[["10.05","0.50000000","2.0"]]}},{{"b":[["9.95","0.50000000","2.0","r"]],"c":"{c}"}},'
           '"book-3","XBT/USD"]')
    assert parse_frame(p, upd, out)
    book = L2Book("KRAKEN:BTCUSD")
    book.reset(out.books[0])
    book.apply(out.books[1])
    assert out.books[1].asks == [[10.05, 0.5], [10.3, 0.0]] and out.books[1].bids == [[9.95, 0.5], [9.7, 0.0]]
    assert sorted(book.asks) == [10.05, 10.1, 10.2] and sorted(book.bids) == [9.8, 9.9, 9.95]
    assert p.checksums_verified == 1 and kraken_checksum(book, 2) == c and out.books[1].ts == 2_000_000_000
    assert parse_frame(p, '[7,{"a":[["10.10","0.00000000","3.0"]],"c":"12345"},"book-3","XBT/USD"]', out)
    assert p.checksum_mismatches == 1 and out.control[-1]["event"] == "checksumMismatch"


def test_kraken_book_keeps_strings_and_order() -> None:
    b = KrakenBook(depth=2)
    b.reset([(2.0, "2.0", 1.0, "1.0"), (1.5, "1.5", 1.0, "1.0")], [(1.0, "1.0", 1.0, "1.00")])
    assert b.top() == ([("1.5", "1.0"), ("2.0", "1.0")], [("1.0", "1.00")])
    assert b.apply([(1.5, "1.5", 0.0, "0.0"), (1.6, "1.6", 2.0, "2.0"), (1.7, "1.7", 1.0, "1.0")], []) == ([2.0], [])
    assert b.top(1) == ([("1.6", "2.0")], [("1.0", "1.00")])


def test_control_and_error_messages() -> None:
    p, out = KrakenParser(), FrameOutput()
    assert parse_frame(p, '{"event":"pong","reqid":42}', out)
    assert not parse_frame(p, '{"errorMessage":"Currency pair not supported XBT/XYZ","event":"subscriptionStatus",'
                              '"pair":"XBT/XYZ","status":"error","subscription":{"name":"trade"}}', out)
    assert not parse_frame(p, '{"method":"subscribe","success":false,"error":"Currency pair not supported"}', out)
    assert not parse_frame(p, '{"event":"somethingNew"}', out)
    assert not parse_frame(p, '[1,{"a":[["1.0","1.0"]]},"book-10","XBT/USD"]', out)  # level without a time
    assert not parse_frame(p, '[1,{"a":[[1.0,"1.0","1.0"]]},"book-10","XBT/USD"]', out)  # price not a string
    assert not parse_frame(p, '[1,[["1.0","1.0","1.0","x","l",""]],"trade","XBT/USD"]', out)
    assert not parse_frame(p, '[1,{"c":"1"},"book-10","XBT/USD"]', out)
    assert dict(out.rejects) == {"venue_error": 2, "unknown_message": 1, "bad_value": 3, "missing_field": 1}
    assert [c["event"] for c in out.control] == ["pong"] and not out.books and not out.trade_count


def test_subscribe_ping_and_capture_requests() -> None:
    sent = [json.loads(c.payload) for c in read_capture(CAPTURE) if c.kind == SENT]
    assert sent[0]["subscription"] == {"name": "book", "depth": 1000}
    venue = Kraken(channels=("trade", "book"), book_depth=1000)
    frames = [json.loads(f) for f in venue.subscribe_frames(["xbt/usd", "ETH/EUR"])]
    assert frames == [{"event": "subscribe", "pair": ["XBT/USD", "ETH/EUR"], "subscription": {"name": "trade"}},
                      {"event": "subscribe", "pair": ["XBT/USD", "ETH/EUR"],
                       "subscription": {"name": "book", "depth": 1000}}]
    assert json.loads(venue.ping_frame()) == {"event": "ping"} and not Kraken.trade_ids_contiguous
    assert venue.market("XBT/USD") == "KRAKEN:BTCUSD" and isinstance(make_venue("kraken"), Kraken)
    with pytest.raises(ValueError, match="book depth"):
        Kraken(book_depth=50)


def test_rest_trades_and_depth() -> None:
    venue = Kraken()
    assert venue.trades_request("XBT/USD", 1762795433971744500, 5000) == (
        "/0/public/Trades", {"pair": "XBTUSD", "count": 1000, "since": 1762795433971744500})
    assert venue.trades_request("XBT/USD", -1, 10) == ("/0/public/Trades", {"pair": "XBTUSD", "count": 10})
    body = (FIXTURES / "http_trades.json").read_bytes()
    rows = json.loads(body, parse_float=str)["result"]["XBTUSDT"]
    out = FrameOutput()
    venue.parse_trades_response("XBT/USDT", body, out)
    t = out.drain_trades()
    assert len(t) == len(rows) > 100 and t.markets == ["KRAKEN:BTCUSDT"]
    assert t.ts[0] == 1762795433971744500 and t.ts[-1] == 1762820035982277900  # the float text, exact
    for i, r in enumerate(rows):
        assert t.price[i] == float(r[0]) and t.size[i] == float(r[1]) and t.trade_id[i] == r[6]
        assert t.side[i] == (SIDE_BUY if r[3] == "b" else SIDE_SELL)
    assert (t.trade_id[1:] - t.trade_id[:-1] == 1).all()  # REST ids are consecutive, unlike v1's none
    with pytest.raises(FrameError, match="venue_error"):
        venue.parse_trades_response("XBT/USD", b'{"error":["EQuery:Unknown asset pair"]}', FrameOutput())
    assert venue.book_snapshot_request("XBT/USD") == ("/0/public/Depth", {"pair": "XBTUSD", "count": 500})
    snap = venue.parse_book_snapshot("XBT/USDT", (FIXTURES / "http_order_book.json").read_bytes())
    assert snap.snapshot and snap.market == "KRAKEN:BTCUSDT" and snap.ts == 1762820249 * 10**9
    assert snap.asks[0] == [105944.3, 0.136] and snap.bids[-1] == [105916.7, 0.005] and len(snap.bids) == 5


def test_seconds_are_exact_nanoseconds() -> None:
    assert seconds_ns("1618678123.481570") == 1618678123481570000
    assert seconds_ns("1762795433.9717445") == 1762795433971744500
    assert seconds_ns("1618678123") == 1618678123000000000
    for bad in ("1.2.3", "-1.0", "1e9", " 1", "1.", "1.1234567891", 1.5):
        with pytest.raises(FrameError):
            seconds_ns(bad)


# ---- fuzzing ------------------------------------------------------------------------------------
MUTATIONS = st.sampled_from(["drop", "wrong_type", "truncate", "flip", "huge", "negative", "nan", "null", "zero",
                             "number"])


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
    slots = _slots(tree, [])
    if not slots:
        return frame
    container, key = slots[where % len(slots)]
    if how == "drop":
        del container[key]
    else:
        container[key] = {"wrong_type": {"nested": [1, 2]}, "huge": "9" * 400, "negative": "-1", "nan": "NaN",
                          "null": None, "zero": "0", "number": 1e300}[how]
    return json.dumps(tree)


# one parser holding every snapshot, so mutated updates exercise the kept books
PARSER = KrakenParser()
for _f in RAW:
    if '"as"' in _f or not _f.startswith("["):
        parse_frame(PARSER, _f, FrameOutput())
POOL = [f for f in RAW if f.startswith("[") and '"as"' not in f][:400] + [f for f in RAW if not f.startswith("[")] \
    + [V1_TRADE] * 50 + [(FIXTURES / "ws_trade_update.json").read_text()] * 20
SNAPSHOTS = [f for f in RAW if '"as"' in f]


def _state(p: KrakenParser):
    return {k: (dict(b.asks), dict(b.bids), list(b._ask_prices), list(b._bid_prices)) for k, b in p.books.items()}


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 100_000), MUTATIONS, st.integers(0, 100_000))
def test_fuzzed_real_frames_never_raise_and_rejects_have_reasons(pick, how, where) -> None:
    frame = mutate((POOL + SNAPSHOTS[:2])[pick % (len(POOL) + 2)], how, where)
    before = _state(PARSER) if pick % 10 == 0 else None  # copying the books is the slow part: sample it
    out = FrameOutput()
    ok = parse_frame(PARSER, frame, out)
    assert ok or (sum(out.rejects.values()) == 1 and not out.books and not out.trade_count)
    if not ok and before is not None:
        assert _state(PARSER) == before  # a refused frame leaves the kept books untouched
    trades = out.drain_trades()
    assert (trades.price > 0).all() and (trades.size > 0).all() and (trades.ts > 0).all()
    for b in out.books:
        assert all(p > 0 and s >= 0 for p, s in b.bids + b.asks)
