"""A running API for integration tests: a migrated database filled by the engine's own pipeline over
the bundled sample (through the store that `crypto-intel run` uses), users of each role and tier,
and the Ray Serve application on a free 127.0.0.1 port."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import redis

from tests.services import unavailable
from tests.storage.pg_fixtures import DEFAULT_URL as PG_DEFAULT
from tests.storage.redis_fixtures import DEFAULT_URL as REDIS_DEFAULT


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _fill(database_url: str, redis_url: str, namespace: str) -> tuple[list[str], list[str]]:
    from actors.store import Store
    from connectors.storage.migrate import migrate
    from engine.config import PipelineConfig
    from engine.pipeline import STAGES, build_chain
    from engine.sources.files import load_any
    from engine.sources.sample import sample_paths

    await migrate(database_url)
    store = Store(database_url, redis_url, tempfile.mkdtemp(prefix="api-spill-"), namespace=namespace)
    chain = build_chain(list(STAGES), PipelineConfig(timeframes=("5m",)))
    signal_ids, markets = [], set()
    for path in sample_paths():
        batch, _ = load_any(path)
        markets |= set(batch.markets)
        emitted = chain.update(batch)
        signal_ids += [s.id for s in emitted.value or []]
        await store.push(emitted.value or [], emitted.features)
    emitted = chain.flush()
    signal_ids += [s.id for s in emitted.value or []]
    await store.push(emitted.value or [], emitted.features)
    await store.flush()
    await store.close()
    return signal_ids, sorted(markets)


async def _users(database_url: str) -> dict[str, str]:
    from serve.accounts import Accounts
    accounts = await Accounts.create(database_url)
    try:
        keys = {}
        for name, tier, role in (("admin", "enterprise", "admin"), ("pro", "pro", "user"), ("free", "free", "user")):
            await accounts.create_user(name, tier=tier)
            keys[name] = await accounts.issue_key(name, role=role)
        return keys
    finally:
        await accounts.close()


@dataclass
class Filled:
    """A migrated database filled over the bundled sample, its Redis namespace and users' keys."""

    database_url: str
    redis_url: str
    namespace: str
    keys: dict[str, str]  # admin, pro, free -> key
    signal_ids: list[str]
    markets: list[str]


@dataclass
class RunningApi(Filled):
    """A filled database and where the API over it listens."""

    url: str


@contextmanager
def filled_services(prefix: str) -> Iterator[Filled]:
    """A scratch database and namespace filled by the engine's own store, dropped afterwards."""
    admin_url = os.environ.get("DATABASE_URL", PG_DEFAULT)
    redis_url = os.environ.get("REDIS_URL", REDIS_DEFAULT)
    name = f"ci_{prefix}_{secrets.token_hex(5)}"
    p = urlsplit(admin_url)
    database_url = urlunsplit((p.scheme, p.netloc, f"/{name}", p.query, p.fragment))
    namespace = f"test-{prefix}-{secrets.token_hex(4)}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(admin_url, timeout=3)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()
    try:
        asyncio.run(admin(f'CREATE DATABASE "{name}"'))
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
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def running_api(ray_local) -> Iterator[RunningApi]:
    """The real Serve app over a filled database; torn down at the end of the session."""
    from ray import serve

    from serve.api import ApiSettings
    from serve.app import start_api

    with filled_services("api") as f:
        try:
            port = _free_port()
            url = start_api(ApiSettings(f.database_url, f.redis_url, f.namespace,
                                        cors_origins=["http://localhost:3000"]), port=port)
            _wait_ready(url)
            yield RunningApi(**vars(f), url=url)
        finally:
            serve.shutdown()


def _wait_ready(url: str, timeout_s: float = 90.0) -> None:
    import urllib.request
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=5) as r:
                if r.status == 200:
                    return
        except OSError as e:
            last = e
        time.sleep(0.5)
    raise TimeoutError(f"API at {url} not ready after {timeout_s}s ({last})")
