"""Ordered SQL migrations: apply, report and roll back, recorded in ``schema_migrations``.

Each file ``migrations/NNNN_name.sql`` holds a ``-- migrate:up`` and a ``-- migrate:down`` section.
Every migration runs in its own transaction; a session advisory lock makes concurrent runs of
``db migrate`` (several hosts starting at once) apply each migration exactly once.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import asyncpg

from schemas.errors import CryptoIntelError

MIGRATIONS_DIR = Path(os.environ.get("CRYPTO_INTEL_MIGRATIONS", Path(__file__).resolve().parents[2] / "migrations"))
LOCK_KEY = 0x63695F6D6967  # "ci_mig": one lock for every migration run against a database
STORAGE_MODES = ("auto", "plain", "timescale")
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(CryptoIntelError, RuntimeError):
    """A migration file is malformed, was edited after being applied, or failed to apply."""


@dataclass(frozen=True)
class Migration:
    """One migration file: its version, name, SQL for each direction and a checksum of the file."""

    version: int
    name: str
    up: str
    down: str
    checksum: str


@dataclass(frozen=True)
class MigrationState:
    """A migration as the database sees it."""

    version: int
    name: str
    applied_at: datetime | None
    modified: bool  # applied, but the file changed since

    @property
    def applied(self) -> bool:
        return self.applied_at is not None


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Read and check every migration file, in version order."""
    if not directory.is_dir():
        raise MigrationError(f"migrations folder {directory} not found (set CRYPTO_INTEL_MIGRATIONS)")
    found = []
    for path in sorted(directory.glob("*.sql")):
        m = _FILE.match(path.name)
        if not m:
            raise MigrationError(f"{path.name}: migration files are named NNNN_name.sql")
        text = path.read_text()
        parts = re.split(r"^-- migrate:(up|down)\s*$", text, flags=re.MULTILINE)
        sections = dict(zip(parts[1::2], parts[2::2]))
        if "up" not in sections or not sections["up"].strip():
            raise MigrationError(f"{path.name}: no '-- migrate:up' section")
        found.append(Migration(int(m.group(1)), m.group(2), sections["up"], sections.get("down", ""),
                               hashlib.sha256(text.encode()).hexdigest()))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"duplicate migration versions in {directory}")
    return found


async def _connect(dsn: str, mode: str) -> asyncpg.Connection:
    if mode not in STORAGE_MODES:
        raise MigrationError(f"storage mode {mode!r} is not one of {', '.join(STORAGE_MODES)}")
    conn = await asyncpg.connect(dsn)
    await conn.execute("SELECT set_config('ci.storage_mode', $1, false)", mode)
    return conn


async def _lock(conn: asyncpg.Connection) -> None:
    # the lock comes first: even creating the bookkeeping table races between processes
    await conn.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
    await conn.execute("""
        CREATE TABLE IF NOT EXISTS schema_migrations (
            version     integer PRIMARY KEY,
            name        text NOT NULL,
            checksum    text NOT NULL,
            applied_at  timestamptz NOT NULL DEFAULT now()
        )""")


async def _step(conn: asyncpg.Connection, sql: str, what: str, record: str, *args) -> None:
    # the migration's SQL and its bookkeeping row commit together or not at all
    try:
        async with conn.transaction():
            await conn.execute(sql)
            await conn.execute(record, *args)
    except asyncpg.PostgresError as e:
        raise MigrationError(f"{what} failed: {e}") from e


async def _applied(conn: asyncpg.Connection) -> dict[int, asyncpg.Record]:
    if not await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL"):
        return {}
    return {r["version"]: r for r in await conn.fetch("SELECT * FROM schema_migrations ORDER BY version")}


async def migrate(dsn: str, target: int | None = None, mode: str = "auto",
                  migrations: list[Migration] | None = None) -> list[Migration]:
    """Apply every pending migration up to ``target`` (default: all); return those applied now."""
    migrations = load_migrations() if migrations is None else migrations
    conn = await _connect(dsn, mode)
    try:
        await _lock(conn)
        try:
            applied = await _applied(conn)
            for v, row in applied.items():
                mig = next((m for m in migrations if m.version == v), None)
                if mig is not None and mig.checksum != row["checksum"]:
                    raise MigrationError(f"migration {v:04d}_{mig.name} was edited after it was applied; "
                                         "add a new migration instead")
            done = []
            for mig in migrations:
                if mig.version in applied or (target is not None and mig.version > target):
                    continue
                await _step(conn, mig.up, f"migration {mig.version:04d}_{mig.name}",
                            "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                            mig.version, mig.name, mig.checksum)
                done.append(mig)
            return done
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
    finally:
        await conn.close()


async def downgrade(dsn: str, target: int, migrations: list[Migration] | None = None) -> list[Migration]:
    """Roll back applied migrations above ``target`` (0 = everything), newest first."""
    migrations = load_migrations() if migrations is None else migrations
    by_version = {m.version: m for m in migrations}
    conn = await _connect(dsn, "auto")
    try:
        await _lock(conn)
        try:
            undone = []
            for v in sorted(await _applied(conn), reverse=True):
                if v <= target:
                    break
                mig = by_version.get(v)
                if mig is None or not mig.down.strip():
                    raise MigrationError(f"migration {v:04d} has no down section here; cannot go below it")
                await _step(conn, mig.down, f"rolling back {v:04d}_{mig.name}",
                            "DELETE FROM schema_migrations WHERE version = $1", v)
                undone.append(mig)
            return undone
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
    finally:
        await conn.close()


async def status(dsn: str, migrations: list[Migration] | None = None) -> tuple[list[MigrationState], dict]:
    """Every known migration with its state, and facts about the database (storage mode, tables)."""
    migrations = load_migrations() if migrations is None else migrations
    conn = await _connect(dsn, "auto")
    try:
        applied = await _applied(conn)
        states = [MigrationState(m.version, m.name, applied[m.version]["applied_at"] if m.version in applied else None,
                                 m.version in applied and applied[m.version]["checksum"] != m.checksum)
                  for m in migrations]
        known = {m.version for m in migrations}
        states += [MigrationState(v, r["name"], r["applied_at"], False) for v, r in applied.items() if v not in known]
        facts = {"timescaledb_available": bool(await conn.fetchval(
                     "SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'")),
                 "timescaledb_installed": bool(await conn.fetchval(
                     "SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'")),
                 "time_tables": {}}
        if await conn.fetchval("SELECT to_regclass('ci_time_tables') IS NOT NULL"):
            facts["time_tables"] = {r["name"]: r["kind"] for r in await conn.fetch("SELECT name, kind FROM ci_time_tables")}
        return sorted(states, key=lambda s: s.version), facts
    finally:
        await conn.close()
