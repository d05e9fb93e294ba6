"""WebSocket feed fan-out: 1,000 subscribers to ``candles:*``, candles published through ``RedisFeed``.

Two phases per server: a burst (messages published as fast as possible: deliveries/s the server
sustains) and a paced phase (``BENCH_FEED_RATE`` messages/s, i.e. rate x clients deliveries/s:
publish-to-client latency, from a ``pub_ns`` stamped into each record). Targets: >= 100,000
messages/s delivered, p99 <= 50 ms. Reference in the same run: a bare websockets broadcast server
(no Redis, no filtering, no per-client queues) with the same clients and phases.

The server runs in its own process, the clients in ``BENCH_FEED_CLIENT_PROCS`` others, so on a
small machine they share its cores. Needs Redis (``REDIS_URL`` or redis://127.0.0.1:6379/0).
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import re
import resource
import secrets
import time
from array import array
from typing import Any

import numpy as np

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
CLIENTS = int(os.environ.get("BENCH_FEED_CLIENTS", 1000))
BURST = int(os.environ.get("BENCH_FEED_BURST", 200))  # messages, each to every client
RATE = float(os.environ.get("BENCH_FEED_RATE", 100))  # messages/s in the paced phase
SECONDS = float(os.environ.get("BENCH_FEED_SECONDS", 3))
PROCS = int(os.environ.get("BENCH_FEED_CLIENT_PROCS", 2))
QUEUE = int(os.environ.get("BENCH_FEED_QUEUE", 1000))
TARGET_RATE = 100_000
TARGET_P99_MS = 50.0
KEY = "bench-feed-key"  # a throwaway key accepted only by this benchmark's servers
_PUB_NS = re.compile(rb'"pub_ns":(\d+)')


def _candle(i: int) -> dict[str, Any]:
    ts = 1_700_000_000_000_000_000 + i * 60_000_000_000
    return {"market": f"BINANCE:M{i % 20}USDT", "timeframe": "1m", "open_ts": ts, "close_ts": ts + 60_000_000_000,
            "open": 100.0 + i, "high": 101.5 + i, "low": 99.25 + i, "close": 100.75 + i, "volume": 12.5,
            "trades": 42, "pub_ns": time.time_ns()}


# ---- servers (each in its own process) ---------------------------------------------------------
def _feed_server(namespace: str, ready: Any, commands: Any) -> None:
    asyncio.run(_run_feed_server(namespace, ready, commands))


async def _run_feed_server(namespace: str, ready: Any, commands: Any) -> None:
    from serve.accounts import Principal
    from serve.feed import FeedServer
    from serve.tiers import CHANNEL_KINDS, Tier

    # one user whose tier admits every benchmark connection; no database in the measured path
    tier = Tier("bench", rate_per_s=1.0, burst=1, channels=CHANNEL_KINDS, max_markets=None, history_days=0,
                max_ws_connections=CLIENTS)
    principal = Principal("bench", "user", tier, "bench000")

    async def authenticate(key: str) -> Principal | None:
        return principal if key == KEY else None

    server = FeedServer(REDIS_URL, authenticate, port=0, namespace=namespace, queue_size=QUEUE)
    await server.start()
    ready.put(server.port)
    await asyncio.get_running_loop().run_in_executor(None, commands.get)
    stats = server.stats()
    stats.pop("clients")
    await server.stop()
    ready.put(stats)


def _reference_server(ready: Any, commands: Any) -> None:
    asyncio.run(_run_reference_server(ready, commands))


async def _run_reference_server(ready: Any, commands: Any) -> None:
    import json

    from websockets.asyncio.server import ServerConnection, broadcast, serve

    connections: set[ServerConnection] = set()

    async def handler(ws: ServerConnection) -> None:
        connections.add(ws)
        try:
            await ws.wait_closed()
        finally:
            connections.discard(ws)

    def send(i: int) -> None:
        message = json.dumps({"op": "data", "channel": "candles:*", "seq": f"{i}-0", "data": _candle(i)},
                             separators=(",", ":"))
        broadcast(connections, message)

    loop = asyncio.get_running_loop()
    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        ready.put(server.sockets[0].getsockname()[1])
        while True:
            command = await loop.run_in_executor(None, commands.get)
            if command[0] == "stop":
                break
            t0 = time.time_ns()
            if command[0] == "burst":
                for i in range(command[1]):
                    send(i)
                    if i % 50 == 49:
                        await asyncio.sleep(0)
            else:
                await _paced(command[1], command[2], lambda i: _async(send, i))
            ready.put((t0, time.time_ns()))
    ready.put({})


async def _async(fn: Any, *args: Any) -> None:
    fn(*args)


async def _paced(rate: float, n: int, send: Any) -> None:
    start = time.perf_counter()
    for i in range(n):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await send(i)


# ---- clients ---------------------------------------------------------------------------------
def _clients(port: int, n: int, expect: int, ready: Any, results: Any, progress: Any, subscribe: bool) -> None:
    asyncio.run(_run_clients(port, n, expect, ready, results, progress, subscribe))


async def _run_clients(port: int, n: int, expect: int, ready: Any, results: Any, progress: Any,
                       subscribe: bool) -> None:
    from websockets.asyncio.client import ClientConnection, connect
    from websockets.exceptions import ConnectionClosed

    pubs, recvs = array("q"), array("q")
    lagged = closed = 0
    gate = asyncio.Semaphore(50)  # the listen backlog is finite: do not open 500 handshakes at once

    async def open_one() -> ClientConnection:
        async with gate:
            ws = await connect(f"ws://127.0.0.1:{port}/ws/v1/feed", compression=None, ping_interval=None,
                               additional_headers={"Authorization": f"Bearer {KEY}"}, open_timeout=60)
            if subscribe:
                await ws.send('{"op":"subscribe","channels":["candles:*"]}')
                await ws.recv()  # subscribed
            return ws

    conns = await asyncio.gather(*(open_one() for _ in range(n)))
    ready.put(n)

    async def consume(ws: ClientConnection) -> None:
        nonlocal lagged, closed
        got = 0
        try:
            while got < expect:
                message = await ws.recv(decode=False)
                match = _PUB_NS.search(message)
                if match is None:
                    lagged += b'"lagged"' in message
                    continue
                recvs.append(time.time_ns())
                pubs.append(int(match.group(1)))
                got += 1
        except ConnectionClosed:
            closed += 1

    async def watch() -> None:
        # report progress; give up on clients that stop receiving (dropped messages never come)
        last, idle = -1, 0.0
        while True:
            await asyncio.sleep(0.2)
            progress.value = len(recvs)
            idle = idle + 0.2 if len(recvs) == last else 0.0
            last = len(recvs)
            if idle >= 5.0:
                for ws in conns:
                    await ws.close()
                return

    watcher = asyncio.create_task(watch())
    await asyncio.gather(*(consume(ws) for ws in conns))
    watcher.cancel()
    progress.value = len(recvs)
    results.put({"pubs": pubs.tobytes(), "recvs": recvs.tobytes(), "lagged": lagged, "closed": closed})
    await asyncio.gather(*(ws.close() for ws in conns), return_exceptions=True)


# ---- driver ----------------------------------------------------------------------------------
async def _feed_burst(feed: Any, n: int) -> tuple[int, int]:
    t0 = time.time_ns()
    for lo in range(0, n, 50):
        await feed.publish("candles", [_candle(i) for i in range(lo, min(n, lo + 50))])
    return t0, time.time_ns()


async def _feed_paced(feed: Any, rate: float, n: int) -> tuple[int, int]:
    t0 = time.time_ns()
    await _paced(rate, n, lambda i: feed.publish("candles", [_candle(i)]))
    return t0, time.time_ns()


def _wait_delivered(progress: list[Any], target: int, idle_s: float = 3.0) -> None:
    last, idle = -1, 0.0
    while True:
        done = sum(p.value for p in progress)
        if done >= target or idle >= idle_s:
            return
        idle = idle + 0.1 if done == last else 0.0
        last = done
        time.sleep(0.1)


def _run(kind: str, ctx: Any) -> dict[str, Any]:
    """One server kind ('feed' or 'reference') with every client; returns phase windows and arrivals."""
    namespace = f"bench-feed-{secrets.token_hex(4)}"
    ready, commands, results = ctx.Queue(), ctx.Queue(), ctx.Queue()
    target = _feed_server if kind == "feed" else _reference_server
    server = ctx.Process(target=target, args=(namespace, ready, commands) if kind == "feed" else (ready, commands))
    server.start()
    port = ready.get(timeout=60)
    paced_n = int(RATE * SECONDS)
    expect = BURST + paced_n
    shares = [CLIENTS // PROCS + (i < CLIENTS % PROCS) for i in range(PROCS)]
    progress = [ctx.Value("q", 0, lock=False) for _ in shares]
    client_ready = ctx.Queue()
    procs = [ctx.Process(target=_clients, args=(port, k, expect, client_ready, results, p, kind == "feed"))
             for k, p in zip(shares, progress) if k]
    for p in procs:
        p.start()
    t_connect = time.perf_counter()
    connected = sum(client_ready.get(timeout=180) for _ in procs)
    t_connect = time.perf_counter() - t_connect
    if kind == "feed":
        burst, paced = asyncio.run(_publish_phases(namespace, progress, connected))
    else:
        commands.put(("burst", BURST))
        burst = ready.get(timeout=120)
        _wait_delivered(progress, connected * BURST)
        commands.put(("paced", RATE, paced_n))
        paced = ready.get(timeout=120)
    outs = [results.get(timeout=120) for _ in procs]
    commands.put(("stop",))
    stats = ready.get(timeout=60)
    for p in [*procs, server]:
        p.join(timeout=30)
    pubs = np.concatenate([np.frombuffer(o["pubs"], np.int64) for o in outs])
    recvs = np.concatenate([np.frombuffer(o["recvs"], np.int64) for o in outs])
    if kind == "feed":
        _drop_namespace(namespace)
    return {"burst": burst, "paced": paced, "pubs": pubs, "recvs": recvs, "connected": connected,
            "connect_s": t_connect, "lagged": sum(o["lagged"] for o in outs), "closed": sum(o["closed"] for o in outs),
            "stats": stats}


async def _publish_phases(namespace: str, progress: list[Any], connected: int) -> tuple[tuple[int, int], ...]:
    from connectors.storage.redis_feed import RedisFeed
    from connectors.storage.redis_keys import RedisKeys

    async with RedisFeed.from_url(REDIS_URL, keys=RedisKeys(namespace), maxlen=100_000) as feed:
        await feed.publish("alerts", [{"kind": "warm-up"}])  # connect before the clock starts
        burst = await _feed_burst(feed, BURST)
        await asyncio.to_thread(_wait_delivered, progress, connected * BURST)
        paced = await _feed_paced(feed, RATE, int(RATE * SECONDS))
    return burst, paced


def _drop_namespace(namespace: str) -> None:
    import redis
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{namespace}:*"))
        if keys:
            client.unlink(*keys)
    finally:
        client.close()


def _summary(run: dict[str, Any]) -> dict[str, float]:
    pubs, recvs = run["pubs"], run["recvs"]
    (b0, _), (p0, _) = run["burst"], run["paced"]
    in_burst = pubs < p0
    out: dict[str, float] = {}
    for name, mask, t0 in (("burst", in_burst, b0), ("paced", ~in_burst, p0)):
        n = int(mask.sum())
        lat_ms = (recvs[mask] - pubs[mask]) / 1e6
        span = (recvs[mask].max() - t0) / 1e9 if n else float("nan")
        out[f"{name}_n"] = n
        out[f"{name}_rate"] = n / span if n else 0.0
        out[f"{name}_p50"], out[f"{name}_p99"] = (np.percentile(lat_ms, [50, 99]) if n else (float("nan"),) * 2)
    return out


def _raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        limit = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))


def main() -> None:
    _raise_fd_limit(2 * CLIENTS + 1024)  # children inherit it: server and clients each hold CLIENTS sockets
    paced_n = int(RATE * SECONDS)
    print(f"{CLIENTS:,} clients on candles:* in {PROCS} processes; burst of {BURST:,} messages, then {RATE:g} "
          f"messages/s for {SECONDS:g}s ({paced_n:,}) -> {CLIENTS * (BURST + paced_n):,} deliveries per server; "
          f"queue_size {QUEUE}")
    ctx = mp.get_context("spawn")  # no fork: the parent may hold threads (Ray, Redis) from other sections
    figures = {}
    for kind in ("feed", "reference"):
        t0 = time.perf_counter()
        run = _run(kind, ctx)
        s = figures[kind] = _summary(run)
        label = "FeedServer (Redis, filtering, queues)" if kind == "feed" else "reference: bare websockets broadcast"
        expected = run["connected"]
        print(f"  {label}: {expected:,} connected in {run['connect_s']:.1f}s; "
              f"took {time.perf_counter() - t0:.0f}s")
        print(f"    burst: {s['burst_n']:,}/{expected * BURST:,} delivered at {s['burst_rate']:,.0f} msg/s  "
              f"(latency p50 {s['burst_p50']:.1f} ms, p99 {s['burst_p99']:.1f} ms, includes the backlog)")
        print(f"    paced: {s['paced_n']:,}/{expected * paced_n:,} delivered at {s['paced_rate']:,.0f} msg/s  "
              f"latency p50 {s['paced_p50']:.1f} ms, p99 {s['paced_p99']:.1f} ms")
        if kind == "feed":
            st = run["stats"]
            print(f"    server: sent {st['sent']:,}, dropped {st['dropped']:,}, lags {st['lags']}, "
                  f"closed as slow {st['closed_slow']}; clients saw {run['lagged']} lagged, {run['closed']} closed")
    feed, ref = figures["feed"], figures["reference"]
    rate, p99 = feed["burst_rate"], feed["paced_p99"]
    print(f"  delivered {rate:,.0f} msg/s, target >= {TARGET_RATE:,} {'met' if rate >= TARGET_RATE else 'NOT met'}; "
          f"p99 {p99:.1f} ms at {RATE * CLIENTS:,.0f} deliveries/s offered, target <= {TARGET_P99_MS:g} ms "
          f"{'met' if p99 <= TARGET_P99_MS else 'NOT met'}")
    ratio = rate / ref["burst_rate"] if ref["burst_rate"] else float("nan")
    print(f"  feed / bare broadcast: {ratio:.2f}x throughput; p99 {p99:.1f} vs {ref['paced_p99']:.1f} ms")


if __name__ == "__main__":
    main()
