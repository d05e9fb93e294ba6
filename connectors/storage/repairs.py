"""Rewrites of stored bars after a late gap repair: the rebuilt bar replaces the degraded one."""

from __future__ import annotations

import asyncpg

from schemas.records import Candle

_UPSERT = """
INSERT INTO candles (market, timeframe, open_ts, close_ts, open, high, low, close, volume, buy_volume,
                     sell_volume, vwap, trade_count, gap, degraded)
VALUES ($1, $2, to_timestamp($3::float8 / 1e9), to_timestamp($4::float8 / 1e9), $5, $6, $7, $8, $9, $10,
        $11, $12, $13, $14, false)
ON CONFLICT (market, timeframe, open_ts) DO UPDATE SET
    open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close,
    volume = EXCLUDED.volume, buy_volume = EXCLUDED.buy_volume, sell_volume = EXCLUDED.sell_volume,
    vwap = EXCLUDED.vwap, trade_count = EXCLUDED.trade_count, gap = EXCLUDED.gap, degraded = false
"""


async def upsert_candles(dsn: str, candles: list[Candle]) -> None:
    """Insert or replace bars by (market, timeframe, open_ts), clearing ``degraded``."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.executemany(_UPSERT, [
            (c.market, c.timeframe, c.open_ts, c.close_ts, c.open, c.high, c.low, c.close, c.volume,
             c.buy_volume, c.sell_volume, c.vwap, c.trade_count, c.gap) for c in candles])
    finally:
        await conn.close()
