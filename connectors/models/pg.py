"""The ``models`` table (migrations 0004, 0009) as a mirror of the registry's files: one name's rows are
replaced by what the files say, in one transaction, so the table never shows half a change."""

from __future__ import annotations

import asyncio
import json

import asyncpg

_UPSERT = """
INSERT INTO models (name, version, kind, uri, metrics, params, created_at, stage, features, window_start,
                    window_end, data_hash)
VALUES ($1, $2, $3, $4, $5::text::jsonb, $6::text::jsonb, $7::text::timestamptz, $8, $9::text[], $10, $11, $12)
ON CONFLICT (name, version) DO UPDATE SET
    kind = EXCLUDED.kind, uri = EXCLUDED.uri, metrics = EXCLUDED.metrics, params = EXCLUDED.params,
    created_at = EXCLUDED.created_at, stage = EXCLUDED.stage, features = EXCLUDED.features,
    window_start = EXCLUDED.window_start, window_end = EXCLUDED.window_end, data_hash = EXCLUDED.data_hash
"""


def _args(row: dict) -> list:
    return [row["name"], row["version"], row["kind"], row["uri"],
            json.dumps(row["metrics"], allow_nan=False, separators=(",", ":")),
            json.dumps(row["params"], allow_nan=False, separators=(",", ":")), row["created_at"] or None,
            row["stage"], list(row["features"]), row["window_start"], row["window_end"], row["data_hash"]]


async def write_models(conn: asyncpg.Connection, rows: list[dict]) -> None:
    """Upsert ``rows`` (one model name's versions) and drop that name's rows the files no longer hold."""
    args = [_args(r) for r in rows]  # checked before anything is written
    async with conn.transaction():
        for a in args:
            await conn.execute(_UPSERT, *a)
        for name in sorted({r["name"] for r in rows}):
            keep = [r["version"] for r in rows if r["name"] == name]
            await conn.execute("DELETE FROM models WHERE name = $1 AND NOT (version = ANY($2::text[]))", name, keep)


async def read_models(conn: asyncpg.Connection, name: str | None = None) -> list[dict]:
    """The table's rows (of one name, or all) by name and version number; jsonb as Python values."""
    rows = await conn.fetch(
        "SELECT name, version, kind, uri, metrics::text AS metrics, params::text AS params, stage, features, "
        "window_start, window_end, data_hash, created_at FROM models WHERE $1::text IS NULL OR name = $1 "
        "ORDER BY name, length(version), version", name)
    out = []
    for r in rows:
        d = dict(r)
        d["metrics"], d["params"] = json.loads(d["metrics"]), json.loads(d["params"])
        d["features"] = list(d["features"] or [])
        out.append(d)
    return out


def sync_models(database_url: str, rows: list[dict], *, migrate: bool = True) -> None:
    """``write_models`` from synchronous code over one connection, bringing the schema up to date first
    (as every command that writes does; ``migrate=False`` skips that)."""

    async def go() -> None:
        if migrate:
            from connectors.storage.migrate import migrate as apply
            await apply(database_url)
        conn = await asyncpg.connect(database_url)
        try:
            await write_models(conn, rows)
        finally:
            await conn.close()
    asyncio.run(go())
