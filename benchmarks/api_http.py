"""HTTP API throughput: ``GET /api/v1/signals?limit=50`` at 32 concurrent clients on one Serve
replica, next to a bare aiohttp handler returning the same payload, measured in the same run.
Targets: >= 1,500 requests/s with p99 <= 20 ms.

Needs Postgres and Redis (DATABASE_URL / REDIS_URL or the local defaults); it creates and drops
its own database and key namespace.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import time

import aiohttp
import numpy as np

TARGET_RPS, TARGET_P99_MS = 1500, 20.0
CLIENTS = int(os.environ.get("BENCH_HTTP_CLIENTS", 32))
SECONDS = float(os.environ.get("BENCH_HTTP_SECONDS", 10))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _load(url: str, headers: dict, seconds: float, clients: int) -> tuple[float, np.ndarray, int]:
    lat: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal errors
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            async with session.get(url, headers=headers) as r:
                await r.read()
                if r.status != 200:
                    errors += 1
            lat.append(time.perf_counter() - t0)
    conn = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=conn) as session:
        t0 = time.perf_counter()
        await asyncio.gather(*[client(session) for _ in range(clients)])
        elapsed = time.perf_counter() - t0
    return len(lat) / elapsed, np.array(lat) * 1e3, errors


async def _bare_server(payload: bytes, port: int):
    from aiohttp import web

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=payload, content_type="application/json")
    app = web.Application()
    app.router.add_get("/api/v1/signals", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


def _line(name: str, rps: float, lat: np.ndarray, errors: int) -> str:
    p50, p99 = np.percentile(lat, [50, 99])
    return f"  {name:<34} {rps:8,.0f} req/s   p50 {p50:6.1f} ms   p99 {p99:6.1f} ms   errors {errors}"


def main() -> None:
    import asyncpg
    import ray
    import redis
    from ray import serve

    from actors.runtime import start_ray
    from serve.api import ApiSettings
    from serve.app import start_api
    from tests.serve.api_fixtures import _fill, _users

    admin_url = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    name, namespace = f"ci_bench_api_{secrets.token_hex(4)}", f"bench-api-{secrets.token_hex(4)}"
    db_url = admin_url.rsplit("/", 1)[0] + f"/{name}"

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
        return
    start_ray(dashboard=False)
    try:
        asyncio.run(_fill(db_url, redis_url, namespace))
        keys = asyncio.run(_users(db_url))
        port = _free_port()
        url = start_api(ApiSettings(db_url, redis_url, namespace), port=port)
        from tests.serve.api_fixtures import _wait_ready
        _wait_ready(url)
        target = f"{url}/api/v1/signals?limit=50"
        headers = {"X-API-Key": keys["admin"]}

        async def run() -> None:
            async with aiohttp.ClientSession() as s:
                async with s.get(target, headers=headers) as r:
                    payload = await r.read()
            await _load(target, headers, 2.0, CLIENTS)  # warm-up: pools, caches, replica
            rps, lat, err = await _load(target, headers, SECONDS, CLIENTS)
            bare_port = _free_port()
            runner = await _bare_server(payload, bare_port)
            try:
                brps, blat, berr = await _load(f"http://127.0.0.1:{bare_port}/api/v1/signals?limit=50", {}, SECONDS, CLIENTS)
            finally:
                await runner.cleanup()
            print(f"GET /api/v1/signals?limit=50 ({len(payload):,} bytes), {CLIENTS} concurrent clients, "
                  f"{SECONDS:g}s each, one Serve replica; load generator on the same 2 cores")
            print(_line("Serve app (auth, rate limit, Postgres)", rps, lat, err))
            print(_line("bare aiohttp, same payload", brps, blat, berr))
            p99 = float(np.percentile(lat, 99))
            print(f"  ratio Serve/bare {rps / brps:.2f}x   targets >= {TARGET_RPS:,} req/s: "
                  f"{'met' if rps >= TARGET_RPS else 'NOT met'}, p99 <= {TARGET_P99_MS:g} ms: "
                  f"{'met' if p99 <= TARGET_P99_MS else 'NOT met'}")
        asyncio.run(run())
    finally:
        serve.shutdown()
        ray.shutdown()
        client = redis.Redis.from_url(redis_url)
        for key in client.scan_iter(f"{namespace}:*"):
            client.delete(key)
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
