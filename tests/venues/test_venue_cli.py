"""``crypto-intel venues parse`` and ``venues check`` (against a local fake venue), and source specs."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from engine.sources.files import load_any
from engine.venues.sources import build_sources, load_config
from engine.venues.wire import binance_agg_trade_frames
from schemas.errors import ConfigError
from tests.data_paths import SHARED_DATA
from tests.venues.fake_venue import FakeVenue, binance_agg_trades_route

WIRE = Path(SHARED_DATA) / "wire"


async def _cli(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "app.cli", *args,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode, out.decode()


@pytest.mark.asyncio(loop_scope="session")
async def test_parse_writes_every_trade_of_a_capture(tmp_path: Path) -> None:
    out = tmp_path / "ticks.jsonl"
    rc, text = await _cli("venues", "parse", "--venue", "coinbase", "--input", str(WIRE / "COINBASE.ws.28.0"),
                          "--out", str(out))
    assert rc == 0, text
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    trades = [r for r in rows if r["type"] == "trade"]
    assert len(trades) == 107 and "107 trades" in text and "0 rejected" in text
    assert all(r["market"].startswith("COINBASE:") and r["trade_id"] > 0 for r in trades)
    rc, text = await _cli("venues", "parse", "--venue", "binance", "--input", str(tmp_path / "nope"),
                          "--out", str(out))
    assert rc == 2 and "no capture" in text


@pytest.mark.asyncio(loop_scope="session")
async def test_check_reports_a_live_venue_and_a_dead_one() -> None:
    batch, _ = load_any(str(Path(SHARED_DATA) / "trades" / "btcusdt-trades.parquet"), market="BINANCE:BTCUSDT")
    frames = binance_agg_trade_frames(batch, "BTCUSDT")
    venue = FakeVenue(frames, rate_per_s=1000)
    venue.add_route("GET", "/api/v3/depth", lambda request: {"lastUpdateId": 1, "bids": [["1.0", "2.0"]],
                                                             "asks": [["1.1", "3.0"]]})
    venue.add_route("GET", "/api/v3/aggTrades", binance_agg_trades_route(frames))
    await venue.start()
    try:
        rc, text = await _cli("venues", "check", "--source", "binance:BTCUSDT", "--timeout-s", "5",
                              "--venue-url", f"binance.ws={venue.ws_url}", "--venue-url", f"binance.rest={venue.rest_url}")
        assert rc == 0 and "ws ok" in text and "rest ok" in text, text
        rc, text = await _cli("venues", "check", "--source", "binance:BTCUSDT", "--timeout-s", "2",
                              "--venue-url", "binance.ws=ws://127.0.0.1:9", "--venue-url", "binance.rest=http://127.0.0.1:9")
        assert rc == 1 and "failed" in text, text
    finally:
        await venue.stop()


def test_sources_merge_and_config_file(tmp_path: Path) -> None:
    specs = build_sources(["binance:BTCUSDT,ETHUSDT", "binance:SOLUSDT@aggTrade+depth", "okx:BTC-USDT"],
                          ["binance.ws=ws://127.0.0.1:1", "okx.rest=http://127.0.0.1:2"])
    assert [(s.venue, s.symbols, s.channels, s.ws_url, s.rest_url) for s in specs] == [
        ("binance", ("BTCUSDT", "ETHUSDT", "SOLUSDT"), ("aggTrade", "depth"), "ws://127.0.0.1:1", None),
        ("okx", ("BTC-USDT",), None, None, "http://127.0.0.1:2")]
    cfg = tmp_path / "venues.toml"
    cfg.write_text('sources = ["coinbase:BTC-USD"]\n[venue_urls]\n"coinbase.ws" = "ws://127.0.0.1:3"\n')
    assert load_config(cfg) == (["coinbase:BTC-USD"], ["coinbase.ws=ws://127.0.0.1:3"])
    for bad in (["nowhere:BTC"], ["binance"], ["binance:"]):
        with pytest.raises(ConfigError):
            build_sources(bad, [])
    for bad in (["binance=ws://x"], ["binance.ftp=ws://x"], ["mars.ws=ws://x"], ["binance.ws=127.0.0.1"]):
        with pytest.raises(ConfigError):
            build_sources(["binance:BTCUSDT"], bad)
    cfg.write_text("sources = 3\n")
    with pytest.raises(ConfigError, match="list of strings"):
        load_config(cfg)
