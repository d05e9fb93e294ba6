"""The Postgres writer against the real server: exact round trips, idempotency, replay after a
crash, connections killed mid-load, an outage that spills to disk, and refused batches."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import numpy as np
import pyarrow as pa
import pytest

from connectors.storage import rows
from connectors.storage.pg_writer import PgWriter
from connectors.storage.spill import SpillDir
from connectors.storage.tables import table
from schemas.records import Signal, StructureEvent
from tests.storage.pg_fixtures import pg_db, pg_migrated, pg_url, table_digest  # noqa: F401 - fixtures
from tests.storage.sample_rows import chunks, real_candles
from tests.storage.tcp_proxy import TcpProxy

CANDLE_KEY = "market, timeframe, open_ts"
T0 = 1_704_067_200_000_000_000  # 2024-01-01


async def _write_all(url: str, spill: Path, batches, **kw) -> PgWriter:
    w = await PgWriter(url, spill, **kw).start()
    for b in batches:
        w.write(b[0], b[1])
        await asyncio.sleep(0)
    await w.flush(timeout_s=120)
    await w.close()
    return w


def _signal(i: int, **kw) -> Signal:
    base = dict(id=f"sig-{i}", market="BINANCE:BTCUSDT", timeframe="1m", ts=T0 + i * 60_000_000_000, kind="trend",
                side="buy", strength=0.5, price=42000.5 + i, stop=41000.0, target=43000.0, targets=[43000.0, 44000.0],
                reasons=["ema_20 > ema_50", "rsi_14 in (50, 70): 61.2 — ünïcode"], source_versions={"rules": "trend@3"},
                risk_score=37.5, risk={"vol_cc": 0.012, "score": 37.5}, flags=[])
    return Signal(**{**base, **kw})


async def test_round_trip_is_exact_for_every_column_type(pg_migrated: str, tmp_path: Path) -> None:
    candles = real_candles().take(slice(0, 500))
    candles.open[3] = math.nan  # a gap bar carries NaN prices
    candles.gap[3] = True
    sigs = [_signal(0), _signal(1, stop=None, target=None, targets=[], risk_score=None, risk={}, flags=["risk_limit"],
                                side="sell")]
    events = [StructureEvent(id="ev1", market="BINANCE:BTCUSDT", timeframe="5m", kind="bos_bullish", ts=T0,
                             confirmed_ts=T0 + 600_000_000_000, price=42000.25, meta={"level": 41999.5, "swing_ts": 1.0})]
    values = ["0", "1", "10000", "99990000", str(2**256 - 1), "123456789000000000000"]
    transfers = pa.table({"chain": ["ethereum"] * 6, "block_hash": ["0x" + "ab" * 32] * 6,
                          "log_index": pa.array(range(6), pa.int32()), "block_number": [19_000_000] * 6,
                          "block_ts": [T0] * 6, "tx_hash": ["0x" + "cd" * 32] * 6,
                          "token_address": ["0x" + "11" * 20] * 6, "from_address": ["0x" + "22" * 20] * 6,
                          "to_address": ["0x" + "33" * 20] * 6, "value": values}, schema=table("token_transfers").arrow_schema)
    w = await _write_all(pg_migrated, tmp_path, [("candles", rows.candles(candles)), ("signals", rows.signals(sigs)),
                                                 ("structure_events", rows.structure_events(events)),
                                                 ("token_transfers", transfers)])
    assert w.counters["rows_written"] == 500 + 2 + 1 + 6 and w.counters["batches_rejected"] == 0
    conn = await asyncpg.connect(pg_migrated)
    try:
        got = await conn.fetch("SELECT * FROM candles ORDER BY market, open_ts")
        want = sorted(candles.to_records(), key=lambda c: (c.market, c.open_ts))
        for g, c in zip(got, want, strict=True):
            assert g["market"] == c.market and g["timeframe"] == "5m" and g["trade_count"] == c.trade_count
            assert int(g["open_ts"].timestamp()) * 10**9 == c.open_ts and g["gap"] == c.gap
            for f in ("open", "high", "low", "close", "volume", "vwap"):
                assert g[f] == getattr(c, f) or (math.isnan(g[f]) and math.isnan(getattr(c, f)))
        s = {r["id"]: r for r in await conn.fetch("SELECT * FROM signals")}
        assert s["sig-0"]["reasons"] == sigs[0].reasons and s["sig-0"]["targets"] == [43000.0, 44000.0]
        assert s["sig-0"]["risk_score"] == 37.5 and s["sig-1"]["stop"] is None and s["sig-1"]["flags"] == ["risk_limit"]
        assert s["sig-1"]["side"] == "sell" and s["sig-1"]["targets"] == []
        e = await conn.fetchrow("SELECT * FROM structure_events")
        assert e["kind"] == "bos_bullish" and e["price"] == 42000.25 and '"level":41999.5' in e["meta"].replace(" ", "")
        got_values = [str(r["value"]) for r in await conn.fetch("SELECT value::text FROM token_transfers ORDER BY log_index")]
        assert got_values == values  # uint256 exact, no float on the way
    finally:
        await conn.close()


async def test_writing_the_same_batches_twice_leaves_identical_tables(pg_migrated: str, tmp_path: Path) -> None:
    candles = real_candles()
    batches = [("candles", rows.candles(c)) for c in chunks(candles, 7_000)] + [("signals", rows.signals([_signal(i) for i in range(50)]))]
    await _write_all(pg_migrated, tmp_path, batches, batch_rows=10_000)
    once = (await table_digest(pg_migrated, "candles", CANDLE_KEY), await table_digest(pg_migrated, "signals", "id"))
    assert once[0][0] == len(candles) and once[1][0] == 50
    w = await _write_all(pg_migrated, tmp_path, batches, batch_rows=10_000)
    assert w.counters["merge_batches"] > 0  # every batch met its own rows and took the merge path
    twice = (await table_digest(pg_migrated, "candles", CANDLE_KEY), await table_digest(pg_migrated, "signals", "id"))
    assert twice == once


async def test_replay_after_a_crash_leaves_identical_tables(pg_migrated: str, pg_db: str, tmp_path: Path) -> None:
    from connectors.storage.migrate import migrate
    await migrate(pg_db)
    batches = [("candles", rows.candles(c)) for c in chunks(real_candles(), 5_000)]
    await _write_all(pg_db, tmp_path / "reference", batches)  # the clean run to compare with
    # the crashed run: part written, part in memory when the process "dies" (close parks it on disk)
    w = await PgWriter(pg_migrated, tmp_path / "spill", batch_rows=20_000).start()
    for name, data in batches[:6]:
        w.write(name, data)
    await w.flush()
    for name, data in batches[6:8]:
        w.write(name, data)
    await w.close(timeout_s=0)
    # restart: the new writer replays the parked rows, and the source replays from its last checkpoint
    await _write_all(pg_migrated, tmp_path / "spill", batches[4:])
    assert SpillDir(tmp_path / "spill").files() == []
    assert await table_digest(pg_migrated, "candles", CANDLE_KEY) == await table_digest(pg_db, "candles", CANDLE_KEY)


def _database(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


async def _terminate_writers(admin_url: str, database: str, times: int, every_s: float, killed: list[int]) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        for _ in range(times):
            await asyncio.sleep(every_s)
            n = await conn.fetchval("SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                    "WHERE datname = $1 AND pid <> pg_backend_pid()) t", database)
            killed.append(n)
    finally:
        await conn.close()


@pytest.mark.slow
async def test_connections_killed_during_a_million_row_replay_lose_and_duplicate_nothing(
        pg_migrated: str, pg_url: str, tmp_path: Path) -> None:
    candles = real_candles(1_000_000)
    expected_volume = float(np.sum(candles.volume))
    killed: list[int] = []
    w = await PgWriter(pg_migrated, tmp_path, batch_rows=25_000, retry_initial_s=0.05, call_timeout_s=15).start()
    killer = asyncio.create_task(_terminate_writers(pg_url, _database(pg_migrated), times=6, every_s=0.4, killed=killed))
    try:
        for c in chunks(candles, 10_000):
            w.write("candles", rows.candles(c))
            await asyncio.sleep(0)
        await killer
        await w.flush(timeout_s=300)
    finally:
        await w.close(timeout_s=5)
    assert sum(killed) > 0 and w.counters["retries"] > 0  # the fault really happened
    assert w.counters["rows_rejected"] == 0, w.last_error  # no batch set aside for a dropped connection
    conn = await asyncpg.connect(pg_migrated)
    try:
        n, distinct, volume = await conn.fetchrow(
            "SELECT count(*), count(DISTINCT (market, timeframe, open_ts)), sum(volume) FROM candles")
    finally:
        await conn.close()
    assert n == distinct == len(candles) >= 1_000_000
    assert volume == pytest.approx(expected_volume, rel=1e-12)


async def test_outage_spills_to_disk_within_the_memory_bound_and_replays(pg_migrated: str, tmp_path: Path) -> None:
    p = urlsplit(pg_migrated)
    proxy = await TcpProxy(p.hostname, p.port or 5432).start()
    via_proxy = urlunsplit((p.scheme, f"{p.username}@127.0.0.1:{proxy.port}", p.path, p.query, p.fragment))
    candles = real_candles()
    parts = list(chunks(candles, 2_000))
    w = await PgWriter(via_proxy, tmp_path, batch_rows=4_000, linger_s=0.05, max_buffer_rows=10_000,
                       retry_initial_s=0.05, retry_max_s=0.2, connect_timeout_s=1).start()
    try:
        for c in parts[:3]:
            w.write("candles", rows.candles(c))
        await w.flush(timeout_s=30)
        await proxy.stop()  # Postgres "goes away"
        peak = 0
        for c in parts[3:]:
            w.write("candles", rows.candles(c))
            await asyncio.sleep(0.005)
            peak = max(peak, w.stats()["rows_in_memory"])
        stats = w.stats()
        assert stats["spill_files"] > 0 and stats["rows_spilled"] > 0 and stats["last_error"]
        assert peak <= 10_000 + 2 * 4_000 + 2_000  # bound + batches held by the retrying connections
        await proxy.start()  # it comes back on the same port
        await w.flush(timeout_s=60)
    finally:
        await w.close()
        await proxy.stop()
    assert w.counters["rows_replayed"] > 0 and SpillDir(tmp_path).files() == []
    n, _ = await table_digest(pg_migrated, "candles", CANDLE_KEY)
    assert n == len(candles)


async def test_refused_batches_are_set_aside_with_the_reason(pg_migrated: str, tmp_path: Path) -> None:
    bad = pa.table({"chain": ["ethereum"], "block_hash": ["0xab"], "log_index": pa.array([0], pa.int32()),
                    "block_number": [1], "block_ts": [T0], "tx_hash": ["0xcd"], "token_address": ["0x11"],
                    "from_address": ["0x22"], "to_address": ["0x33"], "value": ["12.5"]},
                   schema=table("token_transfers").arrow_schema)
    good = rows.candles(real_candles().take(slice(0, 100)))
    w = await _write_all(pg_migrated, tmp_path, [("token_transfers", bad), ("candles", good)])
    assert w.counters["rows_rejected"] == 1 and w.counters["rows_written"] == 100
    rejected = list((tmp_path / "rejected").glob("*.error.txt"))
    assert len(rejected) == 1 and "numeric" in rejected[0].read_text()


async def test_an_unmigrated_database_keeps_the_rows_and_says_what_to_do(pg_db: str, tmp_path: Path) -> None:
    good = rows.candles(real_candles().take(slice(0, 100)))
    w = await _write_all(pg_db, tmp_path / "unmigrated", [("candles", good)])
    assert w.counters["rows_rejected"] == 100 and "crypto-intel db migrate" in w.last_error
    assert len(SpillDir.read(SpillDir(tmp_path / "unmigrated" / "rejected").files()[0])) == 100


def test_unknown_table_is_a_clear_error(tmp_path: Path) -> None:
    w = PgWriter("postgresql://127.0.0.1:1/x", tmp_path)
    with pytest.raises(KeyError, match="writable tables"):
        w.write("nope", pa.table({"a": [1]}))


async def test_a_stray_far_future_row_does_not_create_centuries_of_partitions(pg_migrated: str, tmp_path: Path) -> None:
    c = real_candles().take(slice(0, 10))
    c.open_ts[-1] = 9_000_000_000_000_000_000  # year 2255
    w = await _write_all(pg_migrated, tmp_path, [("candles", rows.candles(c))])
    assert w.counters["rows_written"] == 10
    conn = await asyncpg.connect(pg_migrated)
    try:
        parts = await conn.fetchval("SELECT count(*) FROM pg_inherits WHERE inhparent = 'candles'::regclass")
        assert parts <= 1 + 2 + 1  # default + the real rows' month(s) + the stray row's month
        assert await conn.fetchval("SELECT count(*) FROM candles") == 10
    finally:
        await conn.close()
