"""The market summary in one query equals the summary built one market and one question at a time."""

from __future__ import annotations

import asyncpg

from connectors.storage.queries import Queries
from tests.serve.inprocess import filled  # noqa: F401 - fixture

DAY = 86_400 * 10**9


async def _reference(conn: asyncpg.Connection, market: str, tf: str) -> dict | None:
    # the questions asked separately, as a reader would phrase them
    last = await conn.fetchrow("SELECT open_ts, close FROM candles WHERE market = $1 AND timeframe = $2 "
                               "AND NOT gap ORDER BY open_ts DESC LIMIT 1", market, tf)
    if last is None:
        return None
    since = last["open_ts"] - DAY
    agg = await conn.fetchrow("SELECT sum(volume) AS volume, min(low) AS low, max(high) AS high FROM candles "
                              "WHERE market = $1 AND timeframe = $2 AND open_ts > $3", market, tf, since)
    first = await conn.fetchrow("SELECT close FROM candles WHERE market = $1 AND timeframe = $2 AND "
                                "open_ts > $3 AND NOT gap ORDER BY open_ts LIMIT 1", market, tf, since)
    risk = await conn.fetchrow("SELECT ts, score, components FROM risk_scores WHERE market = $1 AND "
                               "timeframe = $2 ORDER BY ts DESC LIMIT 1", market, tf)
    from connectors.storage.tables import table
    cols = ", ".join(f'"{c}"' for c in table("signals").names)
    top = await conn.fetch(f"SELECT {cols} FROM signals WHERE market = $1 AND ts > $2 "
                           "ORDER BY strength DESC, ts DESC LIMIT 5", market, since)
    return {"market": market, "timeframe": tf, "ts": last["open_ts"], "price": last["close"],
            "change_24h": (last["close"] / first["close"] - 1.0) if first and first["close"] else None,
            "volume_24h": agg["volume"], "high_24h": agg["high"], "low_24h": agg["low"],
            "risk": dict(risk) if risk else None, "top_signals": [dict(r) for r in top]}


async def test_one_query_equals_the_per_market_questions(filled):
    q = await Queries.create(filled.database_url)
    try:
        async with q.pool.acquire() as conn:
            markets = [r["market"] for r in await conn.fetch("SELECT DISTINCT market FROM candles ORDER BY 1")]
            for tf in ("5m", "1h"):
                want = [s for s in [await _reference(conn, m, tf) for m in markets] if s is not None]
                got = await q.market_summaries(tf)
                assert got == want
                if tf == "5m":
                    assert len(got) == len(markets) and sum(len(s["top_signals"]) for s in got) > 0
            assert await q.market_summaries("5m", markets[0]) == [await _reference(conn, markets[0], "5m")]
            assert await q.market_summaries("5m", "NOPE:NOPE") == []
            assert await q.market_summary("NOPE:NOPE", "5m") is None
    finally:
        await q.close()
