"""Postgres write throughput through the idempotent writer path (binary COPY, merge on conflict),
against a plain asyncpg ``executemany`` of ``INSERT ... ON CONFLICT DO NOTHING`` in the same run.
Target: >= 300,000 rows/s sustained for narrow rows (trades) through the idempotent path.

Needs Postgres (DATABASE_URL or postgresql://postgres@127.0.0.1:5432/test); it creates and drops
its own database.
"""

from __future__ import annotations

import asyncio
import csv
import os
import secrets
import tempfile
import time
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import numpy as np
import pyarrow as pa

from connectors.storage import rows
from connectors.storage.migrate import migrate
from connectors.storage.pg_writer import PgWriter
from connectors.storage.tables import table
from schemas.batches import TradeBatch
from tests.data_paths import SHARED_DATA
from tests.storage.sample_rows import real_candles

TARGET = 300_000
ROWS = int(os.environ.get("BENCH_STORAGE_ROWS", 1_000_000))
BASELINE_ROWS = int(os.environ.get("BENCH_STORAGE_BASELINE_ROWS", 20_000))


def _trades(n: int) -> pa.Table:
    """Real XRP/ETH trades repeated under new market names until ``n`` rows (narrow: 6 columns)."""
    import pyarrow.parquet as pq
    t = pq.read_table(SHARED_DATA / "trades" / "XRP_ETH-trades.parquet").to_pandas()
    ts = t["timestamp"].astype("int64").to_numpy() * (10**6 if t["timestamp"].astype("int64").max() < 1e15 else 1)
    k = -(-n // len(t))
    reps = [TradeBatch([f"BINANCE:XRPETH#{i}"], np.zeros(len(t), np.int32), ts, t["price"].to_numpy(float),
                       t["amount"].to_numpy(float), np.where(t["side"] == "buy", 1, -1).astype(np.int8),
                       np.arange(len(t), dtype=np.int64)) for i in range(k)]
    return rows.trades(TradeBatch.concat(reps)).slice(0, n)


def _transfers(n: int) -> pa.Table:
    """Real ERC-20 transfer rows as templates, spread over distinct blocks until ``n`` rows."""
    path = SHARED_DATA / "chain" / "test_export_token_transfers_job" / "block_with_transfers" / "expected_token_transfers.csv"
    tmpl = list(csv.DictReader(open(path)))
    i = np.arange(n)
    pick = [tmpl[j % len(tmpl)] for j in range(n)]
    blocks = 19_000_000 + i // 200
    return pa.table({
        "chain": pa.array(["ethereum"] * n), "block_hash": [f"0x{b:064x}" for b in blocks.tolist()],
        "log_index": pa.array(i % 200, pa.int32()), "block_number": blocks,
        "block_ts": 1_704_067_200_000_000_000 + blocks * 12_000_000_000 - 19_000_000 * 12_000_000_000,
        "tx_hash": [r["transaction_hash"] for r in pick], "token_address": [r["token_address"] for r in pick],
        "from_address": [r["from_address"] for r in pick], "to_address": [r["to_address"] for r in pick],
        "value": [str(int(r["value"]) * (j + 1)) for j, r in enumerate(pick)]}, schema=table("token_transfers").arrow_schema)


async def _writer(url: str, name: str, data: pa.Table, chunk: int = 10_000) -> tuple[float, dict]:
    w = await PgWriter(url, tempfile.mkdtemp(prefix="bench-spill-"), connections=2, batch_rows=50_000).start()
    t0 = time.perf_counter()
    for start in range(0, data.num_rows, chunk):
        w.write(name, data.slice(start, chunk))
        await asyncio.sleep(0)
    await w.flush()
    dt = time.perf_counter() - t0
    await w.close()
    return data.num_rows / dt, w.stats()


def _python_rows(name: str, data: pa.Table) -> list[tuple]:
    import datetime as dt
    from decimal import Decimal
    spec = table(name)
    cols = []
    for c, t in spec.columns:
        vals = data.column(c).cast(pa.string()).to_pylist() if pa.types.is_dictionary(data.column(c).type) \
            else data.column(c).to_pylist()
        if t == "timestamptz":
            vals = [dt.datetime.fromtimestamp(v / 1e9, dt.timezone.utc) for v in vals]
        elif t == "numeric":
            vals = [Decimal(v) for v in vals]
        cols.append(vals)
    return list(zip(*cols))


async def _executemany(url: str, name: str, data: pa.Table) -> float:
    spec = table(name)
    records = _python_rows(name, data)
    sql = (f'INSERT INTO "{name}" ({", ".join(spec.names)}) VALUES ({", ".join(f"${i + 1}" for i in range(len(spec.names)))}) '
           "ON CONFLICT DO NOTHING")
    conn = await asyncpg.connect(url)
    try:
        t0 = time.perf_counter()
        await conn.executemany(sql, records)
        return len(records) / (time.perf_counter() - t0)
    finally:
        await conn.close()


async def _run(admin: str) -> None:
    name = f"ci_bench_{secrets.token_hex(4)}"
    p = urlsplit(admin)
    url = urlunsplit((p.scheme, p.netloc, f"/{name}", p.query, p.fragment))
    conn = await asyncpg.connect(admin)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    try:
        await migrate(url)
        datasets = {"trades": _trades(ROWS), "candles": rows.candles(real_candles(ROWS)).slice(0, ROWS),
                    "token_transfers": _transfers(ROWS // 4)}
        print(f"{ROWS:,} rows per table ({ROWS // 4:,} token transfers); baseline on {BASELINE_ROWS:,} rows")
        for tname, data in datasets.items():
            fresh, _ = await _writer(url, tname, data)
            again, st = await _writer(url, tname, data)  # every row already there: the merge path
            base_data = data.slice(0, BASELINE_ROWS)
            cols = table(tname).names
            c = await asyncpg.connect(url)
            await c.execute(f'TRUNCATE "{tname}"')
            await c.close()
            base = await _executemany(url, tname, base_data)
            verdict = ""
            if tname == "trades":
                verdict = f"  (target >= {TARGET:,} rows/s narrow rows: {'met' if fresh >= TARGET else 'NOT met'})"
            print(f"  {tname:<16} {len(cols):>2} cols  writer {fresh:>10,.0f} rows/s   replay (all duplicates) "
                  f"{again:>10,.0f} rows/s   executemany {base:>8,.0f} rows/s   ratio {fresh / base:5.1f}x{verdict}")
    finally:
        conn = await asyncpg.connect(admin)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()


def main() -> None:
    admin = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    try:
        asyncio.run(_run(admin))
    except (OSError, asyncpg.PostgresError) as e:
        print(f"  skipped: Postgres not reachable ({e})")
