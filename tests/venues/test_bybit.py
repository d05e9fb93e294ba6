"""Bybit: the recorded real session (legacy ``realtime`` API) parses to exact trades and an exact
25-level book; the v5 formats parse to exact values; mangled frames are refused, never raised."""

from __future__ import annotations

import json
import math
import uuid
from functools import cache
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.venues.book import APPLIED, GAP, BookSync
from engine.venues.bybit import Bybit
from engine.venues.capture import received_frames
from engine.venues.frames import FrameError, FrameOutput, parse_frame
from engine.venues.registry import make_venue
from schemas.batches import SIDE_BUY, SIDE_SELL
from tests.data_paths import SHARED_DATA

WIRE = Path(SHARED_DATA) / "wire"
FIXTURES = WIRE / "venue-fixtures" / "bybit" / "test_data"
REASONS = {"bad_json", "missing_field", "bad_value", "unknown_message", "venue_error"}


@cache
def capture() -> tuple[str, ...]:
    return tuple(received_frames(WIRE / "BYBIT.ws.26.0"))


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def parse_all(frames, parser=None) -> FrameOutput:
    parser = parser or Bybit().parser()
    out = FrameOutput()
    for f in frames:
        parse_frame(parser, f, out)
    return out


# ---- the real capture -------------------------------------------------------------------------

def test_every_trade_of_the_capture_comes_out_exactly() -> None:
    out = parse_all(capture())
    assert not out.rejects and out.frames == len(capture())
    trades = out.drain_trades()
    raw = [json.loads(f) for f in capture()]
    expected = [e for d in raw if d.get("topic", "").startswith("trade.") for e in d["data"]]
    assert len(trades) == len(expected) == 150
    for i, e in enumerate(expected):
        assert trades.markets[trades.market[i]] == "BYBIT:" + e["symbol"]
        assert trades.ts[i] == e["trade_time_ms"] * 1_000_000
        assert trades.price[i] == float(e["price"]) and trades.size[i] == float(e["size"])
        assert trades.side[i] == {"Buy": SIDE_BUY, "Sell": SIDE_SELL}[e["side"]]  # the taker's side
        uuid.UUID(e["trade_id"])  # legacy ids are UUIDs: no room in the int64 column
        assert trades.trade_id[i] == -1
    # the subscription acks are control messages, nothing else is
    assert len(out.control) == sum(1 for d in raw if "success" in d) == 4


def _independent_books(raw: list[dict]):
    """Each book message applied to an id-keyed book read straight from the JSON: yields
    (symbol, {price: size} bids, {price: size} asks) after every message."""
    books: dict[str, dict[int, tuple[str, float, float]]] = {}
    for d in raw:
        topic = d.get("topic", "")
        if not topic.startswith("orderBookL2_25."):
            continue
        symbol = topic.split(".")[1]
        if d["type"] == "snapshot":
            books[symbol] = {e["id"]: (e["side"], float(e["price"]), e["size"]) for e in d["data"]}
        else:
            book = books[symbol]
            for e in d["data"]["delete"]:
                del book[e["id"]]
            for e in d["data"]["update"] + d["data"]["insert"]:
                book[e["id"]] = (e["side"], float(e["price"]), e["size"])
        levels = books[symbol].values()
        yield (symbol, {p: s for side, p, s in levels if side == "Buy"},
               {p: s for side, p, s in levels if side == "Sell"})


def test_legacy_book_equals_an_independent_rebuild_and_never_crosses() -> None:
    """Snapshot + deltas kept with the parser's BookUpdates equal the book rebuilt by level id from the
    raw JSON after every message: 25 levels a side, never crossed."""
    out = parse_all(capture())
    raw = [json.loads(f) for f in capture()]
    syncs: dict[str, BookSync] = {}
    expected = list(_independent_books(raw))
    assert len(out.books) == len(expected) == 1018
    assert sum(u.snapshot for u in out.books) == 2
    last_seq: dict[str, int] = {}
    for upd, (symbol, bids, asks) in zip(out.books, expected):
        assert upd.market == "BYBIT:" + symbol
        # legacy cross_seq only increases: not consecutive, so the "none" rule
        assert upd.last_seq > last_seq.get(upd.market, -1)
        last_seq[upd.market] = upd.last_seq
        sync = syncs.setdefault(upd.market, BookSync(upd.market, "none"))
        assert sync.on_update(upd) == APPLIED
        assert sync.book.bids == bids and sync.book.asks == asks
        assert len(bids) == len(asks) == 25 and not sync.book.crossed()
    assert set(syncs) == {"BYBIT:BTCUSD", "BYBIT:EOSUSD"}


def test_legacy_deletes_without_a_price_use_the_level_id() -> None:
    """The recorded deletes happen to carry a price; without it the parser's id -> price map must give
    the same book updates."""
    stripped, n = [], 0
    for f in capture():
        d = json.loads(f)
        if d.get("type") == "delta":
            for e in d["data"]["delete"]:
                del e["price"]
                n += 1
        stripped.append(json.dumps(d))
    assert n == 189
    assert parse_all(stripped).books == parse_all(capture()).books


def test_a_delete_of_a_level_never_seen_removes_nothing() -> None:
    out = FrameOutput()
    delta = {"topic": "orderBookL2_25.BTCUSD", "type": "delta", "cross_seq": 7, "timestamp_e6": 1618677786598877,
             "data": {"delete": [{"id": 1, "side": "Buy", "symbol": "BTCUSD"}], "update": [], "insert": []}}
    assert parse_frame(Bybit().parser(), json.dumps(delta), out)
    assert out.books[0].bids == [] and out.books[0].asks == []
    del delta["data"]["delete"]
    delta["data"]["update"] = [{"id": 2, "side": "Buy", "symbol": "BTCUSD", "size": 5}]  # no price, never seen
    assert not parse_frame(Bybit().parser(), json.dumps(delta), out)
    assert dict(out.rejects) == {"missing_field": 1}


# ---- the v5 formats ---------------------------------------------------------------------------

PUBLIC_TRADE = {"topic": "publicTrade.BTCUSDT", "type": "snapshot", "ts": 1672304486868, "data": [
    {"T": 1672304486865, "s": "BTCUSDT", "S": "Buy", "v": "0.001", "p": "16578.50", "L": "PlusTick",
     "i": "2290000000061666327", "BT": False},
    {"T": 1672304486866, "s": "BTCUSDT", "S": "Sell", "v": "0.25", "p": "16578.00", "L": "MinusTick",
     "i": "2290000000061666328", "BT": False}]}


def test_v5_public_trades_exactly() -> None:
    out = FrameOutput()
    p = Bybit().parser()
    assert parse_frame(p, fixture("ws_public_trade.json"), out)  # derivatives: a UUID id
    assert parse_frame(p, json.dumps(PUBLIC_TRADE), out)  # spot: numeric ids
    t = out.drain_trades()
    assert [t.markets[m] for m in t.market] == ["BYBIT:BTCUSDT"] * 3
    assert t.ts.tolist() == [1709891679000_000_000, 1672304486865_000_000, 1672304486866_000_000]
    assert t.price.tolist() == [27451.0, 16578.5, 16578.0] and t.size.tolist() == [0.01, 0.001, 0.25]
    assert t.side.tolist() == [SIDE_BUY, SIDE_BUY, SIDE_SELL]
    assert t.trade_id.tolist() == [-1, 2290000000061666327, 2290000000061666328]


def test_v5_orderbook_snapshot_and_delta_follow_the_consecutive_rule() -> None:
    out = FrameOutput()
    p = Bybit().parser()
    assert parse_frame(p, fixture("ws_orderbook_snapshot.json"), out)
    assert parse_frame(p, fixture("ws_orderbook_delta.json"), out)
    snap, delta = out.books
    assert snap.market == "BYBIT:BTCUSDT" and snap.snapshot and snap.ts == 1709891679000_000_000
    assert snap.bids == [[27450.0, 0.5], [27449.5, 1.0]] and snap.asks == [[27451.0, 0.75], [27451.5, 0.9]]
    assert (snap.first_seq, snap.last_seq, snap.prev_seq) == (123456789, 123456789, -1)
    assert not delta.snapshot and delta.first_seq == delta.last_seq == 123456790
    assert delta.bids == [[27450.0, 0.4]] and delta.asks == [[27451.0, 0.0]]
    sync = BookSync(snap.market, "consecutive")
    assert sync.on_update(snap) == APPLIED and sync.on_update(delta) == APPLIED
    assert sync.book.bids == {27450.0: 0.4, 27449.5: 1.0} and sync.book.asks == {27451.5: 0.9}
    skipped = delta.model_copy(update={"first_seq": 123456792, "last_seq": 123456792})
    assert sync.on_update(skipped) == GAP  # 123456791 lost


def test_v5_update_id_1_is_a_fresh_snapshot() -> None:
    d = json.loads(fixture("ws_orderbook_delta.json"))
    d["data"]["u"] = 1  # the venue restarted its book service
    out = FrameOutput()
    assert parse_frame(Bybit().parser(), json.dumps(d), out)
    assert out.books[0].snapshot and out.books[0].last_seq == 1


def test_control_messages_and_venue_errors() -> None:
    p, out = Bybit().parser(), FrameOutput()
    ok = [{"success": True, "ret_msg": "", "conn_id": "c", "req_id": "", "op": "subscribe"},
          {"success": True, "ret_msg": "pong", "conn_id": "c", "op": "ping"},
          {"req_id": "1", "op": "pong", "args": ["1675418560633"], "conn_id": "c"}]
    for msg in ok:
        assert parse_frame(p, json.dumps(msg), out)
    assert out.control == ok
    assert parse_frame(p, fixture("ws_ticker_linear.json"), out)  # ignored topic
    assert parse_frame(p, fixture("ws_kline.json"), out)
    assert not parse_frame(p, '{"success":false,"ret_msg":"error:handler not found","op":"subscribe"}', out)
    assert not parse_frame(p, '{"topic":"somethingNew.BTCUSDT","data":[]}', out)
    assert not parse_frame(p, '{"hello":1}', out)
    assert not parse_frame(p, '{"topic":"publicTrade.BTCUSDT","data":[{"s":"BTCUSDT"}]}', out)
    assert dict(out.rejects) == {"venue_error": 1, "unknown_message": 2, "missing_field": 1}
    assert out.trade_count == 0 and not out.books and len(out.control) == 3


# ---- REST -------------------------------------------------------------------------------------

def test_rest_recent_trades_oldest_first() -> None:
    venue, out = Bybit(category="linear"), FrameOutput()
    venue.parse_trades_response("BTCUSDT", fixture("http_get_trades_recent.json").encode(), out)
    body = {"retCode": 0, "retMsg": "OK", "result": {"category": "spot", "list": [  # newest first, as served
        {"execId": "2100000000007764265", "symbol": "BTCUSDT", "price": "16618.51", "size": "0.2", "side": "Sell",
         "time": "1672052955760", "isBlockTrade": False},
        {"execId": "2100000000007764263", "symbol": "BTCUSDT", "price": "16618.49", "size": "0.00012",
         "side": "Buy", "time": "1672052955758", "isBlockTrade": False}]}}
    Bybit().parse_trades_response("BTCUSDT", json.dumps(body).encode(), out)
    t = out.drain_trades()
    assert t.trade_id.tolist() == [-1, 2100000000007764263, 2100000000007764265]
    assert t.ts.tolist() == [1709891679000_000_000, 1672052955758_000_000, 1672052955760_000_000]
    assert t.price.tolist() == [27450.5, 16618.49, 16618.51] and t.size.tolist() == [0.005, 0.00012, 0.2]
    assert t.side.tolist() == [SIDE_BUY, SIDE_BUY, SIDE_SELL]
    with pytest.raises(FrameError, match="retCode 10001"):
        Bybit().parse_trades_response("BTCUSDT", b'{"retCode":10001,"retMsg":"params error","result":{}}', out)
    bad = json.loads(json.dumps(body))
    bad["result"]["list"][1]["price"] = "-1"
    with pytest.raises(FrameError):
        Bybit().parse_trades_response("BTCUSDT", json.dumps(bad).encode(), out)
    assert out.trade_count == 0  # a refused reply leaves nothing behind


def test_rest_book_snapshot() -> None:
    venue = Bybit(category="linear")
    assert venue.book_snapshot_request("btcusdt") == ("/v5/market/orderbook",
                                                      {"category": "linear", "symbol": "BTCUSDT", "limit": 200})
    snap = venue.parse_book_snapshot("BTCUSDT", fixture("http_get_orderbook.json").encode())
    assert snap.market == "BYBIT:BTCUSDT" and snap.snapshot and snap.first_seq == snap.last_seq == 1234567
    assert snap.ts == 1709891679000_000_000
    assert snap.bids == [[27450.5, 1.5], [27450.0, 2.0], [27449.5, 0.75]]
    assert snap.asks == [[27451.0, 1.2], [27451.5, 3.0], [27452.0, 0.5]]


def test_venue_urls_subscriptions_and_requests() -> None:
    spot = Bybit()
    assert spot.ws_url == "wss://stream.bybit.com/v5/public/spot" and spot.rest_url == "https://api.bybit.com"
    assert Bybit(category="inverse").ws_url == "wss://stream.bybit.com/v5/public/inverse"
    assert spot.connect_url("ws://127.0.0.1:9/v5/public/spot", ["BTCUSDT"]) == "ws://127.0.0.1:9/v5/public/spot"
    symbols = [f"S{i}USDT" for i in range(12)]
    frames = [json.loads(f) for f in Bybit(channels=("publicTrade", "orderbook.50")).subscribe_frames(symbols)]
    assert [len(f["args"]) for f in frames] == [10, 10, 4] and {f["op"] for f in frames} == {"subscribe"}
    assert frames[0]["args"][:2] == ["publicTrade.S0USDT", "orderbook.50.S0USDT"]
    assert json.loads(spot.ping_frame()) == {"op": "ping"} and spot.limits.ping_interval_s == 20.0
    assert not spot.trade_ids_contiguous
    assert spot.trades_request("btcusdt", 5, 10) == ("/v5/market/recent-trade",
                                                     {"category": "spot", "symbol": "BTCUSDT", "limit": 60})
    assert Bybit(category="linear").trades_request("BTCUSDT", 5, 10)[1]["limit"] == 1000
    assert spot.market("BTCUSDT") == "BYBIT:BTCUSDT"
    assert isinstance(make_venue("bybit"), Bybit) and make_venue("bybit", ("orderbook.1",)).channels == ("orderbook.1",)
    with pytest.raises(ValueError, match="unknown channels"):
        Bybit(channels=("publicTrade", "nope"))
    with pytest.raises(ValueError, match="category"):
        Bybit(category="option")


# ---- fuzzing ----------------------------------------------------------------------------------

MUTATIONS = ("drop_key", "wrong_type", "truncate", "flip", "huge", "negative", "nan", "null", "float", "empty")
BAD = {"wrong_type": {"nested": [1, 2]}, "huge": "9" * 400, "negative": "-1", "nan": "NaN", "null": None,
       "float": 1.5, "empty": ""}


def _paths(node, path=()):
    """Every key/index path inside a JSON value."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for k, v in items:
        yield path + (k,)
        yield from _paths(v, path + (k,))


def mutate(frame: str, how: str, where: int) -> str:
    """``frame`` with one thing broken: a byte cut or flipped, or one field anywhere dropped or replaced."""
    if how == "truncate":
        return frame[: where % len(frame)]
    if how == "flip":
        i = where % len(frame)
        return frame[:i] + chr((ord(frame[i]) + 1 + where % 90) % 128) + frame[i + 1:]
    d = json.loads(frame)
    paths = list(_paths(d))
    if not paths:
        return frame[:-1]
    path = paths[where % len(paths)]
    parent = d
    for k in path[:-1]:
        parent = parent[k]
    if how == "drop_key":
        del parent[path[-1]]
    else:
        parent[path[-1]] = BAD[how]
    return json.dumps(d)


def check_output(out: FrameOutput, ok: bool) -> None:
    """A frame is parsed or counted once with a known reason; nothing invalid comes out."""
    assert ok or (sum(out.rejects.values()) == 1 and set(out.rejects) <= REASONS and out.last_error)
    t = out.drain_trades()
    assert (t.price > 0).all() and (t.size > 0).all() and (t.ts > 0).all()
    assert all(math.isfinite(x) for x in t.price.tolist() + t.size.tolist())
    for b in out.books:
        assert all(p > 0 and s >= 0 and math.isfinite(p) and math.isfinite(s) for p, s in b.bids + b.asks)


def _primed():
    """A parser that has seen both recorded book snapshots (so deltas touch its id -> price maps)."""
    p = Bybit().parser()
    parse_all([f for f in capture() if '"type":"snapshot"' in f], p)
    return p


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 100_000), st.sampled_from(MUTATIONS), st.integers(0, 100_000))
def test_fuzzed_real_frames_are_refused_with_a_reason_and_leave_no_trace(pick, how, where) -> None:
    frames = capture()
    original = frames[pick % len(frames)]
    parser, out = _primed(), FrameOutput()
    ok = parse_frame(parser, mutate(original, how, where), out)
    check_output(out, ok)
    if not ok:  # a refused frame changed nothing: the parser goes on exactly like an untouched one
        after, clean = FrameOutput(), FrameOutput()
        parse_frame(parser, original, after)
        parse_frame(_primed(), original, clean)
        assert after.books == clean.books and after.trade_count == clean.trade_count


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from(["-1", "0", "NaN", "inf", "9" * 400, "", "abc", None, True, -5]),
       st.booleans(), st.booleans())
def test_a_trade_with_a_bad_price_or_size_refuses_its_whole_frame(pick, value, price, v5) -> None:
    if v5:
        d = json.loads(json.dumps(PUBLIC_TRADE))
    else:
        d = json.loads([f for f in capture() if f.startswith('{"topic":"trade.')][pick % 76])
    row = d["data"][pick % len(d["data"])]
    row[("p" if v5 else "price") if price else ("v" if v5 else "size")] = value
    out = FrameOutput()
    assert not parse_frame(Bybit().parser(), json.dumps(d), out)
    assert out.trade_count == 0 and sum(out.rejects.values()) == 1
