"""Partition upkeep for the plain-Postgres path: partitions ahead of time, retention by dropping.

Hypertables need none of this (TimescaleDB's own policies do it); for them it reports and exits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import asyncpg

_BOUND = re.compile(r"FROM \('([^']+)'\) TO \('([^']+)'\)")


@dataclass
class MaintenanceReport:
    """What one maintenance run did."""

    created: dict[str, int] = field(default_factory=dict)  # table -> partitions created
    dropped: list[str] = field(default_factory=list)  # partitions dropped by retention
    hypertables: list[str] = field(default_factory=list)  # left to TimescaleDB's policies


async def partitions(conn: asyncpg.Connection, table: str) -> list[tuple[str, datetime, datetime]]:
    """(name, from, to) of each monthly partition of a table, oldest first."""
    rows = await conn.fetch("""
        SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = $1::regclass""", table)
    out = []
    for r in rows:
        m = _BOUND.search(r["bound"])
        if m:
            out.append((r["relname"], datetime.fromisoformat(m.group(1)), datetime.fromisoformat(m.group(2))))
    return sorted(out, key=lambda p: p[1])


async def maintain(dsn: str, ahead_months: int = 3, now: datetime | None = None) -> MaintenanceReport:
    """Create monthly partitions up to ``ahead_months`` ahead; drop those past their table's retention."""
    now = now or datetime.now(timezone.utc)
    report = MaintenanceReport()
    conn = await asyncpg.connect(dsn)
    try:
        tables = await conn.fetch("SELECT name, kind, retention FROM ci_time_tables ORDER BY name")
        for t in tables:
            if t["kind"] == "hypertable":
                report.hypertables.append(t["name"])
                continue
            made = await conn.fetchval("SELECT ci_ensure_partitions($1, $2, $3)", t["name"], now,
                                       now + timedelta(days=31 * ahead_months))
            if made:
                report.created[t["name"]] = made
            if t["retention"] is None:
                continue
            cutoff = now - t["retention"]
            for name, _, upper in await partitions(conn, t["name"]):
                if upper <= cutoff:
                    await conn.execute(f'DROP TABLE "{name}"')
                    report.dropped.append(name)
        return report
    finally:
        await conn.close()
