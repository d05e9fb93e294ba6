"""Backtest runs against the real server: the table of migration 0008 (and back down to 0007),
saving twice keeps one row, newest-first pages with keyset cursors, full rows read back exactly,
the same rows through a bare connection and the API's codec pool, and runs that cannot be stored."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime, timedelta

import asyncpg
import numpy as np
import pytest

from connectors.storage.backtests import (
    COLUMNS,
    BacktestRecordError,
    get_backtest,
    list_backtests,
    save_backtest,
    save_backtest_sync,
)
from connectors.storage.migrate import downgrade, migrate
from connectors.storage.queries import Queries, QueryError
from tests.storage.pg_fixtures import pg_db, pg_migrated, pg_url  # noqa: F401 - fixtures

T0 = 1_704_067_200_000_000_000  # 2024-01-01
DAY = 86_400 * 10**9


def _run(i: int, **kw) -> dict:
    metrics = {"portfolio": {"total_return": 0.1 * i, "sharpe": 1.5, "max_drawdown": -0.2, "trades": 3 + i},
               "benchmark": {"total_return": 0.05},
               "markets": {"BINANCE:BTCUSDT": {"trades": 2, "net_pnl": 12.5}, "BINANCE:ETHUSDT": {"trades": 1 + i}},
               "counters": {"fills": 6, "rejected": 0}}
    created_at = datetime(2024, 3, 1, 12, 0, tzinfo=UTC) + timedelta(seconds=i, microseconds=123456)
    base = dict(id=f"bt-{i:03d}", created_at=created_at,
                strategy="sma_cross", strategy_version="1", params={"fast": 10, "slow": 30 + i},
                settings={"cash": 10_000.0, "fees": {"taker_bps": 5.0}, "sizing": "equity"}, timeframe="1h",
                engine="event", markets=["BINANCE:BTCUSDT", "BINANCE:ETHUSDT"], start_ts=T0, end_ts=T0 + 30 * DAY,
                bars=1440, trades=3 + i, metrics=metrics, out_dir=f"/tmp/out/bt-{i:03d}")
    return {**base, **kw}


async def _with(url: str, fn):
    conn = await asyncpg.connect(url)
    try:
        return await fn(conn)
    finally:
        await conn.close()


def test_table_shape_and_down_to_0007_and_back(pg_migrated: str) -> None:
    async def columns(conn):
        return {r["column_name"]: r["data_type"] for r in await conn.fetch(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'backtests'")}
    cols = asyncio.run(_with(pg_migrated, columns))
    assert set(cols) == set(COLUMNS)
    assert cols["created_at"] == "timestamp with time zone" and cols["markets"] == "ARRAY"
    assert cols["start_ts"] == cols["end_ts"] == cols["bars"] == cols["trades"] == "bigint"
    assert cols["metrics"] == cols["params"] == cols["settings"] == "jsonb"
    idx = asyncio.run(_with(pg_migrated, lambda c: c.fetchval(
        "SELECT indexdef FROM pg_indexes WHERE indexname = 'backtests_created_at'")))
    assert "created_at DESC" in idx
    save_backtest_sync(pg_migrated, _run(1))
    later = [m.version for m in asyncio.run(downgrade(pg_migrated, 7))]
    assert later[-1] == 8 and all(v > 7 for v in later)  # 0008 and what came after it, newest first
    assert set(asyncio.run(_with(pg_migrated, columns))) == {"id", "strategy", "params", "started_at", "finished_at",
                                                             "metrics"}
    assert [m.version for m in asyncio.run(migrate(pg_migrated))] == sorted(later)
    row = asyncio.run(_with(pg_migrated, lambda c: get_backtest(c, "bt-001")))
    assert row["strategy"] == "sma_cross" and row["created_at"] == T0 + 60 * DAY + 12 * 3600 * 10**9 + 1_123_456_000


def test_save_twice_is_one_row_and_reads_back_exactly(pg_migrated: str) -> None:
    run = _run(1)

    async def go(conn):
        await save_backtest(conn, run)
        await save_backtest(conn, run)
        assert await conn.fetchval("SELECT count(*) FROM backtests") == 1
        got = await get_backtest(conn, "bt-001")
        expected = {**run, "created_at": int(run["created_at"].timestamp()) * 10**9 + 123_456_000}
        assert got == expected
        # a second save with new values replaces them; without created_at the first one stays
        changed = {k: v for k, v in _run(1, trades=99, metrics={"portfolio": {}}, out_dir=None).items()
                   if k != "created_at"}
        await save_backtest(conn, changed)
        again = await get_backtest(conn, "bt-001")
        assert again["trades"] == 99 and again["metrics"] == {"portfolio": {}} and again["out_dir"] is None
        assert again["created_at"] == expected["created_at"]
        assert await conn.fetchval("SELECT count(*) FROM backtests") == 1
        assert await get_backtest(conn, "bt-nope") is None
    asyncio.run(_with(pg_migrated, go))


def test_missing_values_defaults_and_json_cleaning(pg_migrated: str) -> None:
    async def go(conn):
        before = await conn.fetchval("SELECT (extract(epoch FROM now()) * 1e9)::bigint")
        await save_backtest(conn, {"id": "minimal", "strategy": "trend", "start_ts": None, "markets": None})
        row = await get_backtest(conn, "minimal")
        assert row["created_at"] >= before - 10**9
        assert row["params"] == row["settings"] == row["metrics"] == {} and row["markets"] == []
        assert row["start_ts"] is None and row["bars"] is None and row["engine"] is None
        # numpy scalars and stray non-finite floats become JSON (NaN/inf as null)
        await save_backtest(conn, _run(2, bars=np.int64(7), params={"k": np.float64(1.5), "n": np.int32(3)},
                                       metrics={"portfolio": {"sharpe": math.nan, "pf": math.inf}}))
        row = await get_backtest(conn, "bt-002")
        assert row["bars"] == 7 and row["params"] == {"k": 1.5, "n": 3}
        assert row["metrics"] == {"portfolio": {"sharpe": None, "pf": None}}
        listed = await list_backtests(conn)
        assert {r["id"] for r in listed} == {"minimal", "bt-002"}
        assert next(r for r in listed if r["id"] == "minimal")["summary"] == {}
    asyncio.run(_with(pg_migrated, go))


def test_list_newest_first_with_keyset_pages(pg_migrated: str) -> None:
    async def go(conn):
        for i in range(7):
            await save_backtest(conn, _run(i))
        # two runs in the same microsecond: id breaks the tie
        same = datetime(2024, 3, 1, 12, 0, 30, tzinfo=UTC)
        await save_backtest(conn, _run(100, id="tie-a", created_at=same))
        await save_backtest(conn, _run(101, id="tie-b", created_at=same))
        everything = await list_backtests(conn, limit=1000)
        assert [r["id"] for r in everything] == ["tie-b", "tie-a", *[f"bt-{i:03d}" for i in reversed(range(7))]]
        ts = [r["created_at"] for r in everything]
        assert ts == sorted(ts, reverse=True)
        first = everything[-1]
        assert set(first) == {"id", "created_at", "strategy", "strategy_version", "params", "timeframe", "engine",
                              "markets", "start_ts", "end_ts", "bars", "trades", "summary"}
        assert first["summary"] == _run(0)["metrics"]["portfolio"] and first["params"] == {"fast": 10, "slow": 30}
        seen, after = [], None
        while True:
            page = await list_backtests(conn, limit=2, after=after)
            assert len(page) <= 2
            seen += [r["id"] for r in page]
            if len(page) < 2:
                break
            after = (page[-1]["created_at"], page[-1]["id"])
        assert seen == [r["id"] for r in everything]
        # a run added while paging shows up on a fresh first page, never in the middle
        mid = await list_backtests(conn, limit=3)
        await save_backtest(conn, _run(200, id="newest", created_at=datetime(2030, 1, 1, tzinfo=UTC)))
        rest = await list_backtests(conn, limit=1000, after=(mid[-1]["created_at"], mid[-1]["id"]))
        assert [r["id"] for r in mid + rest] == [r["id"] for r in everything]
        assert (await list_backtests(conn, limit=1))[0]["id"] == "newest"
        with pytest.raises(QueryError):
            await list_backtests(conn, limit=0)
        with pytest.raises(QueryError):
            await list_backtests(conn, after=("1", "x"))
    asyncio.run(_with(pg_migrated, go))


def test_same_rows_through_the_api_codec_pool(pg_migrated: str) -> None:
    """The API's pool decodes timestamptz as int ns and jsonb itself: the rows must not change."""
    async def go():
        await _with(pg_migrated, lambda c: save_backtest(c, _run(3)))
        bare = await _with(pg_migrated, lambda c: get_backtest(c, "bt-003"))
        listed_bare = await _with(pg_migrated, lambda c: list_backtests(c))
        q = await Queries.create(pg_migrated)
        try:
            assert await get_backtest(q.pool, "bt-003") == bare
            assert await list_backtests(q.pool) == listed_bare
            await save_backtest(q.pool, _run(4))  # writes through the codec pool too
            assert await get_backtest(q.pool, "bt-004") == {**_run(4), "created_at": bare["created_at"] + 10**9}
            page = await list_backtests(q.pool, limit=1)
            assert [r["id"] for r in await list_backtests(q.pool, after=(page[0]["created_at"], page[0]["id"]))] \
                == ["bt-003"]
        finally:
            await q.close()
    asyncio.run(go())


@pytest.mark.parametrize("bad", [
    {"strategy": "x"},  # no id
    {"id": "", "strategy": "x"},
    {"id": "a/b", "strategy": "x"},
    {"id": "-lead", "strategy": "x"},
    {"id": "x" * 129, "strategy": "x"},
    {"id": "ok"},  # no strategy
    {"id": "ok", "strategy": "x", "colour": "red"},
    {"id": "ok", "strategy": "x", "bars": 1.5},
    {"id": "ok", "strategy": "x", "bars": True},
    {"id": "ok", "strategy": "x", "end_ts": 2**63},
    {"id": "ok", "strategy": "x", "markets": "BTCUSDT"},
    {"id": "ok", "strategy": "x", "params": [1, 2]},
    {"id": "ok", "strategy": "x", "params": {"f": object()}},
    {"id": "ok", "strategy": "x", "settings": {"note": "a\x00b"}},
    {"id": "ok", "strategy": "a\x00b"},
    {"id": "ok", "strategy": "x", "created_at": "yesterday"},
])
def test_runs_that_cannot_be_stored_are_refused_before_connecting(bad: dict) -> None:
    with pytest.raises(BacktestRecordError):
        save_backtest_sync("postgresql://nobody@127.0.0.1:1/none", bad)


def test_sync_save_migrates_a_fresh_database(pg_db: str) -> None:
    save_backtest_sync(pg_db, _run(5, created_at=T0))
    save_backtest_sync(pg_db, _run(5, created_at=T0), migrate=False)
    rows = asyncio.run(_with(pg_db, lambda c: list_backtests(c)))
    assert [r["id"] for r in rows] == ["bt-005"] and rows[0]["created_at"] == T0
