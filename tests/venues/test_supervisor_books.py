"""Book resyncs against malformed REST snapshots, and spawned tasks that fail: never silent.

Every venue's snapshot parser turns a malformed body into a FrameError. The supervisor, pointed at a
fake venue replaying real book streams (Binance spot depth diffs; Bybit v5 orderbook frames made from a
recorded Bybit book), counts each bad snapshot, reports it as ``unrepaired`` for its market, keeps the
book out of sync (nothing is applied over the hole) and retries; once the venue answers well again the
book resyncs, a later gap resyncs it again, and the book equals the venue's own.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
from pathlib import Path

import pytest

from connectors.venues.supervisor import SupervisorConfig, VenueSupervisor
from engine.venues.binance import BinanceFutures, BinanceSpot
from engine.venues.book import L2Book
from engine.venues.bybit import Bybit
from engine.venues.capture import read_capture, received_frames
from engine.venues.coinbase import Coinbase
from engine.venues.frames import FrameError, FrameOutput, parse_frame
from engine.venues.kraken import Kraken
from engine.venues.okx import Okx
from engine.venues.wire import binance_agg_trade_frames
from tests.data_paths import SHARED_DATA
from tests.venues.fake_venue import FakeVenue, binance_agg_trades_route, binance_depth_route, bybit_orderbook_route
from tests.venues.test_supervisor import recorded

WIRE = Path(SHARED_DATA) / "wire"
CONFIG = SupervisorConfig(backoff_initial_s=0.02, backoff_max_s=0.05, hold_s=3.0, stale_after_s=5.0, rest_attempts=2)
HUGE = "__HUGE__"  # replaced by an unquoted 1e400 after encoding: no float holds it

# ---- malformed bodies -------------------------------------------------------------------------
# venue, symbol, a good body, the keys down to the object with the levels, bid and ask keys, sequence key
# (None: the venue's book has none), whether that key is required
SPECS = {
    "binance": (BinanceSpot(), "BTCUSDT", {"lastUpdateId": 100, "bids": [["10.0", "1"]], "asks": [["11.0", "2"]]},
                (), "bids", "asks", "lastUpdateId", True),
    "binance_futures": (BinanceFutures(), "BTCUSDT", {"lastUpdateId": 100, "E": 1700000000000, "T": 1700000000000,
                                                      "bids": [["10.0", "1"]], "asks": [["11.0", "2"]]},
                        (), "bids", "asks", "lastUpdateId", True),
    "bybit": (Bybit(), "BTCUSDT", {"retCode": 0, "retMsg": "OK", "result": {
        "s": "BTCUSDT", "b": [["10.0", "1"]], "a": [["11.0", "2"]], "ts": 1700000000000, "u": 100}},
        ("result",), "b", "a", "u", True),
    "okx": (Okx(), "BTC-USDT", {"code": "0", "msg": "", "data": [{
        "asks": [["11.0", "2", "0", "1"]], "bids": [["10.0", "1", "0", "1"]], "ts": "1700000000000", "seqId": 100}]},
        ("data", 0), "bids", "asks", "seqId", False),
    "kraken": (Kraken(), "XBT/USD", {"error": [], "result": {"XXBTZUSD": {
        "asks": [["11.0", "2", 1700000000]], "bids": [["10.0", "1", 1700000000]]}}},
        ("result", "XXBTZUSD"), "bids", "asks", None, False),
    "coinbase": (Coinbase(), "BTC-USD", {"sequence": 100, "time": "2023-11-14T22:13:20.000000Z",
                                         "bids": [["10.0", "1", 1]], "asks": [["11.0", "2", 1]]},
                 (), "bids", "asks", "sequence", True),
}


def _encode(d) -> bytes:
    return json.dumps(d, separators=(",", ":")).replace(f'"{HUGE}"', "1e400").encode()


def bad_bodies(name: str) -> dict[str, bytes]:
    """Malformed snapshot bodies for a venue: each one must be refused with a FrameError."""
    _, _, good, path, bids, asks, seq, required = SPECS[name]

    def mutated(change) -> bytes:
        d = json.loads(json.dumps(good))
        book = d
        for k in path:
            book = book[k]
        change(book)
        return _encode(d)

    def setter(key, value):
        return lambda b: b.__setitem__(key, value)

    def first_bid(i, value):
        def change(b):
            b[bids][0][i] = value
        return change

    text = _encode(good)
    out = {"json list": b'[["10.0","1"]]', "json string": b'"depth"', "truncated": text[: len(text) // 2],
           "empty": b"", "not utf-8": b'{"\xff\xfe": 1}', "null": b"null", "deep nesting": b"[" * 100_000,
           "non-numeric price": mutated(first_bid(0, "ten")), "null price": mutated(first_bid(0, None)),
           "huge price": mutated(first_bid(0, HUGE)), "negative size": mutated(first_bid(1, "-1")),
           "string level": mutated(setter(bids, ["12"])), "short level": mutated(setter(bids, [["10.0"]])),
           "bids object": mutated(setter(bids, {"10.0": "1"})), "missing bids": mutated(lambda b: b.pop(bids)),
           "crossed": mutated(lambda b: b.__setitem__(asks, [["9.0", "1"] + b[asks][0][2:]]))}
    if seq is not None:
        if required:
            out["missing sequence"] = mutated(lambda b: b.pop(seq))
        out["sequence not a number"] = mutated(setter(seq, "abc"))
        out["huge sequence"] = mutated(setter(seq, 10**30))
        out["5000-digit sequence"] = mutated(setter(seq, "9" * 5000))
        out["negative sequence"] = mutated(setter(seq, -5))
    return out


CASES = [(name, kind) for name in SPECS for kind in bad_bodies(name)]


@pytest.mark.parametrize("name", list(SPECS))
def test_the_good_body_parses(name) -> None:
    venue, symbol, good = SPECS[name][:3]
    snap = venue.parse_book_snapshot(symbol, _encode(good))
    assert snap.snapshot and snap.bids == [[10.0, 1.0]] and snap.asks == [[11.0, 2.0]]


@pytest.mark.parametrize("name,kind", CASES, ids=[f"{n}-{k}" for n, k in CASES])
def test_a_malformed_snapshot_body_is_a_frame_error(name, kind) -> None:
    venue, symbol = SPECS[name][:2]
    with pytest.raises(FrameError) as e:
        venue.parse_book_snapshot(symbol, bad_bodies(name)[kind])
    assert e.value.reason in ("bad_json", "missing_field", "bad_value", "venue_error") and "\n" not in str(e.value)


# ---- the supervisor against a fake venue -----------------------------------------------------------
class UnforeseenBinance(BinanceSpot):
    """A parser with a bug: one body makes it raise what no snapshot parser should."""

    def parse_book_snapshot(self, symbol: str, body: bytes):
        if body == b'{"unforeseen":true}':
            raise RuntimeError("parser bug")
        return super().parse_book_snapshot(symbol, body)


def binance_book_case():
    """NKNUSDT of the recorded Binance spot session: depth diffs (and its few other frames), the REST
    depth snapshot recorded with it, and the book the venue holds after the last diff."""
    frames = [f for f in received_frames(WIRE / "BINANCE.ws.1.0") if '"stream":"nknusdt@' in f]
    snapshot = next(c.payload for c in read_capture(WIRE / "BINANCE.http.0.0") if "NKNUSDT" in c.url)
    depth = [i for i, f in enumerate(frames) if "depthUpdate" in f]
    snap = json.loads(snapshot)
    truth = L2Book("BINANCE:NKNUSDT")
    truth.bids = {float(p): float(q) for p, q in snap["bids"]}
    truth.asks = {float(p): float(q) for p, q in snap["asks"]}
    for i in depth:
        d = json.loads(frames[i])["data"]
        if d["u"] > snap["lastUpdateId"]:
            for side, rows in ((truth.bids, d["b"]), (truth.asks, d["a"])):
                for p, q in rows:
                    side.pop(float(p), None) if float(q) == 0 else side.__setitem__(float(p), float(q))
    venue = FakeVenue(frames, rate_per_s=50)
    venue.add_route("GET", "/api/v3/depth", binance_depth_route(frames, {"NKNUSDT": snapshot}))
    venue.add_route("GET", "/api/v3/aggTrades", binance_agg_trades_route(frames))
    return venue, depth, truth, "/api/v3/depth"


def bybit_v5_book_frames() -> list[str]:
    """Bybit v5 ``orderbook.50.BTCUSD`` frames (a snapshot, then deltas with consecutive ``u``) carrying the
    levels and times of the recorded Bybit BTCUSD book stream."""
    parser = Bybit().parser()
    out = FrameOutput()
    frames, u = [], 7_000_000
    for f in received_frames(WIRE / "BYBIT.ws.26.0"):
        if "orderBookL2_25.BTCUSD" not in f:
            continue
        assert parse_frame(parser, f, out)
        for upd in out.books:
            u += 1
            frames.append(json.dumps({"topic": "orderbook.50.BTCUSD", "type": "snapshot" if upd.snapshot else "delta",
                                      "ts": upd.ts // 1_000_000, "data": {
                                          "s": "BTCUSD", "b": [[repr(p), repr(s)] for p, s in upd.bids],
                                          "a": [[repr(p), repr(s)] for p, s in upd.asks], "u": u, "seq": u}},
                                     separators=(",", ":")))
        out.books.clear()
    return frames


def bybit_book_case():
    frames = bybit_v5_book_frames()
    truth = L2Book("BYBIT:BTCUSD")
    for f in frames:
        m = json.loads(f)
        if m["type"] == "snapshot":
            truth.bids, truth.asks = {}, {}
        for side, rows in ((truth.bids, m["data"]["b"]), (truth.asks, m["data"]["a"])):
            for p, q in rows:
                side.pop(float(p), None) if float(q) == 0 else side.__setitem__(float(p), float(q))
    venue = FakeVenue(frames, rate_per_s=130)
    venue.add_route("GET", "/v5/market/orderbook", bybit_orderbook_route(frames))
    book = list(range(len(frames)))  # every frame is a book frame
    return venue, book, truth, "/v5/market/orderbook"


async def run_until(sup: VenueSupervisor, done, timeout_s: float = 30.0):
    """Run ``sup``, draining, until ``done(events)``; checks it stays up; returns (events, books, metrics)."""
    events, books = [], []
    task = asyncio.ensure_future(sup.run())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    try:
        while loop.time() < deadline:
            await asyncio.sleep(0.05)
            assert not task.done(), task  # the supervisor keeps running
            out = sup.drain()
            events += out.events
            books += out.books
            if done(events):
                break
        metrics = sup.metrics()
    finally:
        await sup.stop()
        await asyncio.gather(task, return_exceptions=True)
    assert not sup._tasks  # nothing left behind
    return events, books, metrics


class LoopErrors:
    """Collects what reaches the loop's exception handler ("Task exception was never retrieved", ...)."""

    def __enter__(self):
        self.loop = asyncio.get_running_loop()
        self.old = self.loop.get_exception_handler()
        self.errors: list[dict] = []
        self.loop.set_exception_handler(lambda _, ctx: self.errors.append(ctx))
        return self

    def __exit__(self, *exc):
        gc.collect()  # a dropped task with an unretrieved exception reports it when collected
        self.loop.set_exception_handler(self.old)


def rebuild(books, market: str) -> L2Book:
    """The book a downstream consumer keeps by applying what the supervisor handed over, in order."""
    book = L2Book(market)
    for upd in books:
        if upd.market == market:
            book.reset(upd) if upd.snapshot else book.apply(upd)
    return book


@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.parametrize("case", ["binance", "bybit"])
async def test_malformed_snapshots_are_reported_and_a_later_resync_repairs_the_book(case) -> None:
    if case == "binance":
        venue, book_frames, truth, path = binance_book_case()
        adapter, symbol, market = UnforeseenBinance(channels=("aggTrade", "depth")), "NKNUSDT", "BINANCE:NKNUSDT"
        bad = list(bad_bodies("binance").values()) + [b'{"unforeseen":true}']
    else:
        venue, book_frames, truth, path = bybit_book_case()
        adapter, symbol, market = Bybit(channels=("orderbook.50",), category="inverse"), "BTCUSD", "BYBIT:BTCUSD"
        bad = list(bad_bodies("bybit").values())
    first_gap, second_gap = book_frames[len(book_frames) // 5], book_frames[len(book_frames) * 4 // 5]
    venue.skip(first_gap)  # a diff lost: the resync that follows gets only malformed snapshots for a while
    venue.malform_rest(path, bad, from_frame=first_gap)
    venue.skip(second_gap)  # later, with the venue answering well again: a plain resync
    await venue.start()

    def done(events) -> bool:
        resyncs = [e for e in events if e.kind == "resync" and e.market == market]
        return venue.exhausted.is_set() and len(resyncs) >= 2 and sup.books[market].synced

    try:
        with LoopErrors() as loop_errors:
            sup = VenueSupervisor(adapter, [symbol], ws_url=venue.ws_url, rest_url=venue.rest_url, config=CONFIG)
            events, books, metrics = await run_until(sup, done)
    finally:
        await venue.stop()
    assert not loop_errors.errors, loop_errors.errors
    assert sup.stats["task_errors"] == 0 and metrics["task_errors"] == 0
    unrepaired = [e for e in events if e.kind == "unrepaired"]
    assert len(unrepaired) == len(bad) == sup.stats["bad_snapshots"] == metrics["bad_snapshots"], \
        [e.detail for e in unrepaired]
    assert all(e.market == market and "malformed snapshot" in e.detail and "\n" not in e.detail for e in unrepaired)
    assert sup.stats["snapshot_parser_errors"] == (1 if case == "binance" else 0)
    # the order of things: gap, unrepaired (each bad body), resync, ..., gap, resync
    kinds = [e.kind for e in events if e.market == market and e.kind in ("gap", "unrepaired", "resync")]
    first = kinds.index("unrepaired")
    assert kinds[first - 1] == "gap" and kinds[first:first + len(bad)] == ["unrepaired"] * len(bad), kinds
    assert kinds[first + len(bad):] == ["resync", "gap", "resync"], kinds
    assert len(venue.faults_applied) >= len(bad) + 2
    # the book equals the venue's, and so does what downstream rebuilt from the updates it was given
    assert sup.books[market].synced and metrics["books_out_of_sync"] == 0
    assert sup.books[market].book.top(100) == truth.top(100)
    assert rebuild(books, market).top(100) == truth.top(100)


@pytest.mark.asyncio(loop_scope="session")
async def test_a_snapshot_request_that_keeps_failing_leaves_the_book_out_of_sync_and_retries() -> None:
    venue, _, _, path = binance_book_case()
    venue.malform_rest(path, [b"[]"] * 10_000)  # the venue never answers well
    await venue.start()
    try:
        with LoopErrors() as loop_errors:
            sup = VenueSupervisor(BinanceSpot(channels=("aggTrade", "depth")), ["NKNUSDT"], ws_url=venue.ws_url,
                                  rest_url=venue.rest_url, config=CONFIG)
            events, books, metrics = await run_until(sup, lambda ev: venue.exhausted.is_set())
    finally:
        await venue.stop()
    assert not loop_errors.errors
    unrepaired = [e for e in events if e.kind == "unrepaired"]
    assert len(unrepaired) == sup.stats["bad_snapshots"] >= 5  # retried, with backoff
    assert not [b for b in books if b.market == "BINANCE:NKNUSDT"]  # nothing was applied to a book with a hole
    assert not sup.books["BINANCE:NKNUSDT"].synced and metrics["books_out_of_sync"] == 1
    assert sup.stats["task_errors"] == 0


class BrokenBackfill(BinanceSpot):
    """The first trade backfill dies of a bug outside any error handling; later ones work."""

    calls = 0

    def trades_request(self, symbol, after_id, limit):
        BrokenBackfill.calls += 1
        if BrokenBackfill.calls == 1:
            raise RuntimeError("bug in trades_request")
        return super().trades_request(symbol, after_id, limit)


@pytest.mark.asyncio(loop_scope="session")
async def test_a_task_that_dies_is_counted_logged_and_reported(caplog) -> None:
    full = recorded()
    frames = binance_agg_trade_frames(full, "BTCUSDT")[:600]
    venue = FakeVenue(frames, rate_per_s=1500)
    venue.add_route("GET", "/api/v3/aggTrades", binance_agg_trades_route(frames))
    venue.skip(150, count=3)  # its backfill dies
    venue.skip(400, count=2)  # this one is repaired
    await venue.start()
    BrokenBackfill.calls = 0
    caplog.set_level(logging.ERROR, logger="connectors.venues.supervisor")
    trades = []

    def done(events) -> bool:
        return venue.exhausted.is_set() and any(e.kind == "repair" for e in events) and not sup.sequencer.open_gaps()

    try:
        with LoopErrors() as loop_errors:
            sup = VenueSupervisor(BrokenBackfill(), ["BTCUSDT"], ws_url=venue.ws_url, rest_url=venue.rest_url,
                                  config=CONFIG)
            drain = sup.drain

            def keep_trades():
                out = drain()
                trades.extend(out.trades.trade_id.tolist())
                return out
            sup.drain = keep_trades
            events, _, metrics = await run_until(sup, done)
    finally:
        await venue.stop()
    assert not loop_errors.errors
    assert sup.stats["task_errors"] == 1 == metrics["task_errors"]
    dead = [e for e in events if e.kind == "unrepaired"]
    assert len(dead) == 1 and dead[0].market == "BINANCE:BTCUSDT" and "RuntimeError: bug in trades_request" in dead[0].detail
    assert dead[0].from_id == full.trade_id[150] and "backfill" in sup.last_error
    assert any(r.exc_info and "bug in trades_request" in r.getMessage() for r in caplog.records)
    # the held trades went out (degraded, not stuck) and the later gap was repaired as usual
    lost = set(full.trade_id[150:153].tolist())
    assert trades == [t for t in full.trade_id[:600].tolist() if t not in lost]
