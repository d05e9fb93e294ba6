"""Migrations against the real Postgres: empty to head, head again (no-op), two processes at once,
down and up again, tables as the writers expect them, partitions and retention upkeep."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import asyncpg
import pytest

from connectors.storage.maintain import maintain, partitions
from connectors.storage.migrate import (
    MIGRATIONS_DIR,
    MigrationError,
    downgrade,
    load_migrations,
    migrate,
    status,
)
from connectors.storage.tables import TABLES
from tests.storage.pg_fixtures import pg_db, pg_migrated, pg_url  # noqa: F401 - fixtures

EXPECTED_TABLES = {"markets", "candles", "trades", "indicator_snapshots", "structure_events", "order_blocks",
                   "signals", "risk_scores", "wallets", "wallet_labels", "blocks", "transactions",
                   "token_transfers", "wallet_balances", "alerts", "users", "api_keys", "subscriptions",
                   "models", "backtests", "schema_migrations"}
PG_TYPES = {"text": "text", "timestamptz": "timestamp with time zone", "float8": "double precision",
            "bigint": "bigint", "integer": "integer", "boolean": "boolean", "jsonb": "jsonb",
            "numeric": "numeric", "text[]": "ARRAY", "float8[]": "ARRAY"}


async def _fetch(url: str, sql: str, *args):
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


def _cli(*args: str, url: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": url}
    return subprocess.run([sys.executable, "-m", "app.cli", "db", *args], capture_output=True, text=True,
                          env=env, timeout=120)


def test_empty_to_head_then_head_again_is_a_no_op(pg_db: str) -> None:
    applied = asyncio.run(migrate(pg_db))
    assert [m.version for m in applied] == [m.version for m in load_migrations()]
    tables = {r["table_name"] for r in asyncio.run(_fetch(
        pg_db, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"))}
    assert EXPECTED_TABLES <= tables
    before = asyncio.run(_fetch(pg_db, "SELECT version, applied_at FROM schema_migrations ORDER BY version"))
    assert asyncio.run(migrate(pg_db)) == []
    assert asyncio.run(_fetch(pg_db, "SELECT version, applied_at FROM schema_migrations ORDER BY version")) == before
    states, facts = asyncio.run(status(pg_db))
    assert all(s.applied and not s.modified for s in states)
    # this server has no TimescaleDB: the plain path must have been taken for every time table
    if not facts["timescaledb_available"]:
        assert set(facts["time_tables"].values()) == {"partitioned"}
    assert {"candles", "token_transfers", "signals", "trades"} <= set(facts["time_tables"])


def test_writer_table_specs_match_the_migrated_tables(pg_migrated: str) -> None:
    for spec in TABLES.values():
        rows = asyncio.run(_fetch(pg_migrated, "SELECT column_name, data_type, numeric_precision, numeric_scale "
                                               "FROM information_schema.columns WHERE table_name = $1", spec.name))
        cols = {r["column_name"]: r for r in rows}
        for name, pgtype in spec.columns:
            assert name in cols, f"{spec.name}.{name} missing"
            assert cols[name]["data_type"] == PG_TYPES[pgtype], f"{spec.name}.{name}"
            if pgtype == "numeric":
                assert (cols[name]["numeric_precision"], cols[name]["numeric_scale"]) == (78, 0)
        pk = asyncio.run(_fetch(pg_migrated, """
            SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
            WHERE i.indrelid = $1::regclass AND i.indisprimary""", spec.name))
        assert {r["attname"] for r in pk} == set(spec.key), spec.name


def test_concurrent_migrate_from_two_processes(pg_db: str) -> None:
    env = {**os.environ, "DATABASE_URL": pg_db}
    procs = [subprocess.Popen([sys.executable, "-m", "app.cli", "db", "migrate"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    applied = [out.count("applied 0") for out, _ in outs]
    assert sorted(applied) == [0, len(load_migrations())], outs  # one did everything, the other nothing
    rows = asyncio.run(_fetch(pg_db, "SELECT version FROM schema_migrations ORDER BY version"))
    assert [r["version"] for r in rows] == [m.version for m in load_migrations()]


def test_downgrade_to_zero_and_back(pg_migrated: str) -> None:
    undone = asyncio.run(downgrade(pg_migrated, 2))
    assert [m.version for m in undone] == sorted((m.version for m in load_migrations() if m.version > 2), reverse=True)
    assert asyncio.run(_fetch(pg_migrated, "SELECT to_regclass('token_transfers') AS t"))[0]["t"] is None
    assert asyncio.run(_fetch(pg_migrated, "SELECT to_regclass('candles') AS t"))[0]["t"] is not None
    asyncio.run(downgrade(pg_migrated, 0))
    left = {r["table_name"] for r in asyncio.run(_fetch(
        pg_migrated, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"))}
    assert left == {"schema_migrations"}
    assert len(asyncio.run(migrate(pg_migrated))) == len(load_migrations())


def test_cli_status_migrate_downgrade(pg_db: str) -> None:
    out = _cli("status", url=pg_db)
    assert out.returncode == 0 and "pending" in out.stdout
    assert _cli("migrate", url=pg_db).returncode == 0
    out = _cli("status", url=pg_db)
    assert "pending" not in out.stdout and "timescaledb:" in out.stdout
    out = _cli("downgrade", "--to", "3", url=pg_db)
    assert out.returncode == 0 and "rolled back 0005" in out.stdout and "rolled back 0004" in out.stdout
    assert "up to date" not in _cli("migrate", url=pg_db).stdout


def test_cli_without_database_says_how_to_fix() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    out = subprocess.run([sys.executable, "-m", "app.cli", "db", "status"], capture_output=True, text=True, env=env)
    assert out.returncode == 2 and "DATABASE_URL" in out.stderr
    out = _cli("status", url="postgresql://postgres:secret@127.0.0.1:1/nowhere")
    assert out.returncode == 2 and "secret" not in out.stderr and "127.0.0.1" in out.stderr


def test_edited_migration_is_refused(pg_db: str, tmp_path: Path) -> None:
    shutil.copytree(MIGRATIONS_DIR, tmp_path / "m")
    asyncio.run(migrate(pg_db, migrations=load_migrations(tmp_path / "m")))
    first = sorted((tmp_path / "m").glob("0001_*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited\n")
    with pytest.raises(MigrationError, match="edited after it was applied"):
        asyncio.run(migrate(pg_db, migrations=load_migrations(tmp_path / "m")))
    states, _ = asyncio.run(status(pg_db, migrations=load_migrations(tmp_path / "m")))
    assert [s.modified for s in states][0] is True


def test_malformed_migration_files_are_reported(tmp_path: Path) -> None:
    (tmp_path / "0001_ok.sql").write_text("-- migrate:up\nSELECT 1;\n-- migrate:down\n")
    (tmp_path / "bad name.sql").write_text("-- migrate:up\nSELECT 1;\n")
    with pytest.raises(MigrationError, match="NNNN_name"):
        load_migrations(tmp_path)
    (tmp_path / "bad name.sql").unlink()
    (tmp_path / "0002_empty.sql").write_text("-- migrate:down\nSELECT 1;\n")
    with pytest.raises(MigrationError, match="no '-- migrate:up'"):
        load_migrations(tmp_path)


def test_partitions_created_on_demand_and_rows_moved_out_of_default(pg_migrated: str) -> None:
    async def go():
        conn = await asyncpg.connect(pg_migrated)
        try:
            await conn.execute("INSERT INTO candles (market, timeframe, open_ts, close_ts, volume, buy_volume, "
                               "sell_volume, trade_count) VALUES ('X', '1m', '2024-02-10', '2024-02-10 00:01', 1, 0, 0, 1)")
            assert await conn.fetchval("SELECT count(*) FROM candles_default") == 1
            made = await conn.fetchval("SELECT ci_ensure_partitions('candles', '2024-01-20', '2024-03-01')")
            assert made == 3
            assert await conn.fetchval("SELECT count(*) FROM candles_default") == 0
            assert await conn.fetchval("SELECT count(*) FROM candles_p202402") == 1
            assert await conn.fetchval("SELECT count(*) FROM candles") == 1
            assert await conn.fetchval("SELECT ci_ensure_partitions('candles', '2024-01-20', '2024-03-01')") == 0
        finally:
            await conn.close()
    asyncio.run(go())


def test_maintain_creates_ahead_and_applies_retention(pg_migrated: str) -> None:
    now = datetime(2025, 6, 15, tzinfo=timezone.utc)

    async def old_partition():
        conn = await asyncpg.connect(pg_migrated)
        try:
            await conn.fetchval("SELECT ci_ensure_partitions('trades', '2025-01-01', '2025-01-02')")
            await conn.fetchval("SELECT ci_ensure_partitions('candles', '2025-01-01', '2025-01-02')")
        finally:
            await conn.close()
    asyncio.run(old_partition())
    report = asyncio.run(maintain(pg_migrated, ahead_months=2, now=now))
    assert report.created["candles"] >= 3  # June, July, August
    assert "trades_p202501" in report.dropped  # trades keep 30 days
    assert "candles_p202501" not in report.dropped  # candles keep everything

    async def names(table):
        conn = await asyncpg.connect(pg_migrated)
        try:
            return [p[0] for p in await partitions(conn, table)]
        finally:
            await conn.close()
    assert "candles_p202501" in asyncio.run(names("candles"))
    assert "trades_p202501" not in asyncio.run(names("trades"))
    assert {"trades_p202506", "trades_p202507"} <= set(asyncio.run(names("trades")))
