"""In-process API servers for tests that need more than one replica or a replica's counters: a filled
scratch database and Redis namespace, and uvicorn servers of ``create_app`` on free 127.0.0.1 ports."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import redis

from tests.serve.api_fixtures import _fill, _free_port, _users
from tests.services import unavailable
from tests.storage.pg_fixtures import DEFAULT_URL as PG_DEFAULT
from tests.storage.redis_fixtures import DEFAULT_URL as REDIS_DEFAULT


@dataclass
class Filled:
    database_url: str
    redis_url: str
    namespace: str
    keys: dict[str, str]
    signal_ids: list[str]
    markets: list[str]


async def _admin(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url, timeout=3)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def filled() -> Iterator[Filled]:
    """A database filled by the engine over the bundled sample, users admin/pro/free, its own namespace."""
    admin_url = os.environ.get("DATABASE_URL", PG_DEFAULT)
    redis_url = os.environ.get("REDIS_URL", REDIS_DEFAULT)
    name = f"ci_hot_{secrets.token_hex(5)}"
    p = urlsplit(admin_url)
    database_url = urlunsplit((p.scheme, p.netloc, f"/{name}", p.query, p.fragment))
    namespace = f"test-hot-{secrets.token_hex(4)}"
    try:
        asyncio.run(_admin(admin_url, f'CREATE DATABASE "{name}"'))
        redis.Redis.from_url(redis_url, socket_connect_timeout=1).ping()
    except (OSError, asyncpg.PostgresError, redis.ConnectionError) as e:
        unavailable(f"Postgres or Redis not reachable ({e})")
    client = redis.Redis.from_url(redis_url)
    try:
        signal_ids, markets = asyncio.run(_fill(database_url, redis_url, namespace))
        keys = asyncio.run(_users(database_url))
        yield Filled(database_url, redis_url, namespace, keys, signal_ids, markets)
    finally:
        for key in client.scan_iter(f"{namespace}:*"):
            client.delete(key)
        asyncio.run(_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextlib.asynccontextmanager
async def api_server(settings) -> AsyncIterator[tuple[str, object]]:
    """A uvicorn server of ``create_app(settings)`` in this event loop; yields (base URL, app)."""
    import uvicorn

    from serve.api import create_app
    app = create_app(settings)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False, lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        await task
        if app.state.services is not None:
            await app.state.services.close()
