"""The supervisor against a local venue replaying real trades in Binance's wire format, with faults:
dropped connections, skipped and malformed frames, duplicates, rate-limited and slow REST repairs.
Downstream must get every recorded trade exactly once, in order; gaps and repairs are recorded;
bars built while trades were missing are degraded, then rebuilt exactly once the repair lands."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from connectors.venues.supervisor import SupervisorConfig, VenueSupervisor
from engine.candles import CandleAggregator
from engine.sources.files import load_any
from engine.venues.binance import BinanceSpot
from engine.venues.quality import DataQuality
from engine.venues.wire import binance_agg_trade_frames
from schemas.batches import CandleBatch, TradeBatch
from tests.data_paths import SHARED_DATA
from tests.venues.fake_venue import FakeVenue, binance_agg_trades_route

TRADES = Path(SHARED_DATA) / "trades" / "btcusdt-trades.parquet"
FAST = SupervisorConfig(backoff_initial_s=0.05, backoff_max_s=0.2, hold_s=3.0, stale_after_s=5.0,
                        rest_attempts=5)


def recorded() -> TradeBatch:
    batch, _ = load_any(str(TRADES), market="BINANCE:BTCUSDT")
    return batch


async def binance_venue(frames: list[str], rate_per_s: float, rest_delay_s: float = 0.0) -> FakeVenue:
    """A fake Binance: the frames over WebSocket, aggTrades over REST (optionally slow)."""
    venue = FakeVenue(frames, rate_per_s=rate_per_s)
    route = binance_agg_trades_route(frames)

    async def agg_trades(request):
        await asyncio.sleep(rest_delay_s)
        return await route(request)
    venue.add_route("GET", "/api/v3/aggTrades", agg_trades)
    await venue.start()
    return venue


async def collect(sup: VenueSupervisor, venue: FakeVenue, expect: int, timeout_s: float = 30.0):
    trades, late, events = [], [], []
    task = asyncio.ensure_future(sup.run())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    try:
        while loop.time() < deadline:
            await asyncio.sleep(0.05)
            out = sup.drain()
            trades.append(out.trades)
            late.append(out.late_trades)
            events += out.events
            got = sum(len(t) for t in trades) + sum(len(t) for t in late)
            if venue.exhausted.is_set() and got >= expect and not sup.sequencer.open_gaps():
                break
    finally:
        await sup.stop()
        await asyncio.gather(task, return_exceptions=True)
    return TradeBatch.concat(trades), TradeBatch.concat(late), events


def kinds(events) -> dict[str, int]:
    out: dict[str, int] = {}
    for e in events:
        out[e.kind] = out.get(e.kind, 0) + 1
    return out


@pytest.mark.asyncio(loop_scope="session")
async def test_drop_gap_duplicates_and_bad_frames_lose_nothing_and_repeat_nothing() -> None:
    full = recorded()
    frames = binance_agg_trade_frames(full, "BTCUSDT")
    venue = await binance_venue(frames, rate_per_s=4000)
    venue.drop_at(400, lost=60)  # connection dropped twice; frames sent meanwhile are lost
    venue.drop_at(1500, lost=5)
    venue.skip(900, count=12)  # a hole in the ids on a live connection
    for i in (100, 101, 102):  # before the first drop: none of them can be lost while reconnecting
        venue.duplicate(i)
    venue.malform(1000, "truncate")  # rejected and counted, the trade comes back by REST
    venue.rate_limit(1, retry_after=1)  # the first repair is rate-limited: Retry-After is honoured
    try:
        sup = VenueSupervisor(BinanceSpot(), ["BTCUSDT"], ws_url=venue.ws_url, rest_url=venue.rest_url, config=FAST)
        trades, late, events = await collect(sup, venue, len(full))
    finally:
        await venue.stop()
    assert len(late) == 0  # every repair landed within the hold: nothing degraded
    assert trades.trade_id.tolist() == full.trade_id.tolist()  # all of them, once each, in order
    assert np.array_equal(trades.price, full.price) and np.array_equal(trades.size, full.size)
    assert np.array_equal(trades.ts, full.ts) and np.array_equal(trades.side, full.side)
    k = kinds(events)
    assert k["gap"] == 4 and k["repair"] == 4 and "degraded" not in k and "unrepaired" not in k, k
    gaps = sorted((e.from_id - full.trade_id[0], e.to_id - full.trade_id[0]) for e in events if e.kind == "gap")
    # the skipped ids; the truncated frame; the frames lost on each drop (and while reconnecting: the
    # venue's clock runs on)
    assert (900, 911) in gaps and (1000, 1000) in gaps, gaps
    assert any(a == 400 and b >= 460 for a, b in gaps) and any(a == 1500 and b >= 1505 for a, b in gaps), gaps
    assert sup.sequencer.stats["duplicates"] >= 3
    assert sup.rejects["bad_json"] == 1
    assert len(venue.connections) == 3 and sup.stats["reconnects"] == 2
    assert sup.metrics()["rest"]["rate_limited"] == 1
    states = [e.detail for e in events if e.kind == "state"]
    assert any("live" in s for s in states) and any("reconnecting" in s for s in states)


@pytest.mark.asyncio(loop_scope="session")
async def test_slow_repair_degrades_bars_then_rebuilds_them_exactly() -> None:
    full = recorded()
    frames = binance_agg_trade_frames(full, "BTCUSDT")
    # the venue's REST is slow: the hold (0.3 s) runs out before the repair lands
    venue = await binance_venue(frames, rate_per_s=2000, rest_delay_s=1.5)
    venue.skip(700, count=60)
    config = SupervisorConfig(backoff_initial_s=0.05, hold_s=0.3, stale_after_s=5.0)
    try:
        sup = VenueSupervisor(BinanceSpot(), ["BTCUSDT"], ws_url=venue.ws_url, rest_url=venue.rest_url, config=config)
        trades, late, events = await collect(sup, venue, len(full))
    finally:
        await venue.stop()
    k = kinds(events)
    assert k["gap"] == 1 and k["degraded"] == 1 and k["repair"] == 1, k
    repair = next(e for e in events if e.kind == "repair")
    assert repair.detail.startswith("late") and repair.count == 60
    # nothing lost: live trades plus the late ones are the recorded set
    assert sorted(trades.trade_id.tolist() + late.trade_id.tolist()) == full.trade_id.tolist()
    assert late.trade_id.tolist() == full.trade_id[700:760].tolist()

    # bars: built live from what arrived in time, degraded over the hole, rebuilt exactly after the repair
    tfs = ["5s"]
    quality = DataQuality(tfs)
    live = CandleAggregator(tfs)
    bars = []
    for e in events:
        quality.on_event(e)
    quality.on_trades(trades)
    bars.append(live.update(trades))
    live_bars = CandleBatch.concat(bars)
    degraded = quality.degraded_mask(live_bars)
    assert degraded.any() and not degraded.all()
    rebuilt = quality.on_late_repair(repair, late)
    reference = CandleAggregator(tfs).update(full).to_records()
    ref = {(c.market, c.open_ts): c for c in reference}
    assert rebuilt and all(c == ref[(c.market, c.open_ts)] for c in rebuilt)
    degraded_opens = set(live_bars.open_ts[degraded].tolist())
    assert degraded_opens <= {c.open_ts for c in rebuilt}  # every degraded bar was rebuilt
    wrong = [o for o in degraded_opens if live_bars.to_records()[list(live_bars.open_ts).index(o)] != ref[("BINANCE:BTCUSDT", o)]]
    assert wrong, "the degraded bars really were incomplete before the repair"
    assert not quality.windows and not quality.degraded_mask(live_bars).any()


@pytest.mark.asyncio(loop_scope="session")
async def test_stale_connection_reconnects_and_unserved_gap_is_reported() -> None:
    full = recorded()
    frames = binance_agg_trade_frames(full, "BTCUSDT")[:300]
    venue = await binance_venue(frames, rate_per_s=3000)
    venue.skip(150)
    venue.rate_limit(100, retry_after=0)  # REST never recovers within the attempts
    config = SupervisorConfig(backoff_initial_s=0.05, hold_s=5.0, stale_after_s=0.5, rest_attempts=2)
    try:
        sup = VenueSupervisor(BinanceSpot(), ["BTCUSDT"], ws_url=venue.ws_url, rest_url=venue.rest_url, config=config)
        task = asyncio.ensure_future(sup.run())
        await asyncio.sleep(2.0)
        out = sup.drain()
        await sup.stop()
        await asyncio.gather(task, return_exceptions=True)
    finally:
        await venue.stop()
    k = kinds(out.events)
    assert k.get("unrepaired") == 1, k
    assert out.trades.trade_id.tolist() == [i for i in full.trade_id[:300].tolist() if i != full.trade_id[150]]
    assert any("stale" in e.detail for e in out.events if e.kind == "state")
    assert sup.stats["reconnects"] >= 1
