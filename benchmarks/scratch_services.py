"""A throwaway Postgres database and Redis namespace for an HTTP benchmark, on local Ray; all removed after."""

from __future__ import annotations

import asyncio
import os
import secrets
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator


@dataclass
class Scratch:
    db_url: str
    redis_url: str
    namespace: str


@contextmanager
def scratch_services(prefix: str, with_ray: bool = True) -> Iterator[Scratch | None]:
    """Yields the scratch services (with Ray started unless ``with_ray`` is False), or None (after saying so)
    when Postgres is not reachable."""
    import asyncpg
    import ray
    import redis
    from ray import serve

    from actors.runtime import start_ray

    admin_url = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    token = secrets.token_hex(4)
    name, namespace = f"ci_bench_{prefix}_{token}", f"bench-{prefix}-{token}"

    async def admin(sql: str) -> None:
        c = await asyncpg.connect(admin_url)
        try:
            await c.execute(sql)
        finally:
            await c.close()
    try:
        asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError) as e:
        print(f"  skipped: Postgres not reachable ({e})")
        yield None
        return
    if with_ray:
        start_ray(dashboard=False)
    try:
        yield Scratch(admin_url.rsplit("/", 1)[0] + f"/{name}", redis_url, namespace)
    finally:
        if with_ray:
            serve.shutdown()
            ray.shutdown()
        client = redis.Redis.from_url(redis_url)
        for key in client.scan_iter(f"{namespace}:*"):
            client.delete(key)
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
