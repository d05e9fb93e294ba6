"""Postgres fixtures: the server's admin URL, and a fresh database per test, dropped afterwards.

Without a reachable Postgres the tests skip, or fail when ``CI`` is set (CI must not pass by
skipping). ``DATABASE_URL`` points at the server (any database on it); tests create their own.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from tests.services import unavailable

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _with_db(url: str, name: str) -> str:
    p = urlsplit(url)
    return urlunsplit((p.scheme, p.netloc, f"/{name}", p.query, p.fragment))


async def _admin(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url, timeout=3)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_url() -> str:
    """``DATABASE_URL`` or the local default, checked by connecting."""
    url = os.environ.get("DATABASE_URL", DEFAULT_URL)
    try:
        asyncio.run(_admin(url, "SELECT 1"))
    except (OSError, asyncpg.PostgresError, asyncio.TimeoutError) as e:
        unavailable(f"Postgres not reachable at {urlsplit(url).hostname}:{urlsplit(url).port} ({e})")
    return url


async def fetch(url: str, sql: str) -> list:
    """Rows of one query on a fresh connection (tests read back what a job stored)."""
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(sql)
    finally:
        await conn.close()


@pytest.fixture
def pg_db(pg_url: str) -> Iterator[str]:
    """URL of a brand-new empty database, dropped (connections and all) after the test."""
    name = f"ci_test_{secrets.token_hex(6)}"
    asyncio.run(_admin(pg_url, f'CREATE DATABASE "{name}"'))
    try:
        yield _with_db(pg_url, name)
    finally:
        asyncio.run(_admin(pg_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def pg_migrated(pg_db: str) -> str:
    """A fresh database with every migration applied."""
    from connectors.storage.migrate import migrate
    asyncio.run(migrate(pg_db))
    return pg_db


async def table_digest(url: str, table: str, key: str) -> tuple[int, str]:
    """(row count, md5 of every row in key order): equal digests mean equal table contents."""
    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow(f'SELECT count(*) AS n, md5(coalesce(string_agg(t::text, E\'\\n\' ORDER BY {key}), \'\')) '
                                  f'AS h FROM "{table}" t')
        return row["n"], row["h"]
    finally:
        await conn.close()
