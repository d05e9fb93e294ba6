"""HTTP API throughput: ``GET /api/v1/signals?limit=50`` at 32 concurrent clients on one Serve
replica, next to a bare aiohttp handler returning the same payload, measured in the same run.
Targets: >= 1,500 requests/s with p99 <= 20 ms.

Needs Postgres and Redis (DATABASE_URL / REDIS_URL or the local defaults); it creates and drops
its own database and key namespace.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time

import aiohttp
import numpy as np

from benchmarks.scratch_services import scratch_services

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
    from serve.api import ApiSettings
    from serve.app import start_api
    from tests.serve.api_fixtures import _fill, _users, _wait_ready

    with scratch_services("api") as s:
        if s is None:
            return
        asyncio.run(_fill(s.db_url, s.redis_url, s.namespace))
        keys = asyncio.run(_users(s.db_url))
        port = _free_port()
        url = start_api(ApiSettings(s.db_url, s.redis_url, s.namespace), port=port)
        _wait_ready(url)
        target = f"{url}/api/v1/signals?limit=50"
        headers = {"X-API-Key": keys["admin"]}

        async def run() -> None:
            async with aiohttp.ClientSession() as session:
                async with session.get(target, headers=headers) as r:
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
