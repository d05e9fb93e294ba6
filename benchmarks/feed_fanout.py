"""WebSocket feed fan-out: 1,000 subscribers to ``candles:*``, candles published through ``RedisFeed``.

Phases per server: a burst (messages published as fast as possible: deliveries/s the server
sustains), a paced phase (``BENCH_FEED_RATE`` messages/s, i.e. rate x clients deliveries/s:
publish-to-client latency, from a ``pub_ns`` stamped into each record) and, for the feed, the
same paced phase again with a stalled client (tiny receive buffer, subscribes, never reads; its
socket and queue filled first by signals only it takes), so the ratio of the two p99s shows what a
stalled peer costs the others. Targets: >= 100,000 messages/s delivered, p99 <= 50 ms, a stalled
client moving the others' p99 by <= 10%. The feed runs with 1 and 2 processes behind one port
(``BENCH_FEED_SERVER_PROCS``), with batching (``"batch": true``) and once without it; the
reference in the same run is a bare websockets ``broadcast()`` server (no Redis, no filtering, no
per-client queues) with the same clients and phases.

The servers run in processes of their own, the clients in ``BENCH_FEED_CLIENT_PROCS`` others, so
on a small machine they share its cores. Each client is websockets' own sans-I/O client protocol
(handshake, framing, ping replies) over a plain asyncio transport: the load generator then costs a
few microseconds a frame instead of websockets' asyncio client's tens, and what is measured is the
server. Needs Redis (``REDIS_URL`` or redis://127.0.0.1:6379/0).
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import re
import resource
import secrets
import socket
import time
from array import array
from typing import Any

import numpy as np

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
CLIENTS = int(os.environ.get("BENCH_FEED_CLIENTS", 1000))
BURST = int(os.environ.get("BENCH_FEED_BURST", 200))  # messages, each to every client
RATE = float(os.environ.get("BENCH_FEED_RATE", 100))  # messages/s in the paced phases
SECONDS = float(os.environ.get("BENCH_FEED_SECONDS", 3))
PROCS = int(os.environ.get("BENCH_FEED_CLIENT_PROCS", 2))
SERVER_PROCS = [int(n) for n in os.environ.get("BENCH_FEED_SERVER_PROCS", "1,2").split(",")]
QUEUE = int(os.environ.get("BENCH_FEED_QUEUE", 1000))
STALL_FILL = int(os.environ.get("BENCH_FEED_STALL_FILL", 2500))  # signals for the stalled client alone
TARGET_RATE = 100_000
TARGET_P99_MS = 50.0
TARGET_STALL_RATIO = 1.10
KEY = "bench-feed-key"  # a throwaway key accepted only by this benchmark's servers
_PUB_NS = re.compile(rb'"pub_ns":(\d+)')
_FILLER = "x" * 900  # about 1 KB a signal: fills the stalled client's buffers with few entries


def _candle(i: int) -> dict[str, Any]:
    ts = 1_700_000_000_000_000_000 + i * 60_000_000_000
    return {"market": f"BINANCE:M{i % 20}USDT", "timeframe": "1m", "open_ts": ts, "close_ts": ts + 60_000_000_000,
            "open": 100.0 + i, "high": 101.5 + i, "low": 99.25 + i, "close": 100.75 + i, "volume": 12.5,
            "trades": 42, "pub_ns": time.time_ns()}


# ---- servers (each in its own process) ---------------------------------------------------------
def _feed_server(namespace: str, port: int, ready: Any, commands: Any) -> None:
    asyncio.run(_run_feed_server(namespace, port, ready, commands))


async def _run_feed_server(namespace: str, port: int, ready: Any, commands: Any) -> None:
    from serve.accounts import Principal
    from serve.feed import FeedServer
    from serve.tiers import CHANNEL_KINDS, Tier

    # one user whose tier admits every benchmark connection; no database in the measured path
    tier = Tier("bench", rate_per_s=1.0, burst=1, channels=CHANNEL_KINDS, max_markets=None, history_days=0,
                max_ws_connections=CLIENTS + 10)
    principal = Principal("bench", "user", tier, "bench000")

    async def authenticate(key: str) -> Principal | None:
        return principal if key == KEY else None

    server = FeedServer(REDIS_URL, authenticate, port=port, namespace=namespace, queue_size=QUEUE, reuse_port=True)
    await server.start()
    ready.put(server.port)
    await asyncio.get_running_loop().run_in_executor(None, commands.get)
    stats = server.stats()
    stats.pop("clients")
    ready.put(stats)  # before stop(), which may wait out close handshakes
    await server.stop()


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
class _Subscriber(asyncio.Protocol):
    """One client: websockets' sans-I/O client protocol on a bare transport; stamps each data message's arrival."""

    def __init__(self, port: int, subscribe: bytes | None, pubs: array, recvs: array, counts: dict[str, int]) -> None:
        from websockets.client import ClientProtocol
        from websockets.uri import parse_uri

        self.ws = ClientProtocol(parse_uri(f"ws://127.0.0.1:{port}/ws/v1/feed"), max_size=None)
        self.subscribe = subscribe
        self.pubs, self.recvs, self.counts = pubs, recvs, counts
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        request = self.ws.connect()
        request.headers["Authorization"] = f"Bearer {KEY}"
        self.ws.send_request(request)
        self._flush()

    def data_received(self, data: bytes) -> None:
        from websockets.frames import Frame, Opcode

        now = time.time_ns()
        self.ws.receive_data(data)
        for event in self.ws.events_received():
            if not isinstance(event, Frame):  # the handshake response
                if self.ws.handshake_exc is not None:
                    self.ready.set_exception(self.ws.handshake_exc)
                elif self.subscribe is None:
                    self.ready.set_result(None)
                else:
                    self.ws.send_text(self.subscribe)
                continue
            if event.opcode is not Opcode.TEXT:
                continue
            found = _PUB_NS.findall(event.data)
            if found:
                self.pubs.extend(map(int, found))
                self.recvs.extend([now] * len(found))
            elif b'"lagged"' in event.data:
                self.counts["lagged"] += 1
            elif b'"subscribed"' in event.data and not self.ready.done():
                self.ready.set_result(None)
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.counts["closed"] += 1
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("connection lost before the subscription"))

    def _flush(self) -> None:
        out = [chunk for chunk in self.ws.data_to_send() if chunk]  # pongs, the close frame
        if out and self.transport is not None and not self.transport.is_closing():
            self.transport.writelines(out)


def _clients(port: int, n: int, subscribe: bytes | None, ready: Any, stop: Any, results: Any, progress: Any) -> None:
    asyncio.run(_run_clients(port, n, subscribe, ready, stop, results, progress))


async def _run_clients(port: int, n: int, subscribe: bytes | None, ready: Any, stop: Any, results: Any,
                       progress: Any) -> None:
    loop = asyncio.get_running_loop()
    pubs, recvs = array("q"), array("q")
    counts = {"lagged": 0, "closed": 0}
    gate = asyncio.Semaphore(50)  # the listen backlog is finite: do not open 500 handshakes at once

    async def open_one() -> _Subscriber:
        async with gate:
            _, client = await loop.create_connection(lambda: _Subscriber(port, subscribe, pubs, recvs, counts),
                                                     "127.0.0.1", port)
            await asyncio.wait_for(client.ready, 60)
            return client

    conns = await asyncio.gather(*(open_one() for _ in range(n)))
    ready.put(n)

    async def report() -> None:
        while True:
            progress.value = len(recvs)
            await asyncio.sleep(0.05)

    reporter = asyncio.create_task(report())
    await loop.run_in_executor(None, stop.wait)
    reporter.cancel()
    results.put({"pubs": pubs.tobytes(), "recvs": recvs.tobytes(), **counts})
    for c in conns:
        if c.transport is not None:
            c.transport.close()


def _stalled_client(port: int) -> socket.socket:
    """A client that subscribes and then never reads: a receive buffer of a few KB, so TCP pushes back at once."""
    from websockets.client import ClientProtocol
    from websockets.frames import Frame
    from websockets.uri import parse_uri

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    ws = ClientProtocol(parse_uri(f"ws://127.0.0.1:{port}/ws/v1/feed"))
    request = ws.connect()
    request.headers["Authorization"] = f"Bearer {KEY}"
    ws.send_request(request)
    sock.sendall(b"".join(ws.data_to_send()))
    subscribed = False
    while not subscribed:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("the stalled client was refused")
        ws.receive_data(chunk)
        for event in ws.events_received():
            if ws.handshake_exc is not None:
                raise ConnectionError("the stalled client was refused") from ws.handshake_exc
            if not isinstance(event, Frame):  # the handshake response: subscribe
                ws.send_text(b'{"op":"subscribe","channels":["candles:*","signals:*"]}')
            subscribed = subscribed or (isinstance(event, Frame) and b'"subscribed"' in event.data)
        sock.sendall(b"".join(ws.data_to_send()))
    return sock


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
        idle = idle + 0.05 if done == last else 0.0
        last = done
        time.sleep(0.05)


def _run(kind: str, ctx: Any, server_procs: int = 1, batch: bool = True) -> dict[str, Any]:
    """One server setup ('feed' or 'reference') with every client; returns phase windows and arrivals."""
    namespace = f"bench-feed-{secrets.token_hex(4)}"
    ready, commands, results = ctx.Queue(), ctx.Queue(), ctx.Queue()
    if kind == "feed":
        servers = [ctx.Process(target=_feed_server, args=(namespace, 0, ready, commands))]
        servers[0].start()
        port = ready.get(timeout=60)
        for _ in range(server_procs - 1):  # the others join the first one's port (SO_REUSEPORT)
            servers.append(ctx.Process(target=_feed_server, args=(namespace, port, ready, commands)))
            servers[-1].start()
            assert ready.get(timeout=60) == port
    else:
        servers = [ctx.Process(target=_reference_server, args=(ready, commands))]
        servers[0].start()
        port = ready.get(timeout=60)
    subscribe = (b'{"op":"subscribe","channels":["candles:*"]' + (b',"batch":true}' if batch else b"}")
                 if kind == "feed" else None)
    shares = [CLIENTS // PROCS + (i < CLIENTS % PROCS) for i in range(PROCS)]
    progress = [ctx.Value("q", 0, lock=False) for _ in shares]
    client_ready, stop = ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=_clients, args=(port, k, subscribe, client_ready, stop, results, p))
             for k, p in zip(shares, progress) if k]
    for p in procs:
        p.start()
    t_connect = time.perf_counter()
    connected = sum(client_ready.get(timeout=180) for _ in procs)
    t_connect = time.perf_counter() - t_connect
    paced_n = int(RATE * SECONDS)
    if kind == "feed":
        phases = asyncio.run(_publish_phases(namespace, port, progress, connected))
    else:
        commands.put(("burst", BURST))
        burst = ready.get(timeout=120)
        _wait_delivered(progress, connected * BURST)
        commands.put(("paced", RATE, paced_n))
        paced = ready.get(timeout=120)
        _wait_delivered(progress, connected * (BURST + paced_n))
        phases = {"burst": burst, "paced": paced}
    stop.set()
    outs = [results.get(timeout=120) for _ in procs]
    for _ in servers:
        commands.put(("stop",))
    stats = [ready.get(timeout=60) for _ in servers]
    for p in [*procs, *servers]:
        p.join(timeout=30)
    if kind == "feed":
        _drop_namespace(namespace)
    return {"phases": phases, "pubs": np.concatenate([np.frombuffer(o["pubs"], np.int64) for o in outs]),
            "recvs": np.concatenate([np.frombuffer(o["recvs"], np.int64) for o in outs]), "connected": connected,
            "connect_s": t_connect, "lagged": sum(o["lagged"] for o in outs),
            "closed": sum(o["closed"] for o in outs), "stats": _sum_stats(stats)}


async def _publish_phases(namespace: str, port: int, progress: list[Any], connected: int) -> dict[str, Any]:
    from connectors.storage.redis_feed import RedisFeed
    from connectors.storage.redis_keys import RedisKeys

    paced_n = int(RATE * SECONDS)
    async with RedisFeed.from_url(REDIS_URL, keys=RedisKeys(namespace), maxlen=100_000) as feed:
        await feed.publish("alerts", [{"kind": "warm-up"}])  # connect before the clock starts
        burst = await _feed_burst(feed, BURST)
        await asyncio.to_thread(_wait_delivered, progress, connected * BURST)
        paced = await _feed_paced(feed, RATE, paced_n)
        await asyncio.to_thread(_wait_delivered, progress, connected * (BURST + paced_n))
        stalled = await asyncio.to_thread(_stalled_client, port)
        try:
            for lo in range(0, STALL_FILL, 250):  # its socket, then its queue, full before the clock starts
                await feed.publish("signals", [{"market": "BINANCE:M0USDT", "kind": "fill", "note": _FILLER, "i": i}
                                               for i in range(lo, min(STALL_FILL, lo + 250))])
            await asyncio.sleep(0.5)
            stall = await _feed_paced(feed, RATE, paced_n)
            await asyncio.to_thread(_wait_delivered, progress, connected * (BURST + 2 * paced_n))
        finally:
            stalled.close()
    return {"burst": burst, "paced": paced, "stall": stall}


def _sum_stats(stats: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("open", "sent", "dropped", "lags", "closed_slow")
    return {k: sum(s.get(k, 0) for s in stats) for k in keys} | {"per_process": [s.get("connections", 0)
                                                                                 for s in stats]}


def _drop_namespace(namespace: str) -> None:
    import redis
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{namespace}:*"))
        if keys:
            client.unlink(*keys)
    finally:
        client.close()


def _summary(run: dict[str, Any]) -> dict[str, dict[str, float]]:
    pubs, recvs = run["pubs"], run["recvs"]
    windows = sorted(run["phases"].items(), key=lambda kv: kv[1][0])
    out: dict[str, dict[str, float]] = {}
    for j, (name, (t0, _)) in enumerate(windows):
        t_next = windows[j + 1][1][0] if j + 1 < len(windows) else np.iinfo(np.int64).max
        mask = (pubs >= t0) & (pubs < t_next)
        n = int(mask.sum())
        lat_ms = (recvs[mask] - pubs[mask]) / 1e6
        span = (recvs[mask].max() - t0) / 1e9 if n else float("nan")
        p50, p99 = np.percentile(lat_ms, [50, 99]) if n else (float("nan"),) * 2
        out[name] = {"n": n, "rate": n / span if n else 0.0, "p50": float(p50), "p99": float(p99)}
    return out


def _raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        limit = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))


def _print_run(label: str, run: dict[str, Any], s: dict[str, dict[str, float]], took: float) -> None:
    expected = run["connected"]
    paced_n = int(RATE * SECONDS)
    print(f"  {label}: {expected:,} connected in {run['connect_s']:.1f}s; took {took:.0f}s")
    b, p = s["burst"], s["paced"]
    print(f"    burst: {b['n']:,}/{expected * BURST:,} delivered at {b['rate']:,.0f} msg/s  "
          f"(latency p50 {b['p50']:.1f} ms, p99 {b['p99']:.1f} ms, includes the backlog)")
    print(f"    paced: {p['n']:,}/{expected * paced_n:,} delivered at {p['rate']:,.0f} msg/s  "
          f"latency p50 {p['p50']:.1f} ms, p99 {p['p99']:.1f} ms")
    if "stall" in s:
        st = s["stall"]
        ratio = st["p99"] / p["p99"] if p["p99"] else float("nan")
        print(f"    paced with a stalled client: {st['n']:,}/{expected * paced_n:,} delivered, latency p50 "
              f"{st['p50']:.1f} ms, p99 {st['p99']:.1f} ms; p99 with/without {ratio:.2f}x "
              f"(target <= {TARGET_STALL_RATIO:.2f}x {'met' if ratio <= TARGET_STALL_RATIO else 'NOT met'})")
    if run["stats"]["per_process"] != [0]:
        st = run["stats"]
        print(f"    server: sent {st['sent']:,}, dropped {st['dropped']:,}, lags {st['lags']}, closed as slow "
              f"{st['closed_slow']}, connections per process {st['per_process']}; clients saw "
              f"{run['lagged']} lagged, {run['closed']} closed")


def main() -> None:
    _raise_fd_limit(2 * CLIENTS + 1024)  # children inherit it: server and clients each hold CLIENTS sockets
    paced_n = int(RATE * SECONDS)
    print(f"{CLIENTS:,} clients on candles:* in {PROCS} processes; burst of {BURST:,} messages, then {RATE:g} "
          f"messages/s for {SECONDS:g}s ({paced_n:,}), twice for the feed (the second time with a stalled client) "
          f"-> {CLIENTS * (BURST + paced_n):,} measured deliveries per phase pair; queue_size {QUEUE}")
    ctx = mp.get_context("spawn")  # no fork: the parent may hold threads (Ray, Redis) from other sections
    setups = [(f"FeedServer, {n} process{'es' if n > 1 else ''}, batch", "feed", n, True) for n in SERVER_PROCS]
    setups.append(("FeedServer, 1 process, one frame per message", "feed", 1, False))
    setups.append(("reference: bare websockets broadcast, 1 process", "reference", 1, False))
    figures = {}
    for label, kind, n, batch in setups:
        t0 = time.perf_counter()
        run = _run(kind, ctx, n, batch)
        figures[label] = s = _summary(run)
        _print_run(label, run, s, time.perf_counter() - t0)
    ref = figures[setups[-1][0]]
    for label, kind, _, _ in setups[:-1]:
        s = figures[label]
        rate, p99 = s["burst"]["rate"], s["paced"]["p99"]
        ratio = rate / ref["burst"]["rate"] if ref["burst"]["rate"] else float("nan")
        print(f"  {label}: {rate:,.0f} msg/s (target >= {TARGET_RATE:,} {'met' if rate >= TARGET_RATE else 'NOT met'}), "
              f"p99 {p99:.1f} ms at {RATE * CLIENTS:,.0f} deliveries/s offered (target <= {TARGET_P99_MS:g} ms "
              f"{'met' if p99 <= TARGET_P99_MS else 'NOT met'}); vs bare broadcast {ratio:.2f}x throughput, "
              f"p99 {p99:.1f} vs {ref['paced']['p99']:.1f} ms")


if __name__ == "__main__":
    main()
