"""``crypto-intel run`` with two venues at once (Binance spot and USD-M futures, served by local fake
venues replaying real trades in Binance's wire format) through the sharded Ray pipeline: candles and
signals come out, each venue reports its metrics, and the dropped connection is healed."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from engine.sources.files import load_any
from engine.venues.wire import binance_agg_trade_frames
from tests.data_paths import SHARED_DATA
from tests.venues.fake_venue import FakeVenue, binance_agg_trades_route

DATA = Path(SHARED_DATA) / "trades"


async def _venue(frames: list[str], path: str) -> FakeVenue:
    venue = FakeVenue(frames, rate_per_s=3000)
    venue.add_route("GET", path, binance_agg_trades_route(frames))
    await venue.start()
    return venue


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.asyncio(loop_scope="session")
async def test_two_venues_through_ray_give_candles_signals_and_metrics(tmp_path: Path) -> None:
    xrp, _ = load_any(str(DATA / "XRP_ETH-trades.parquet"), market="BINANCE:XRPETH")
    btc, _ = load_any(str(DATA / "btcusdt-trades.parquet"), market="BINANCE_FUTURES:BTCUSDT")
    spot = await _venue(binance_agg_trade_frames(xrp, "XRPETH"), "/api/v3/aggTrades")
    futures = await _venue(binance_agg_trade_frames(btc, "BTCUSDT"), "/fapi/v1/aggTrades")
    spot.drop_at(5000, lost=50)  # a dropped connection mid-run: healed by a REST backfill
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "app.cli", "run", "--no-dashboard", "--max-seconds", "25",
            "--out-dir", str(tmp_path), "--http-port", "0", "--ws-port", "0",
            "--source", "binance:XRPETH", "--source", "binance_futures:BTCUSDT",
            "--venue-url", f"binance.ws={spot.ws_url}", "--venue-url", f"binance.rest={spot.rest_url}",
            "--venue-url", f"binance_futures.ws={futures.ws_url}",
            "--venue-url", f"binance_futures.rest={futures.rest_url}",
            "--timeframes", "1m", "--strategy", "default",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await asyncio.wait_for(proc.communicate(), 240)
    finally:
        await spot.stop()
        await futures.stop()
    text = out.decode()
    assert proc.returncode == 0, text[-3000:]
    status = {m["venue"]: m for m in json.loads((tmp_path / "venue-status.json").read_text())}
    assert set(status) == {"binance", "binance_futures"}, text[-2000:]
    assert status["binance"]["trades"] > 5000 and status["binance_futures"]["trades"] == len(btc)
    assert status["binance"]["reconnects"] >= 1 and status["binance"]["gaps"] >= 1
    assert status["binance"]["recovered"] >= 50 and status["binance"]["open_gaps"] == 0
    for m in status.values():
        assert m["messages"] > 0 and m["rejects"] == {} and m["clock_skew_ms"] == m["clock_skew_ms"]
    events = [json.loads(line) for line in (tmp_path / "venue-events.jsonl").read_text().splitlines()]
    kinds = {(e["venue"], e["kind"]) for e in events}
    assert {("binance", "gap"), ("binance", "repair")} <= kinds
    assert any(e["kind"] == "state" and "live" in e["detail"] for e in events)
    signals = [json.loads(line) for line in (tmp_path / "signals.jsonl").read_text().splitlines()]
    assert signals and {s["market"] for s in signals} >= {"BINANCE:XRPETH"}
    assert "candles" in text and " 0 candles" not in text.splitlines()[-4]
