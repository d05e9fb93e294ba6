"""End to end through Ray and Postgres: a gap repaired late leaves its bars degraded, then the rebuilt
bars replace them with the exact values; a gap the venue cannot serve stays degraded; every gap,
degradation, repair and give-up is a row of ``venue_events``."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

import pytest
from aiohttp import web

from engine.candles import CandleAggregator
from engine.sources.files import load_any
from engine.venues.wire import binance_agg_trade_frames
from tests.data_paths import SHARED_DATA
from tests.storage.pg_fixtures import fetch, pg_db, pg_url  # noqa: F401 - fixtures
from tests.venues.fake_venue import FakeVenue, binance_agg_trades_route

LATE = range(3000, 3040)  # frame indices skipped: repaired after the hold ran out
LOST = range(8000, 8010)  # skipped and never served by REST: stays degraded


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _scenario(db: str, out_dir: Path, frames: list[str], first_id: int) -> str:
    venue = FakeVenue(frames, rate_per_s=2000)
    route = binance_agg_trades_route(frames)

    async def agg_trades(request: web.Request) -> web.StreamResponse:
        from_id = int(request.query.get("fromId", 0)) - first_id
        if from_id in LOST:
            return web.json_response({"code": -1000, "msg": "unavailable"}, status=503)
        await asyncio.sleep(1.5)  # slower than the 0.3 s hold: the bars go out degraded first
        return await route(request)
    venue.add_route("GET", "/api/v3/aggTrades", agg_trades)
    venue.skip(LATE.start, count=len(LATE))
    venue.skip(LOST.start, count=len(LOST))
    await venue.start()
    try:
        env = {**os.environ, "DATABASE_URL": db}
        env.pop("REDIS_URL", None)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "app.cli", "run", "--no-dashboard", "--max-seconds", "30",
            "--out-dir", str(out_dir), "--http-port", str(_free_port()), "--ws-port", str(_free_port()),
            "--source", "binance:XRPETH", "--venue-url", f"binance.ws={venue.ws_url}",
            "--venue-url", f"binance.rest={venue.rest_url}", "--repair-hold-s", "0.3", "--timeframes", "1m",
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await asyncio.wait_for(proc.communicate(), 300)
        assert proc.returncode == 0, out.decode()[-3000:]
        return out.decode()
    finally:
        await venue.stop()


@pytest.mark.slow
@pytest.mark.ray
def test_late_repair_rebuilds_degraded_bars_in_postgres(pg_db: str, tmp_path: Path) -> None:  # noqa: F811
    trades, _ = load_any(str(Path(SHARED_DATA) / "trades" / "XRP_ETH-trades.parquet"), market="BINANCE:XRPETH")
    trades.trade_id = trades.trade_id - trades.trade_id.min() + 1_000  # consecutive ids, like aggTrade ids
    frames = binance_agg_trade_frames(trades, "XRPETH")
    text = asyncio.run(_scenario(pg_db, tmp_path, frames, int(trades.trade_id[0])))

    events = asyncio.run(fetch(pg_db, "SELECT kind, from_id, to_id, start_ts, end_ts, count FROM venue_events "
                                      "WHERE kind <> 'state' ORDER BY ts"))
    kinds = [e["kind"] for e in events]
    assert kinds.count("gap") == 2 and kinds.count("degraded") == 2, (kinds, text[-2000:])
    assert kinds.count("repair") == 1 and kinds.count("unrepaired") == 1, kinds
    repair = next(e for e in events if e["kind"] == "repair")
    lost = next(e for e in events if e["kind"] == "unrepaired")
    assert repair["count"] == len(LATE) and lost["to_id"] - lost["from_id"] + 1 == len(LOST)

    bars = asyncio.run(fetch(pg_db, "SELECT (extract(epoch FROM open_ts) * 1e9)::bigint AS open_ns, open, high, "
                                    "low, close, volume, trade_count, degraded FROM candles "
                                    "WHERE market = 'BINANCE:XRPETH' AND timeframe = '1m' ORDER BY open_ts"))
    by_open = {b["open_ns"]: b for b in bars}
    reference = {c.open_ts: c for c in CandleAggregator(["1m"]).update(trades).to_records()}
    one_min = 60 * 10**9

    def window(e) -> list[int]:
        return [o for o in by_open if o <= e["end_ts"] and o + one_min > e["start_ts"]]
    repaired = window(repair)
    assert repaired
    for o in repaired:  # rebuilt from every trade: exactly the bars of the full recorded set
        b, r = by_open[o], reference[o]
        assert not b["degraded"], o
        assert (b["open"], b["high"], b["low"], b["close"], b["trade_count"]) == (r.open, r.high, r.low, r.close,
                                                                                   r.trade_count)
        assert b["volume"] == pytest.approx(r.volume, rel=1e-12)
    assert any(by_open[o]["degraded"] for o in window(lost))  # never repaired: still flagged
    assert sum(b["degraded"] for b in bars) == len([o for o in window(lost) if by_open[o]["degraded"]])
    assert "1 bars rebuilt" in text or "bars rebuilt" in text
