"""A venue source actor on Ray reports per-venue metrics (messages, trades, gaps, lag) to Ray's metrics
export, which the Ray dashboard and Prometheus read."""

from __future__ import annotations

import asyncio
import urllib.request
from pathlib import Path

import pytest

from connectors.venues.supervisor import SupervisorConfig
from engine.sources.files import load_any
from engine.venues.sources import SourceSpec
from engine.venues.wire import binance_agg_trade_frames
from tests.data_paths import SHARED_DATA
from tests.venues.fake_venue import FakeVenue, binance_agg_trades_route


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def _value(text: str, name: str, venue: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name) and f'venue="{venue}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return None


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.asyncio(loop_scope="session")
async def test_source_actor_exports_per_venue_metrics(ray_local) -> None:
    from actors.venue_source import VenueSourceActor
    batch, _ = load_any(str(Path(SHARED_DATA) / "trades" / "btcusdt-trades.parquet"), market="BINANCE:BTCUSDT")
    frames = binance_agg_trade_frames(batch, "BTCUSDT")
    venue = FakeVenue(frames, rate_per_s=2000)
    venue.add_route("GET", "/api/v3/aggTrades", binance_agg_trades_route(frames))
    venue.skip(500, count=3)
    await venue.start()
    actor = VenueSourceActor.remote(SourceSpec("binance", ("BTCUSDT",), None, venue.ws_url, venue.rest_url),
                                    SupervisorConfig(hold_s=2.0))
    try:
        await actor.start.remote()
        trades = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while trades < len(frames) and loop.time() < deadline:
            out = await actor.drain.remote(0.2)
            trades += len(out.trades)
        assert trades == len(frames)
        status = await actor.status.remote()
        assert status["gaps"] == 1 and status["recovered"] == 3 and status["state"] == "live"
        port = ray_local.nodes()[0]["MetricsExportPort"]
        text = ""
        while loop.time() < deadline + 30:  # metrics are exported every few seconds
            await actor.status.remote()
            text = await asyncio.to_thread(_scrape, port)
            if (_value(text, "ray_crypto_intel_venue_recovered", "binance") or 0) >= 3:
                break
            await asyncio.sleep(1.0)
        # trades parsed off the WebSocket (the 3 skipped ones came back over REST)
        assert _value(text, "ray_crypto_intel_venue_trades", "binance") == len(frames) - 3, text[-2000:]
        assert _value(text, "ray_crypto_intel_venue_gaps", "binance") == 1
        assert _value(text, "ray_crypto_intel_venue_recovered", "binance") == 3
        assert _value(text, "ray_crypto_intel_venue_live", "binance") == 1.0
        assert _value(text, "ray_crypto_intel_venue_lag_ms", "binance") is not None
    finally:
        await actor.stop.remote()
        await venue.stop()
