"""OKX: the recorded real session parses to exact trades, every book message's CRC32 checksum matches
the book kept from the capture, the documented formats parse exactly, mangled frames are refused."""

from __future__ import annotations

import json
import zlib
from functools import cache
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.venues.book import APPLIED, GAP, BookSync
from engine.venues.capture import received_frames
from engine.venues.frames import FrameError, FrameOutput, parse_frame
from engine.venues.okx import Okx, OkxBook, OkxParser, okx_checksum
from engine.venues.registry import make_venue
from schemas.batches import SIDE_BUY, SIDE_SELL
from tests.data_paths import SHARED_DATA
from tests.venues.test_bybit import (  # the same frame mutations as Bybit's
    MUTATIONS,
    check_output,
    mutate,
)

WIRE = Path(SHARED_DATA) / "wire"
FIXTURES = WIRE / "venue-fixtures" / "okx" / "test_data"
MARKETS = {"BTC-USDT": "OKX:BTCUSDT", "BTC-USD-220527": "OKX:BTCUSD-220527", "UNI-USD-SWAP": "OKX:UNIUSD-SWAP"}


@cache
def capture() -> tuple[str, ...]:
    return tuple(received_frames(WIRE / "OKX.ws.1.0"))


@cache
def book_messages() -> tuple[dict, ...]:
    return tuple(json.loads(f) for f in capture() if '"channel":"books"' in f and '"data"' in f)


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def parse_all(frames) -> FrameOutput:
    parser, out = Okx().parser(), FrameOutput()
    for f in frames:
        parse_frame(parser, f, out)
    return out


def channel(d: dict) -> str | None:
    return d["arg"]["channel"] if "data" in d else None


# ---- the real capture -------------------------------------------------------------------------

def test_every_trade_of_the_capture_comes_out_exactly() -> None:
    out = parse_all(capture())
    assert not out.rejects and out.frames == len(capture())
    trades = out.drain_trades()
    raw = [json.loads(f) for f in capture()]
    expected = [e for d in raw if channel(d) == "trades" for e in d["data"]]
    assert len(trades) == len(expected) == 74
    for i, e in enumerate(expected):
        assert trades.markets[trades.market[i]] == MARKETS[e["instId"]]
        assert trades.ts[i] == int(e["ts"]) * 1_000_000
        assert trades.price[i] == float(e["px"]) and trades.size[i] == float(e["sz"])
        assert trades.side[i] == {"buy": SIDE_BUY, "sell": SIDE_SELL}[e["side"]]  # the taker's side
        assert trades.trade_id[i] == int(e["tradeId"])
    assert len(out.control) == sum(1 for d in raw if d.get("event") == "subscribe") == 18


def test_every_book_checksum_of_the_capture_matches() -> None:
    """The book kept per instrument from the capture reproduces OKX's checksum after every books
    message, and the parser's BookUpdates build the same book (never crossed)."""
    out = parse_all(capture())
    raw = book_messages()
    books: dict[str, OkxBook] = {}
    syncs: dict[str, BookSync] = {}
    matched = 0
    assert len(out.books) == len(raw) == 290
    for d, upd in zip(raw, out.books):
        inst, entry = d["arg"]["instId"], d["data"][0]
        book = books.setdefault(inst, OkxBook())
        book.apply(d["action"], entry)
        assert book.checksum() == entry["checksum"] == upd.checksum, (inst, d["action"], entry["ts"])
        matched += 1
        # the parser's float levels, kept by BookSync, hold the same book as the strings
        assert upd.market == MARKETS[inst] and upd.snapshot == (d["action"] == "snapshot")
        sync = syncs.setdefault(upd.market, BookSync(upd.market, "none"))
        assert sync.on_update(upd) == APPLIED and not sync.book.crossed()
        assert sync.book.bids == {p: float(sz) for p, (_, sz) in book.bids.items()}
        assert sync.book.asks == {p: float(sz) for p, (_, sz) in book.asks.items()}
    assert matched == 290 and sum(u.snapshot for u in out.books) == 3
    # this 2022 session predates seqId/prevSeqId: no sequence to check, so the updates carry -1
    assert not any("seqId" in d["data"][0] for d in raw)
    assert {(u.first_seq, u.last_seq, u.prev_seq) for u in out.books} == {(-1, -1, -1)}


def test_the_checksum_needs_the_original_strings() -> None:
    """A level sent as "2" and one rewritten as "2.0" are the same float but a different checksum."""
    d = json.loads(next(f for f in capture() if '"action":"snapshot"' in f))
    entry = d["data"][0]
    book = OkxBook()
    book.apply("snapshot", entry)
    assert book.checksum() == entry["checksum"]
    entry["bids"][0][1] += ".0"
    book.apply("snapshot", entry)
    assert book.checksum() != entry["checksum"]


def test_checksum_string_as_documented() -> None:
    # OKX docs: bids 3366.1/7, 3366/6 and asks 3366.8/9, 3368/8 -> "3366.1:7:3366.8:9:3366:6:3368:8"
    bids = [["3366.1", "7", "0", "3"], ["3366", "6", "3", "4"]]
    asks = [["3366.8", "9", "10", "3"], ["3368", "8", "3", "4"]]
    crc = zlib.crc32(b"3366.1:7:3366.8:9:3366:6:3368:8")
    assert okx_checksum(bids, asks) == (crc - 2**32 if crc >= 2**31 else crc)
    # unequal sides: the longer side's extra levels follow; only the top 25 of each side count
    crc = zlib.crc32(b"3366.1:7:3366.8:9:3366:6")
    assert okx_checksum(bids, asks[:1]) == (crc - 2**32 if crc >= 2**31 else crc)
    deep = [[str(100 - i), "1"] for i in range(30)]
    assert okx_checksum(deep, []) == okx_checksum(deep[:25], [])
    assert -(2**31) <= okx_checksum(deep, asks) < 2**31


# ---- the documented formats -------------------------------------------------------------------

def test_documented_trade_and_book_messages_exactly() -> None:
    out, p = FrameOutput(), Okx().parser()
    assert parse_frame(p, fixture("ws_trades.json"), out)  # an aggregated row (count 3)
    t = out.drain_trades()
    assert [t.markets[m] for m in t.market] == ["OKX:BTCUSD"] and t.trade_id.tolist() == [130639474]
    assert t.ts.tolist() == [1630048897897_000_000] and t.side.tolist() == [SIDE_BUY]
    assert t.price.tolist() == [42219.9] and t.size.tolist() == [0.12060306]
    assert parse_frame(p, fixture("ws_books_snapshot.json"), out)
    assert parse_frame(p, fixture("ws_books_update.json"), out)
    snap, upd = out.books
    assert snap.snapshot and (snap.first_seq, snap.last_seq, snap.prev_seq) == (123456, 123456, -1)
    assert not upd.snapshot and (upd.first_seq, upd.last_seq, upd.prev_seq) == (123457, 123457, 123456)
    assert snap.ts == 1597026383085_000_000 and snap.checksum == -855196043  # passed on as sent
    assert snap.asks[:2] == [[8476.98, 415.0], [8477.0, 7.0]] and snap.bids[-1] == [8446.0, 95.0]
    sync = BookSync("OKX:BTCUSDT", "prev_id")
    assert sync.on_update(snap) == APPLIED and sync.on_update(upd) == APPLIED
    assert sync.on_update(upd.model_copy(update={"prev_seq": 123458, "first_seq": 123459, "last_seq": 123459})) == GAP
    # the docs' example checksum is illustrative, not the CRC of its levels; the capture test checks real ones
    book = OkxBook()
    book.apply("snapshot", json.loads(fixture("ws_books_snapshot.json"))["data"][0])
    assert book.checksum() != snap.checksum


def test_events_and_unknown_messages() -> None:
    p, out = Okx().parser(), FrameOutput()
    assert parse_frame(p, '{"event":"subscribe","arg":{"channel":"trades","instId":"BTC-USDT"},"connId":"a"}', out)
    assert parse_frame(p, '{"event":"notice","code":"64008","msg":"service upgrade","connId":"a"}', out)
    assert parse_frame(p, fixture("ws_tickers.json"), out)  # ignored channel
    assert not parse_frame(p, '{"event":"error","code":"60012","msg":"Invalid request","connId":"a"}', out)
    assert not parse_frame(p, '{"arg":{"channel":"candle1m","instId":"BTC-USDT"},"data":[]}', out)
    assert not parse_frame(p, '{"event":"somethingNew"}', out)
    assert not parse_frame(p, '{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT"}]}', out)
    assert dict(out.rejects) == {"venue_error": 1, "unknown_message": 2, "missing_field": 1}
    assert len(out.control) == 2 and out.trade_count == 0
    # the heartbeat reply is the text "pong", not JSON: the parser names it for parse_frame to skip
    assert "pong" in OkxParser.text_control and Okx().ping_frame() == "ping"


# ---- REST -------------------------------------------------------------------------------------

def test_rest_trades_oldest_first_and_after_the_cursor() -> None:
    venue, out = Okx(), FrameOutput()
    body = fixture("http_get_trades.json").encode()  # newest first, as served
    venue.parse_trades_response("BTC-USDT", body, out)
    t = out.drain_trades()
    assert t.trade_id.tolist() == [734864332, 734864333] and t.side.tolist() == [SIDE_BUY, SIDE_SELL]
    assert t.price.tolist() == [102537.9, 102537.9] and t.size.tolist() == [0.0000125, 0.00013669]
    assert t.ts.tolist() == [1747087161666_000_000, 1747087163557_000_000]
    assert [t.markets[m] for m in t.market] == ["OKX:BTCUSDT"] * 2
    venue.parse_trades_response("BTC-USDT", body, out, after_id=734864332)
    assert out.drain_trades().trade_id.tolist() == [734864333]
    with pytest.raises(FrameError, match="50011"):
        venue.parse_trades_response("BTC-USDT", b'{"code":"50011","msg":"Too Many Requests","data":[]}', out)
    assert out.trade_count == 0


def test_rest_requests_and_book_snapshot() -> None:
    venue = Okx()
    # before=X: ids > X; after=Y: ids < Y (type=1 pages by tradeId); together: the next n ids
    assert venue.trades_request("BTC-USDT", 1000, 500) == (
        "/api/v5/market/history-trades",
        {"instId": "BTC-USDT", "type": 1, "before": 1000, "after": 1101, "limit": 100})
    assert venue.trades_request("BTC-USDT", 1000, 3)[1]["after"] == 1004
    assert venue.book_snapshot_request("btc-usdt") == ("/api/v5/market/books", {"instId": "BTC-USDT", "sz": 400})
    snap = venue.parse_book_snapshot("BTC-USDT", fixture("http_get_order_book.json").encode())
    assert snap.market == "OKX:BTCUSDT" and snap.snapshot and snap.ts == 1704067200000_000_000
    assert snap.asks == [[41006.8, 0.60038921], [41006.9, 0.30178218], [41007.0, 2.0584253]]
    assert snap.bids == [[41006.7, 0.487921], [41006.6, 0.2397], [41006.5, 1.125]]
    assert snap.last_seq == -1  # the REST book has no seqId


def test_venue_urls_and_subscriptions() -> None:
    venue = Okx(channels=("trades", "books"))
    assert venue.ws_url == "wss://ws.okx.com:8443/ws/v5/public" and venue.rest_url == "https://www.okx.com"
    frames = [json.loads(f) for f in venue.subscribe_frames(["BTC-USDT", "UNI-USD-SWAP"])]
    assert frames == [{"op": "subscribe", "args": [
        {"channel": "trades", "instId": "BTC-USDT"}, {"channel": "books", "instId": "BTC-USDT"},
        {"channel": "trades", "instId": "UNI-USD-SWAP"}, {"channel": "books", "instId": "UNI-USD-SWAP"}]}]
    assert len(Okx().subscribe_frames([f"C{i}-USDT" for i in range(150)])) == 2
    assert venue.limits.ping_interval_s == 25.0 and not venue.trade_ids_contiguous  # OKX closes after 30 s idle
    assert venue.market("UNI-USD-SWAP") == "OKX:UNIUSD-SWAP"
    assert isinstance(make_venue("okx"), Okx) and make_venue("okx", ("books",)).channels == ("books",)
    with pytest.raises(ValueError, match="unknown channels"):
        Okx(channels=("trades", "nope"))


# ---- fuzzing ----------------------------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(st.integers(0, 100_000), st.sampled_from(MUTATIONS), st.integers(0, 100_000))
def test_fuzzed_real_frames_are_refused_with_a_reason(pick, how, where) -> None:
    frames = capture()
    out = FrameOutput()
    ok = parse_frame(Okx().parser(), mutate(frames[pick % len(frames)], how, where), out)
    check_output(out, ok)
    for b in out.books:
        assert b.checksum is None or -(2**31) <= b.checksum < 2**31


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from(["-1", "0", "NaN", "inf", "9" * 400, "", "abc", None, True, -5]),
       st.booleans())
def test_a_trade_with_a_bad_price_or_size_refuses_its_whole_frame(pick, value, price) -> None:
    trades = [f for f in capture() if '"channel":"trades"' in f and '"data"' in f]
    d = json.loads(trades[pick % len(trades)])
    d["data"][0]["px" if price else "sz"] = value
    out = FrameOutput()
    assert not parse_frame(Okx().parser(), json.dumps(d), out)
    assert out.trade_count == 0 and sum(out.rejects.values()) == 1


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 100_000), st.sampled_from(MUTATIONS), st.integers(0, 100_000))
def test_a_refused_book_entry_leaves_the_checksum_book_unchanged(pick, how, where) -> None:
    books = book_messages()
    book = OkxBook()
    book.apply("snapshot", books[0]["data"][0])
    before = (dict(book.bids), dict(book.asks))
    entry = json.loads(mutate(json.dumps(books[1 + pick % 20]["data"][0]), "drop_key" if how in ("truncate", "flip")
                              else how, where))
    try:
        book.apply("update", entry)
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):  # FrameError is a ValueError
        assert (book.bids, book.asks) == before
