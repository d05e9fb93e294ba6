"""XGBoost serving: POST /ml/v1/predict through the real API (auth, rate limit, Serve handle, @serve.batch)
at batch 1 and under 32 concurrent clients, next to the same booster's in-process predict in this run.

The booster: 200 rounds of the project's default parameters on five features of a real candle file
(tests/data). Each HTTP phase uses an enterprise key of its own, so no phase runs into another's rate
limit. Knobs: BENCH_ML_SECONDS (per phase, default 4), BENCH_ML_CLIENTS (default 32).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path

import aiohttp
import numpy as np

from benchmarks.scratch_services import scratch_services

SECONDS = float(os.environ.get("BENCH_ML_SECONDS", "4"))
CLIENTS = int(os.environ.get("BENCH_ML_CLIENTS", "32"))
TARGET_P99_MS = 20.0


async def _load(url: str, key: str, rows: list, seconds: float, clients: int) -> tuple[float, np.ndarray, int]:
    lat: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds
    body = {"features": rows}

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal errors
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            async with session.post(url, json=body, headers={"X-API-Key": key}) as r:
                await r.read()
                if r.status != 200:
                    errors += 1
            lat.append(time.perf_counter() - t0)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as session:
        t0 = time.perf_counter()
        await asyncio.gather(*[client(session) for _ in range(clients)])
        elapsed = time.perf_counter() - t0
    return len(lat) / elapsed, np.array(lat) * 1e3, errors


def _in_process(booster, X: np.ndarray) -> tuple[np.ndarray, float]:
    from engine.models.xgb import predict
    lat = []
    for i in range(3000):
        row = X[i % len(X): i % len(X) + 1]
        t0 = time.perf_counter()
        predict(booster, row)
        lat.append(time.perf_counter() - t0)
    big = X[:1000]
    t0 = time.perf_counter()
    for _ in range(50):
        predict(booster, big)
    rows_s = 50 * len(big) / (time.perf_counter() - t0)
    return np.array(lat) * 1e3, rows_s


def _line(name: str, rps: float, rows: int, lat: np.ndarray, errors: int) -> str:
    p50, p99 = np.percentile(lat, [50, 99])
    return (f"  {name:<40} {rps:7,.0f} req/s {rps * rows:9,.0f} rows/s   p50 {p50:6.2f} ms   p99 {p99:6.2f} ms   "
            f"errors {errors}")


def main() -> None:
    from connectors.storage.migrate import migrate
    from serve.api import ApiSettings
    from serve.app import start_api
    from serve.models import deploy_models
    from tests.serve.api_fixtures import _free_port, _wait_ready
    from tests.serve.models_artefacts import feature_rows, register_xgb
    from tests.serve.test_models import _user

    with scratch_services("ml") as s:
        if s is None:
            return
        asyncio.run(migrate(s.db_url))
        keys = [asyncio.run(_user(s.db_url, "enterprise")) for _ in range(4)]
        root = Path(tempfile.mkdtemp(prefix="bench-ml-registry-"))
        version, booster = register_xgb(root, rounds=200, depth=4, promote=True)
        X, _ = feature_rows()
        lat_in, rows_s_in = _in_process(booster, X)
        url = start_api(ApiSettings(s.db_url, s.redis_url, s.namespace), port=_free_port())
        _wait_ready(url)
        t0 = time.perf_counter()
        deploy_models(root)
        deploy_s = time.perf_counter() - t0
        target = f"{url}/ml/v1/predict"
        one, many = X[:1].tolist(), X[:32].tolist()

        async def run() -> None:
            await _load(target, keys[0], one, 1.5, 4)  # warm-up: pools, auth cache, handles, replicas
            r1 = await _load(target, keys[1], one, SECONDS, 1)
            rc = await _load(target, keys[2], one, SECONDS, CLIENTS)
            rb = await _load(target, keys[3], many, SECONDS, CLIENTS)
            print(f"booster {version}: 200 rounds, depth 4, 5 features; one API replica + one model replica "
                  f"(num_cpus 0), deployed in {deploy_s:.1f}s; load generator on the same 2 cores, {SECONDS:g}s "
                  "per phase")
            p50, p99 = np.percentile(lat_in, [50, 99])
            print(f"  {'in-process predict, 1 row':<40} {1e3 / p50:7,.0f} call/s {'':>16}   p50 {p50:6.3f} ms   "
                  f"p99 {p99:6.3f} ms")
            print(f"  {'in-process predict, 1,000-row matrix':<40} {rows_s_in:25,.0f} rows/s")
            print(_line("HTTP batch 1, 1 client", r1[0], 1, r1[1], r1[2]))
            print(_line(f"HTTP batch 1, {CLIENTS} clients (@serve.batch)", rc[0], 1, rc[1], rc[2]))
            print(_line(f"HTTP 32 rows/request, {CLIENTS} clients", rb[0], 32, rb[1], rb[2]))
            p99_1 = float(np.percentile(r1[1], 99))
            print(f"  target p99 <= {TARGET_P99_MS:g} ms at batch 1: {'met' if p99_1 <= TARGET_P99_MS else 'NOT met'} "
                  f"({p99_1:.1f} ms); HTTP/in-process p50 at batch 1: {np.percentile(r1[1], 50) / p50:.0f}x")
        asyncio.run(run())



if __name__ == "__main__":
    main()
