"""HTTP API throughput and where one request's time goes.

``GET /api/v1/signals?limit=50`` and ``GET /api/v1/market/summary`` at 32 concurrent clients (each
its own key, as 32 programs would be) on one Serve replica, with Serve's Python proxy and with its
HAProxy ingress (throughput-optimised mode), hot reads on, and with hot reads off (every request
to Postgres, the earlier design) for comparison; next to a bare aiohttp server in its own process
returning the same payload, measured in the same run. Targets: >= 1,500 requests/s each with p99
<= 20 ms, and >= 0.5x the bare server. Before the load: the breakdown of one request, measured
piece by piece in this process (Postgres query, row decoding, JSON encoding, key check, rate limit,
the hot-read lookup, the whole app without HTTP) and over HTTP at one client (app on uvicorn
without Serve, through Serve's proxy, through HAProxy).

Each server runs in its own process (a Serve mode needs a fresh Ray: Ray reads the mode at start);
the load generator is this process, on the same cores. Needs Postgres and Redis (DATABASE_URL /
REDIS_URL or the local defaults); it creates and drops its own database and key namespace.
Sizes: BENCH_HTTP_CLIENTS (32), BENCH_HTTP_SECONDS (5), BENCH_HTTP_MODES (proxy,haproxy).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time

import aiohttp
import numpy as np

from benchmarks.scratch_services import scratch_services

TARGET_RPS, TARGET_P99_MS, TARGET_RATIO = 1500, 20.0, 0.5
CLIENTS = int(os.environ.get("BENCH_HTTP_CLIENTS", "32"))
SECONDS = float(os.environ.get("BENCH_HTTP_SECONDS", "5"))
MODES = [m for m in os.environ.get("BENCH_HTTP_MODES", "proxy,haproxy").split(",") if m]
ENDPOINTS = {"signals": "/api/v1/signals?limit=50", "summary": "/api/v1/market/summary"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- load -------------------------------------------------------------------------------------
async def _load(url: str, keys: list[str], seconds: float, clients: int) -> tuple[float, np.ndarray, int]:
    lat: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds

    async def client(session: aiohttp.ClientSession, key: str) -> None:
        nonlocal errors
        headers = {"X-API-Key": key}
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
        await asyncio.gather(*[client(session, keys[i % len(keys)]) for i in range(clients)])
        elapsed = time.perf_counter() - t0
    return len(lat) / elapsed, np.array(lat) * 1e3, errors


async def _one_client_ms(url: str, key: str, n: int = 300) -> float:
    async with aiohttp.ClientSession() as session:
        lat = []
        for _ in range(n):
            t0 = time.perf_counter()
            async with session.get(url, headers={"X-API-Key": key}) as r:
                await r.read()
            lat.append(time.perf_counter() - t0)
    return float(np.median(lat[n // 5:]) * 1e3)


def _line(name: str, rps: float, lat: np.ndarray, errors: int) -> str:
    p50, p99 = np.percentile(lat, [50, 99]) if len(lat) else (float("nan"),) * 2
    return f"    {name:<40} {rps:8,.0f} req/s   p50 {p50:6.1f} ms   p99 {p99:6.1f} ms   errors {errors}"


# ---- servers in their own processes ------------------------------------------------------------
def _child(spec: dict) -> None:
    """Serve the API as ``spec`` says, print its URL, and stay up until stdin closes."""
    kind = spec["kind"]
    if kind == "bare":
        from aiohttp import web
        with open(spec["payloads"]) as f:
            payloads = {path: bytes.fromhex(body) for path, body in json.load(f).items()}

        async def handler(request: web.Request) -> web.Response:
            return web.Response(body=payloads[request.path_qs], content_type="application/json")

        async def main() -> None:
            app = web.Application()
            for path in payloads:
                app.router.add_get(path.split("?")[0], handler)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            port = _free_port()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            print(f"URL http://127.0.0.1:{port}", flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        asyncio.run(main())
        return
    from serve.api import ApiSettings
    settings = ApiSettings(spec["db"], spec["redis"], spec["namespace"], hot_reads=spec["hot"])
    if kind == "uvicorn":
        import uvicorn

        from serve.api import create_app
        port = _free_port()
        config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning",
                                access_log=False, lifespan="off")
        server = uvicorn.Server(config)

        async def main() -> None:
            task = asyncio.create_task(server.serve())
            while not server.started:
                await asyncio.sleep(0.02)
            print(f"URL http://127.0.0.1:{port}", flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
            server.should_exit = True
            await task
        asyncio.run(main())
        return
    from serve.app import start_api, use_serve_mode
    use_serve_mode(kind)
    from actors.runtime import start_ray
    start_ray(dashboard=False)
    from tests.serve.api_fixtures import _wait_ready
    url = start_api(settings, port=_free_port(), access_log=False)
    _wait_ready(url)
    print(f"URL {url}", flush=True)
    sys.stdin.read()
    from ray import serve
    serve.shutdown()


class _Server:
    def __init__(self, spec: dict) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "benchmarks.api_http", "--child", json.dumps(spec)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True)
        self.url = None
        for line in self.proc.stdout:
            if line.startswith("URL "):
                self.url = line.split()[1]
                break
        if self.url is None:
            raise RuntimeError(f"the {spec['kind']} server did not start (exit {self.proc.wait()})")

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# ---- the breakdown ---------------------------------------------------------------------------
async def _mean_us(fn, n: int = 300) -> float:
    for _ in range(min(20, n)):
        await fn()
    t0 = time.perf_counter()
    for _ in range(n):
        await fn()
    return (time.perf_counter() - t0) / n * 1e6


async def _asgi_get(app, path: str, key: str) -> bytes:
    p, _, q = path.partition("?")
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": p, "raw_path": p.encode(), "query_string": q.encode(), "root_path": "",
             "headers": [(b"host", b"bench"), (b"x-api-key", key.encode())], "client": ("127.0.0.1", 1),
             "server": ("127.0.0.1", 80)}
    body = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        if message["type"] == "http.response.start" and message["status"] != 200:
            raise RuntimeError(f"{path} answered {message['status']}: the breakdown measures 200 answers only")
        if message["type"] == "http.response.body":
            body.append(message.get("body", b""))
    await app(scope, receive, send)
    return b"".join(body)


async def _breakdown(s, key: str, app_keys: list[str]) -> list[tuple[str, float, float]]:
    """(piece, µs for signals, µs for summary) measured in this process."""
    from fastapi.responses import JSONResponse

    from connectors.storage.ratelimit import TokenBucket
    from connectors.storage.tables import table
    from serve.api import ApiSettings, app_services, clean, create_app
    from serve.hot_path import cache_key

    cold_app = create_app(ApiSettings(s.db_url, s.redis_url, s.namespace, hot_reads=False))
    hot_app = create_app(ApiSettings(s.db_url, s.redis_url, s.namespace, hot_reads=True))
    cold, hot = await app_services(cold_app), await app_services(hot_app)
    while not hot.hot.live:
        await asyncio.sleep(0.02)
    pool = cold.queries.pool
    cols = ", ".join(f'"{c}"' for c in table("signals").names)
    sig_sql = f"SELECT {cols} FROM signals WHERE true ORDER BY ts, id LIMIT 50"
    tf = cold.settings.default_timeframe
    raw_sig = await pool.fetch(sig_sql)
    rows_sig = [dict(r) for r in raw_sig]
    rows_sum = await cold.queries.market_summaries(tf)
    who = await cold.accounts.authenticate(key)
    bucket = TokenBucket(cold.redis, cold.limiter._keys, 1e9, 10**9, name="bench")
    out: list[tuple[str, float, float]] = []

    async def both(name, f_sig, f_sum, n=300):
        out.append((name, await _mean_us(f_sig, n), await _mean_us(f_sum, n)))

    async def _sum_query():
        await cold.queries.market_summaries(tf)

    async def _sig_query():
        await pool.fetch(sig_sql)

    async def _decode_sig():
        [dict(r) for r in raw_sig]

    async def _decode_sum():
        pass

    async def _enc_sig():
        return JSONResponse({"items": clean(rows_sig), "next_cursor": None}).body

    async def _enc_sum():
        return JSONResponse({"items": clean(rows_sum), "next_cursor": None}).body

    async def _auth_db():
        await cold.accounts.authenticate(key)

    async def _auth_cached():
        await cold.authenticate(key)

    async def _rl_redis():
        await bucket.take(who.key_id)

    from dataclasses import replace
    rl_who = replace(who, key_id="bench-rl")  # its own bucket: the app runs below must not be refused

    async def _rl_local():
        await hot.limiter.check(rl_who)
    await both("Postgres query (and the driver's decoding)", _sig_query, _sum_query, 200)
    await both("rows to dicts", _decode_sig, _decode_sum)
    await both("JSON encoding (clean + render)", _enc_sig, _enc_sum)
    await both("key check, Postgres (cache miss)", _auth_db, _auth_db, 200)
    await both("key check, replica cache", _auth_cached, _auth_cached)
    await both("rate limit, shared Redis bucket per request", _rl_redis, _rl_redis, 200)
    await both("rate limit, local lease", _rl_local, _rl_local, 2000)
    k_sig, _ = cache_key("/api/v1/signals", b"limit=50")
    k_sum, _ = cache_key("/api/v1/market/summary", b"")
    for path in ENDPOINTS.values():
        await _asgi_get(hot_app, path, key)

    async def _look_sig():
        hot.hot.get(k_sig)

    async def _look_sum():
        hot.hot.get(k_sum)
    await both("hot-read lookup (memory)", _look_sig, _look_sum, 2000)
    # each run its own key: a run must stay inside one key's rate limit (enterprise: 1,000 burst, 200/s)
    k1, k2, k3, k4 = app_keys
    await both("whole app in process, hot reads off", lambda: _asgi_get(cold_app, ENDPOINTS["signals"], k1),
               lambda: _asgi_get(cold_app, ENDPOINTS["summary"], k2), 200)
    await both("whole app in process, hot reads on", lambda: _asgi_get(hot_app, ENDPOINTS["signals"], k3),
               lambda: _asgi_get(hot_app, ENDPOINTS["summary"], k4), 400)
    await cold.close()
    await hot.close()
    return out


async def _users(db_url: str, n: int) -> list[str]:
    from serve.accounts import Accounts
    accounts = await Accounts.create(db_url)
    try:
        keys = []
        for i in range(n):
            await accounts.create_user(f"bench{i}", tier="enterprise")
            keys.append(await accounts.issue_key(f"bench{i}"))
        return keys
    finally:
        await accounts.close()


def main() -> None:
    from tests.serve.api_fixtures import _fill

    with scratch_services("api", with_ray=False) as s:
        if s is None:
            return
        asyncio.run(_fill(s.db_url, s.redis_url, s.namespace))
        keys = asyncio.run(_users(s.db_url, CLIENTS))
        base = {"db": s.db_url, "redis": s.redis_url, "namespace": s.namespace}
        print(f"{CLIENTS} concurrent clients (one key each), {SECONDS:g}s per run, one replica; servers in their "
              f"own processes, load generator on the same {os.cpu_count()} cores")
        print("\n  one request, piece by piece (mean µs, in process)          signals    summary")
        for name, a, b in asyncio.run(_breakdown(s, keys[0], keys[-4:])):
            print(f"    {name:<52} {a:9.1f}  {b:9.1f}")

        payloads: dict[str, bytes] = {}
        results: dict[tuple[str, str], tuple[float, float, int]] = {}
        single: dict[str, dict[str, float]] = {}
        runs = [("uvicorn", True, "app on uvicorn, no Serve, hot reads on")]
        runs += [(m, True, f"Serve {m}, hot reads on") for m in MODES]
        runs += [(MODES[0], False, f"Serve {MODES[0]}, hot reads off (before)")] if MODES else []
        for kind, hot, label in runs:
            server = _Server({**base, "kind": kind, "hot": hot})
            try:
                async def run(url=server.url, label=label) -> None:
                    single[label] = {}
                    print(f"\n  {label}")
                    for name, path in ENDPOINTS.items():
                        async with aiohttp.ClientSession() as session:
                            async with session.get(url + path, headers={"X-API-Key": keys[0]}) as r:
                                payloads.setdefault(path, await r.read())
                        single[label][name] = await _one_client_ms(url + path, keys[1 % len(keys)])
                        await _load(url + path, keys, 1.5, CLIENTS)  # warm-up: pools, caches, leases
                        rps, lat, err = await _load(url + path, keys, SECONDS, CLIENTS)
                        results[(label, name)] = (rps, float(np.percentile(lat, 99)), err)
                        print(_line(f"{path} ({len(payloads[path]):,} B)", rps, lat, err))
                asyncio.run(run())
            finally:
                server.close()
        import tempfile
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump({p: b.hex() for p, b in payloads.items()}, f)
        bare = _Server({"kind": "bare", "payloads": f.name})
        bare_rps: dict[str, float] = {}
        try:
            async def run_bare() -> None:
                print("\n  bare aiohttp server, same payloads (reference)")
                for name, path in ENDPOINTS.items():
                    await _load(bare.url + path, keys, 1.0, CLIENTS)
                    rps, lat, err = await _load(bare.url + path, keys, SECONDS, CLIENTS)
                    bare_rps[name] = rps
                    print(_line(path, rps, lat, err))
            asyncio.run(run_bare())
        finally:
            bare.close()
            os.unlink(f.name)
        print("\n  one client, median ms per request:  " + "   ".join(
            f"{label}: " + ", ".join(f"{n} {v:.2f}" for n, v in d.items()) for label, d in single.items()))
        print("\n  targets (>= 1,500 req/s, p99 <= 20 ms, >= 0.5x bare):")
        for (label, name), (rps, p99, err) in results.items():
            if label.startswith("app on uvicorn") or "before" in label:
                continue
            ratio = rps / bare_rps[name] if bare_rps.get(name) else float("nan")
            ok = [rps >= TARGET_RPS, p99 <= TARGET_P99_MS, ratio >= TARGET_RATIO]
            print(f"    {label:<30} {name:<8} {rps:7,.0f} req/s ({'met' if ok[0] else 'NOT met'})  "
                  f"p99 {p99:5.1f} ms ({'met' if ok[1] else 'NOT met'})  {ratio:.2f}x bare "
                  f"({'met' if ok[2] else 'NOT met'})")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        _child(json.loads(sys.argv[2]))
    else:
        main()
