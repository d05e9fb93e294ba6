"""A local fake exchange for venue tests: replays recorded real sessions over WebSocket and REST on
127.0.0.1, with scheduled faults (drops, stalls, gaps, bad frames, rejected upgrades, 429s, 5xx).

Adapters under test are pointed at :attr:`FakeVenue.ws_url` / :attr:`FakeVenue.rest_url` and run
through the same code path as in production. Replay follows a live venue: one global cursor into
the frames advances with time, and frames whose turn comes while nobody is connected are gone.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import random
import re
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit

from aiohttp import WSCloseCode, WSMsgType, web

from engine.venues.capture import RECEIVED, RESPONSE, SENT, read_capture

Handler = Callable[[web.Request], Awaitable[Any] | Any]

MALFORM_MODES = ("truncate", "garbage", "wrong_type", "binary")

# App-level pings of the venues the engine speaks to, keyed by (JSON field, value): the reply is the
# same field set to the pong value. Ids a client sends along are echoed back, as the venues do.
APP_PINGS: dict[tuple[str, str], tuple[str, str]] = {
    ("op", "ping"): ("op", "pong"),  # Bybit, OKX business channels, Bitmex-style op frames
    ("event", "ping"): ("event", "pong"),  # Kraken v1
    ("method", "ping"): ("method", "pong"),  # Kraken v2, Hyperliquid
    ("type", "ping"): ("type", "pong"),  # Deribit-like / generic
}
ECHOED_IDS = ("reqid", "req_id", "id")

VENUE_KEY = web.AppKey("fake_venue", object)  # lets route handlers see the venue's cursor


@dataclass
class ConnInfo:
    """One WebSocket connection as the venue saw it: where it connected, what the client sent."""

    path: str
    query: str
    opened_at: float
    sent: list[str] = field(default_factory=list)  # client frames, in order (pings included)
    closed_at: float | None = None
    received: int = 0  # frames the venue delivered on this connection
    subscribed_at: float | None = None  # when replay to it began (after wait_for_subscribe frames)


@dataclass
class RestCall:
    """One REST request and the status the venue answered with."""

    method: str
    path: str
    query: dict[str, str]
    status: int


@dataclass
class _Conn:
    ws: web.WebSocketResponse
    info: ConnInfo
    transport: asyncio.BaseTransport | None
    counted: int = 0  # non-ping text frames, compared with wait_for_subscribe
    dead: bool = False


def _rest_key(url: str) -> tuple[str, frozenset[tuple[str, str]]]:
    """Path and query parameters of a URL (host and parameter order ignored)."""
    parts = urlsplit(url)
    return parts.path or "/", frozenset(parse_qsl(parts.query, keep_blank_values=True))


def _body_bytes(body: Any) -> bytes:
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    return json.dumps(body, separators=(",", ":")).encode()


def _compile_route(path: str) -> re.Pattern[str]:
    """``/products/{product_id}/trades`` -> a regex with one named group per placeholder."""
    out, pos = [], 0
    for m in re.finditer(r"\{([A-Za-z_][A-Za-z0-9_]*)\}", path):
        out.append(re.escape(path[pos:m.start()]))
        out.append(f"(?P<{m.group(1)}>[^/]+)")
        pos = m.end()
    out.append(re.escape(path[pos:]))
    return re.compile("".join(out) + "$")


class FakeVenue:
    """A WebSocket + REST venue on 127.0.0.1 that replays ``frames`` with scheduled faults."""

    def __init__(self, frames: list[str], *, rest: Mapping[str, Any] | None = None,
                 wait_for_subscribe: int = 0, rate_per_s: float | None = None) -> None:
        if rate_per_s is not None and rate_per_s <= 0:
            raise ValueError("rate_per_s must be positive (or None: as fast as the client reads)")
        self.frames = list(frames)
        self.wait_for_subscribe = wait_for_subscribe
        self.rate_per_s = rate_per_s
        self.cursor = 0  # index of the next frame whose turn it is (global, as on a real venue)
        self.sent_count = 0  # frame sends, over all connections (duplicates counted)
        self.delivered: list[int] = []  # frame index of every send, in order
        self.lost: list[int] = []  # frames whose turn came with no connection to send them to
        self.exhausted = asyncio.Event()
        self.connections: list[ConnInfo] = []
        self.faults_applied: list[str] = []
        self.rest_calls: list[RestCall] = []
        self.recorded_sent: list[str] = []  # the client frames of the capture (from_capture only)
        self._recorded: dict[tuple[str, frozenset], list[bytes]] = {}
        self._served: dict[tuple[str, frozenset], int] = {}
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self._drops: dict[int, int] = {}
        self._stalls: dict[int, float] = {}
        self._skips: set[int] = set()
        self._malformed: dict[int, tuple[str, str | bytes]] = {}
        self._duplicates: dict[int, int] = {}
        self._reject_ws = 0
        self._reject_status = 503
        self._rate_limited: list[float] = []  # Retry-After of each pending 429
        self._failures: list[int] = []  # status of each pending REST failure
        self._rest_bodies: dict[str, list[tuple[int | None, bytes]]] = {}  # path -> (from frame, body) to serve
        self._live: list[_Conn] = []  # connections that receive the replay
        self._all: list[_Conn] = []
        self._live_changed = asyncio.Event()
        self._stalled = False
        self._pump: asyncio.Task | None = None
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        for url, body in (rest or {}).items():
            self.add_recorded(url, body)

    # ------------------------------------------------------------------ construction and lifecycle

    @classmethod
    def from_capture(cls, path: str | Path | None, *, rest_capture: str | Path | None = None,
                     **kw: Any) -> FakeVenue:
        """A venue replaying the frames received in a capture, serving a REST capture's responses."""
        frames: list[str] = []
        sent: list[str] = []
        if path is not None:
            for line in read_capture(path):
                if line.kind == RECEIVED:
                    frames.append(line.payload)
                elif line.kind == SENT:
                    sent.append(line.payload)
        venue = cls(frames, **kw)
        venue.recorded_sent = sent
        if rest_capture is not None:
            for line in read_capture(rest_capture):
                if line.kind == RESPONSE:
                    venue.add_recorded(line.url, line.payload)
        return venue

    async def start(self) -> None:
        """Listen on a free port of 127.0.0.1 (one port serves WebSocket and REST)."""
        app = web.Application()
        app[VENUE_KEY] = self
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        # a short shutdown timeout: idle replay connections must not hold stop() for a minute
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()

    async def stop(self) -> None:
        """Stop replaying, close every connection and the listener."""
        if self._pump is not None:
            self._pump.cancel()
            try:
                await self._pump
            except asyncio.CancelledError:
                pass
            self._pump = None
        for conn in list(self._all):
            try:
                await asyncio.wait_for(conn.ws.close(code=WSCloseCode.GOING_AWAY), 0.5)
            except (TimeoutError, ConnectionError, RuntimeError):
                pass
            if conn.transport is not None:
                conn.transport.abort()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("FakeVenue not started")
        return self._port

    @property
    def ws_url(self) -> str:
        """Base WebSocket URL; any path and query string is accepted."""
        return f"ws://127.0.0.1:{self.port}"

    @property
    def rest_url(self) -> str:
        """Base REST URL."""
        return f"http://127.0.0.1:{self.port}"

    # ------------------------------------------------------------------ REST content

    def add_recorded(self, url: str, body: Any) -> None:
        """Serve ``body`` for GET ``url`` (path + query; the host is ignored). Repeated URLs are served
        in order, the last one again once they run out (a venue answers with its latest state)."""
        self._recorded.setdefault(_rest_key(url), []).append(_body_bytes(body))

    def add_route(self, method: str, path: str, handler: Handler) -> None:
        """A computed endpoint; ``{name}`` placeholders land in ``request.match_info``. The handler may
        be sync or async and return a ``web.StreamResponse`` or anything JSON-serialisable."""
        self._routes.append((method.upper(), _compile_route(path), handler))

    # ------------------------------------------------------------------ fault injection

    def _check_index(self, i: int) -> None:
        if not 0 <= i < len(self.frames):
            raise IndexError(f"frame {i} out of range 0..{len(self.frames) - 1}")

    def drop_at(self, i: int, lost: int = 0) -> None:
        """Just before frame ``i``, cut every connection (TCP close, no close frame) and lose ``lost`` frames."""
        self._check_index(i)
        self._drops[i] = lost

    def stall_at(self, i: int, seconds: float) -> None:
        """Before frame ``i``, send nothing for ``seconds`` (connections stay open, pings unanswered)."""
        self._check_index(i)
        self._stalls[i] = seconds

    def skip(self, i: int, count: int = 1) -> None:
        """Never send frames ``i .. i+count-1`` (a sequence gap on an open connection)."""
        for j in range(i, i + count):
            self._check_index(j)
            self._skips.add(j)

    def duplicate(self, i: int, copies: int = 1) -> None:
        """Send frame ``i`` again ``copies`` more times."""
        self._check_index(i)
        self._duplicates[i] = copies

    def malform(self, i: int, mode: str, *, field_name: str | None = None) -> None:
        """Send frame ``i`` damaged: ``truncate``, ``garbage``, ``wrong_type`` (first string value, or
        the first value under ``field_name``, becomes an object) or ``binary`` (a binary frame)."""
        self._check_index(i)
        frame = self.frames[i]
        if mode == "truncate":
            payload: str | bytes = frame[: len(frame) // 2]
        elif mode == "garbage":
            payload = _garbage(i, len(frame))
        elif mode == "wrong_type":
            payload = _wrong_type(frame, field_name)
        elif mode == "binary":
            payload = frame.encode()
        else:
            raise ValueError(f"malform mode {mode!r}; known: {MALFORM_MODES}")
        self._malformed[i] = (mode, payload)

    def reject_connections(self, n: int, status: int = 503) -> None:
        """The next ``n`` WebSocket upgrade attempts get an HTTP error (503 by default)."""
        self._reject_ws = n
        self._reject_status = status

    def rate_limit(self, n: int, retry_after: float = 1) -> None:
        """The next ``n`` REST requests get 429 with ``Retry-After: retry_after``."""
        self._rate_limited.extend([retry_after] * n)

    def fail_rest(self, n: int, status: int = 500) -> None:
        """The next ``n`` REST requests (after any pending 429s) fail with ``status``."""
        self._failures.extend([status] * n)

    def malform_rest(self, path: str, bodies: Iterable[Any], *, from_frame: int | None = None) -> None:
        """The next GETs of ``path`` answer 200 with ``bodies``, one each, in order (raw bytes/str are sent
        as they are: truncated JSON, a list where an object belongs...), then normal answers resume. With
        ``from_frame``, only once frame ``from_frame``'s turn has come (a fault scheduled mid-replay)."""
        if from_frame is not None:
            self._check_index(from_frame)
        self._rest_bodies.setdefault(path, []).extend((from_frame, _body_bytes(b)) for b in bodies)

    # ------------------------------------------------------------------ HTTP entry point

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._websocket(request)
        return await self._rest(request)

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        query = dict(request.query)
        response = await self._rest_answer(request, query)
        self.rest_calls.append(RestCall(request.method, request.path, query, response.status))
        return response

    async def _rest_answer(self, request: web.Request, query: dict[str, str]) -> web.StreamResponse:
        if self._rate_limited:
            retry_after = self._rate_limited.pop(0)
            self.faults_applied.append(f"rest 429 {request.path} retry_after={retry_after:g}")
            return web.json_response({"code": -1003, "msg": "Too many requests (fake venue)."}, status=429,
                                     headers={"Retry-After": f"{retry_after:g}"})
        if self._failures:
            status = self._failures.pop(0)
            self.faults_applied.append(f"rest {status} {request.path}")
            return web.json_response({"code": -1000, "msg": "Injected failure (fake venue)."}, status=status)
        queued = self._rest_bodies.get(request.path)
        if request.method == "GET" and queued and (queued[0][0] is None or self.cursor > queued[0][0]):
            _, body = queued.pop(0)
            self.faults_applied.append(f"rest body {request.path} {body[:40]!r}")
            return web.Response(body=body, content_type="application/json")
        for method, pattern, handler in self._routes:
            m = pattern.match(request.path)
            if m and method in ("*", request.method):
                request.match_info.update(m.groupdict())
                result = handler(request)
                if inspect.isawaitable(result):
                    result = await result
                if isinstance(result, web.StreamResponse):
                    return result
                return web.json_response(result)
        key = (request.path, frozenset(query.items()))
        bodies = self._recorded.get(key)
        if request.method == "GET" and bodies:
            n = self._served.get(key, 0)
            self._served[key] = n + 1
            return web.Response(body=bodies[min(n, len(bodies) - 1)], content_type="application/json")
        known_path = any(p == request.path for p, _ in self._recorded)
        return web.json_response({"error": "no recorded response" if known_path else "unknown path",
                                  "path": request.path, "query": query}, status=404)

    # ------------------------------------------------------------------ WebSocket

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        if self._reject_ws > 0:
            self._reject_ws -= 1
            status = self._reject_status
            self.faults_applied.append(f"reject ws {status} {request.path_qs}")
            return web.Response(status=status, text="Service Unavailable (fake venue)")
        # autoping off: pongs are ours to send, so a stall can withhold them like a hung venue
        ws = web.WebSocketResponse(autoping=False, heartbeat=None)
        await ws.prepare(request)
        info = ConnInfo(path=request.path, query=request.query_string, opened_at=time.time())
        conn = _Conn(ws, info, request.transport)
        self.connections.append(info)
        self._all.append(conn)
        if self.wait_for_subscribe <= 0:
            self._go_live(conn)
        try:
            while True:
                msg = await ws.receive()
                if msg.type == WSMsgType.TEXT:
                    info.sent.append(msg.data)
                    pong = _app_pong(msg.data)
                    if pong is not None:
                        if not self._stalled:
                            await ws.send_str(pong)
                        continue
                    conn.counted += 1
                    if conn.counted == self.wait_for_subscribe:
                        self._go_live(conn)
                elif msg.type == WSMsgType.BINARY:
                    info.sent.append(msg.data.decode("utf-8", "replace"))
                elif msg.type == WSMsgType.PING:
                    if not self._stalled:
                        await ws.pong(msg.data)
                elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                    break
        except (ConnectionError, RuntimeError):
            pass  # the peer vanished or the venue cut the connection itself
        finally:
            conn.dead = True
            info.closed_at = time.time()
            if conn in self._live:
                self._live.remove(conn)
            if conn in self._all:
                self._all.remove(conn)
            self._live_changed.set()
        return ws

    def _go_live(self, conn: _Conn) -> None:
        conn.info.subscribed_at = time.time()
        self._live.append(conn)
        self._live_changed.set()
        if self._pump is None:  # the venue's clock starts with the first subscriber
            self._pump = asyncio.get_running_loop().create_task(self._replay())

    async def _wait_for_live(self) -> None:
        while not self._live:
            self._live_changed.clear()
            await self._live_changed.wait()

    async def _replay(self) -> None:
        """The venue's clock: walks the global cursor over the frames, applying faults on the way."""
        loop = asyncio.get_running_loop()
        period = 1.0 / self.rate_per_s if self.rate_per_s else 0.0
        next_at = loop.time()
        while self.cursor < len(self.frames):
            if period:  # a live venue: time passes whether or not anyone listens
                delay = next_at - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            else:  # no time base: the cursor waits for a reader (only scheduled losses are lost)
                await self._wait_for_live()
            i = self.cursor
            if i in self._drops:
                lost = self._drops.pop(i)
                cut = await self._cut_connections()
                self.cursor = min(len(self.frames), i + lost)
                self.lost.extend(range(i, self.cursor))
                self.faults_applied.append(f"drop@{i} lost={lost} connections={cut}")
                continue
            if i in self._stalls:
                seconds = self._stalls.pop(i)
                self.faults_applied.append(f"stall@{i} {seconds:g}s")
                self._stalled = True
                try:
                    await asyncio.sleep(seconds)
                finally:
                    self._stalled = False
                next_at = loop.time()  # the frames were held, not lost: no burst to catch up
                continue  # re-check the turn: a drop may have been scheduled at i meanwhile
            next_at += period
            self.cursor = i + 1
            if i in self._skips:
                self.faults_applied.append(f"skip@{i}")
                continue
            if not self._live:
                self.lost.append(i)
                continue
            payload: str | bytes = self.frames[i]
            if i in self._malformed:
                mode, payload = self._malformed.pop(i)
                self.faults_applied.append(f"malform@{i} {mode}")
            copies = 1 + self._duplicates.pop(i, 0)
            if copies > 1:
                self.faults_applied.append(f"duplicate@{i} x{copies}")
            for _ in range(copies):
                await self._broadcast(i, payload)
            await asyncio.sleep(0)  # let readers and REST handlers in between frames
        self.exhausted.set()  # connections stay open and idle, as a quiet market would leave them

    async def _broadcast(self, i: int, payload: str | bytes) -> None:
        for conn in list(self._live):
            try:
                if isinstance(payload, bytes):
                    await conn.ws.send_bytes(payload)
                else:
                    await conn.ws.send_str(payload)
            except (ConnectionError, RuntimeError):
                conn.dead = True
                if conn in self._live:
                    self._live.remove(conn)
                continue
            conn.info.received += 1
            self.sent_count += 1
            self.delivered.append(i)

    async def _cut_connections(self) -> int:
        """Close every connection without a close frame; frames already written still arrive first."""
        conns = list(self._all)
        self._live.clear()
        for conn in conns:
            conn.dead = True
            t = conn.transport
            if t is None or t.is_closing():
                await conn.ws.close()  # no raw transport to abort: a normal close is the fallback
                continue
            # abort() discards what is still buffered in user space; flush it so only the scheduled
            # frames go missing, then close the socket with no WebSocket close frame
            deadline = time.monotonic() + 2.0
            while (isinstance(t, asyncio.WriteTransport) and t.get_write_buffer_size()
                   and time.monotonic() < deadline):
                await asyncio.sleep(0.001)
            t.abort()
        self._live_changed.set()
        return len(conns)


def _app_pong(text: str) -> str | None:
    """The venue's answer to an app-level ping frame, or None when the frame is not a ping."""
    if text == "ping":
        return "pong"
    if len(text) > 200 or "ping" not in text:
        return None
    try:
        msg = json.loads(text)
    except ValueError:
        return None
    if not isinstance(msg, dict):
        return None
    for (key, value), (reply_key, reply_value) in APP_PINGS.items():
        if msg.get(key) == value:
            reply: dict[str, Any] = {reply_key: reply_value}
            for k in ECHOED_IDS:
                if k in msg:
                    reply[k] = msg[k]
            return json.dumps(reply, separators=(",", ":"))
    return None


def _garbage(seed: int, length: int) -> str:
    """Deterministic random bytes shown as text (every byte a latin-1 character); never valid JSON."""
    rng = random.Random(seed)
    while True:
        text = rng.randbytes(max(8, length // 2)).decode("latin-1")
        try:
            json.loads(text)
        except ValueError:
            return text


def _wrong_type(frame: str, field_name: str | None) -> str:
    """The frame with one value turned into an object: the first string value (the ``data`` member of
    an envelope searched first, so the event itself is hit) or the first value under ``field_name``."""
    msg = json.loads(frame)

    def visit(node: Any) -> bool:
        if isinstance(node, dict):
            keys = sorted(node, key=lambda k: k != "data")  # envelopes: damage the payload, not its label
            for k in keys:
                v = node[k]
                if (field_name is None and isinstance(v, str)) or k == field_name:
                    node[k] = {"unexpected": v}
                    return True
                if isinstance(v, (dict, list)) and visit(v):
                    return True
        elif isinstance(node, list):
            for j, v in enumerate(node):
                if field_name is None and isinstance(v, str):
                    node[j] = {"unexpected": v}
                    return True
                if isinstance(v, (dict, list)) and visit(v):
                    return True
        return False

    if not visit(msg):
        raise ValueError(f"wrong_type: nothing to change in {frame[:80]!r}")
    return json.dumps(msg, separators=(",", ":"))


# ---------------------------------------------------------------------- venue-specific REST endpoints

BINANCE_AGG_TRADES_PATHS = ("/api/v3/aggTrades", "/fapi/v1/aggTrades")
COINBASE_TRADES_PATH = "/products/{product_id}/trades"
_AGG_FIELDS = ("a", "p", "q", "f", "l", "T", "m", "M")


def _visible_until(request: web.Request, live: bool) -> int | float:
    """Frames before this index have happened on the venue serving the request (all when not live)."""
    venue = request.app.get(VENUE_KEY)
    if not live or not isinstance(venue, FakeVenue):
        return float("inf")
    return venue.cursor


def _binance_error(code: int, msg: str, status: int = 400) -> web.Response:
    return web.json_response({"code": code, "msg": msg}, status=status)


def binance_agg_trades_route(frames: Iterable[str], *, live: bool = True) -> Handler:
    """A handler for Binance ``GET /api/v3/aggTrades`` and ``/fapi/v1/aggTrades`` answering from the
    aggTrade events of recorded combined-stream frames. With ``live``, only trades whose frame's turn
    has come on the serving FakeVenue are known (pass that venue's frames)."""
    by_symbol: dict[str, list[tuple[int, dict]]] = {}
    for idx, frame in enumerate(frames):
        if "aggTrade" not in frame:
            continue
        try:
            msg = json.loads(frame)
        except ValueError:
            continue
        d = msg.get("data", msg) if isinstance(msg, dict) else None
        if not isinstance(d, dict) or d.get("e") != "aggTrade":
            continue
        # the REST row is the event without e/E/s, fields in the documented order
        by_symbol.setdefault(d["s"], []).append((idx, {k: d[k] for k in _AGG_FIELDS if k in d}))
    for rows in by_symbol.values():
        rows.sort(key=lambda r: r[1]["a"])

    async def handler(request: web.Request) -> web.Response:
        q = request.query
        symbol = q.get("symbol")
        if not symbol:
            return _binance_error(-1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
        if symbol not in by_symbol:
            return _binance_error(-1121, "Invalid symbol.")
        try:
            from_id = int(q["fromId"]) if "fromId" in q else None
            start = int(q["startTime"]) if "startTime" in q else None
            end = int(q["endTime"]) if "endTime" in q else None
            limit = int(q.get("limit", 500))
        except ValueError:
            return _binance_error(-1100, "Illegal characters found in a parameter.")
        if limit <= 0:
            return _binance_error(-1100, "Illegal characters found in parameter 'limit'; legal range is '1 - 1000'.")
        limit = min(limit, 1000)
        until = _visible_until(request, live)
        rows = [r for idx, r in by_symbol[symbol] if idx < until
                and (from_id is None or r["a"] >= from_id)
                and (start is None or r["T"] >= start) and (end is None or r["T"] <= end)]
        # no lower bound: the most recent trades (still ascending); otherwise the first ones from it
        rows = rows[-limit:] if from_id is None and start is None else rows[:limit]
        return web.json_response(rows)

    return handler


def coinbase_trades_route(frames: Iterable[str], *, live: bool = True) -> Handler:
    """A handler for Coinbase Exchange ``GET /products/{product_id}/trades`` from recorded ``match``
    (and ``last_match``) frames: newest first, ``after``/``before`` cursors, CB-BEFORE/CB-AFTER headers."""
    by_product: dict[str, dict[int, tuple[int, dict]]] = {}
    for idx, frame in enumerate(frames):
        if "match" not in frame:
            continue
        try:
            msg = json.loads(frame)
        except ValueError:
            continue
        if not isinstance(msg, dict) or msg.get("type") not in ("match", "last_match"):
            continue
        # side is the maker's side on both the feed and REST, so it is copied unchanged
        row = {"time": msg["time"], "trade_id": msg["trade_id"], "price": msg["price"], "size": msg["size"],
               "side": msg["side"]}
        by_product.setdefault(msg["product_id"], {}).setdefault(msg["trade_id"], (idx, row))
    ordered = {p: sorted(rows.values(), key=lambda r: -r[1]["trade_id"]) for p, rows in by_product.items()}

    async def handler(request: web.Request) -> web.Response:
        product = request.match_info.get("product_id") or request.path.strip("/").split("/")[1]
        if product not in ordered:
            return web.json_response({"message": "NotFound"}, status=404)
        q = request.query
        try:
            limit = int(q.get("limit", 1000))
            after = int(q["after"]) if "after" in q else None
            before = int(q["before"]) if "before" in q else None
        except ValueError:
            return web.json_response({"message": "Invalid pagination parameter"}, status=400)
        if not 1 <= limit <= 1000:
            return web.json_response({"message": "Invalid limit"}, status=400)
        until = _visible_until(request, live)
        rows = [r for idx, r in ordered[product] if idx < until]  # newest first
        if after is not None:  # the older page: trades just below the cursor
            rows = [r for r in rows if r["trade_id"] < after][:limit]
        elif before is not None:  # the newer page: the trades just above the cursor, still newest first
            rows = [r for r in rows if r["trade_id"] > before][-limit:]
        else:
            rows = rows[:limit]
        headers = {}
        if rows:
            headers = {"CB-BEFORE": str(rows[0]["trade_id"]), "CB-AFTER": str(rows[-1]["trade_id"])}
        return web.json_response(rows, headers=headers)

    return handler


def _levels_out(side: dict[str, str], descending: bool, limit: int) -> list[list[str]]:
    return [[p, q] for p, q in sorted(side.items(), key=lambda kv: float(kv[0]), reverse=descending)[:limit]]


def _apply_levels(side: dict[str, str], rows: Iterable) -> None:
    for p, q in rows:
        if float(q) == 0:
            side.pop(p, None)
        else:
            side[p] = q


def binance_depth_route(frames: Iterable[str], snapshots: Mapping[str, Any], *, live: bool = True) -> Handler:
    """A handler for Binance spot ``GET /api/v3/depth``: the book of each symbol as the venue holds it now,
    from a recorded REST snapshot (``snapshots``: symbol -> depth body) and the recorded ``depthUpdate``
    diffs after it whose turn has come (skipped frames included: they happened on the venue)."""
    diffs: dict[str, list[tuple[int, dict]]] = {}
    for idx, frame in enumerate(frames):
        if "depthUpdate" not in frame:
            continue
        msg = json.loads(frame)
        d = msg.get("data", msg)
        if isinstance(d, dict) and d.get("e") == "depthUpdate":
            diffs.setdefault(d["s"], []).append((idx, d))
    base = {s: json.loads(_body_bytes(b)) for s, b in snapshots.items()}

    async def handler(request: web.Request) -> web.Response:
        symbol = request.query.get("symbol")
        if symbol not in base:
            return _binance_error(-1121, "Invalid symbol.")
        try:
            limit = int(request.query.get("limit", 100))
        except ValueError:
            return _binance_error(-1100, "Illegal characters found in parameter 'limit'.")
        snap = base[symbol]
        last = snap["lastUpdateId"]
        bids, asks = dict(map(tuple, snap["bids"])), dict(map(tuple, snap["asks"]))
        until = _visible_until(request, live)
        for idx, d in diffs.get(symbol, []):
            if idx < until and d["u"] > last:
                _apply_levels(bids, d["b"])
                _apply_levels(asks, d["a"])
                last = d["u"]
        return web.json_response({"lastUpdateId": last, "bids": _levels_out(bids, True, limit),
                                  "asks": _levels_out(asks, False, limit)})

    return handler


def bybit_orderbook_route(frames: Iterable[str], *, live: bool = True) -> Handler:
    """A handler for Bybit v5 ``GET /v5/market/orderbook``: each symbol's book as the venue holds it now,
    from the recorded ``orderbook.{depth}.{symbol}`` snapshot and delta frames whose turn has come."""
    books: dict[str, list[tuple[int, dict, str, int]]] = {}
    for idx, frame in enumerate(frames):
        if '"orderbook.' not in frame:
            continue
        msg = json.loads(frame)
        if isinstance(msg, dict) and str(msg.get("topic", "")).startswith("orderbook."):
            books.setdefault(msg["data"]["s"], []).append((idx, msg["data"], msg["type"], msg["ts"]))

    async def handler(request: web.Request) -> web.Response:
        symbol = request.query.get("symbol", "")
        until = _visible_until(request, live)
        seen = [(d, kind, ts) for idx, d, kind, ts in books.get(symbol, []) if idx < until]
        if not seen:
            return web.json_response({"retCode": 10001, "retMsg": "params error: symbol invalid", "result": {}})
        limit = int(request.query.get("limit", 1))
        bids: dict[str, str] = {}
        asks: dict[str, str] = {}
        for d, kind, _ in seen:
            if kind == "snapshot":
                bids, asks = {}, {}
            _apply_levels(bids, d["b"])
            _apply_levels(asks, d["a"])
        last, _, ts = seen[-1]
        return web.json_response({"retCode": 0, "retMsg": "OK", "result": {
            "s": symbol, "b": _levels_out(bids, True, limit), "a": _levels_out(asks, False, limit), "ts": ts,
            "u": last["u"], "seq": last.get("seq", last["u"]), "cts": ts}, "time": ts})

    return handler


def synthetic_binance_frames(trades: str | Path | Mapping[str, Any], symbol: str, stream: str = "aggTrade", *,
                             first_id: int | None = None, repeat: int = 1) -> list[str]:
    """Binance combined-stream frames (``aggTrade`` or ``trade``) from real trades with contiguous ids.

    ``trades`` is a parquet file with ``timestamp``/``price``/``quantity``/``buyer_maker`` (and
    optionally ``trade_id``) columns, as in ``tests/data/trades``, or a mapping of such arrays
    (``timestamp`` in epoch ms). ``repeat`` replays the data again, shifted in time, for longer runs.
    """
    if stream not in ("aggTrade", "trade"):
        raise ValueError(f"stream {stream!r}: aggTrade or trade")
    if isinstance(trades, (str, Path)):
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        table = pq.read_table(trades)
        ts_col = table.column("timestamp")
        if not str(ts_col.type).startswith("int"):
            ts_col = pc.cast(ts_col.cast("timestamp[ms]"), "int64")  # drop the zone, keep epoch ms
        cols: dict[str, list] = {"timestamp": ts_col.to_pylist(), "price": table.column("price").to_pylist(),
                                 "quantity": table.column("quantity").to_pylist(),
                                 "buyer_maker": table.column("buyer_maker").to_pylist()}
        if "trade_id" in table.column_names:
            cols["trade_id"] = table.column("trade_id").to_pylist()
    else:
        cols = {k: list(v) for k, v in trades.items()}
    ts, price, qty = cols["timestamp"], cols["price"], cols["quantity"]
    maker = [m if isinstance(m, bool) else str(m).strip().lower() in ("true", "1") for m in cols["buyer_maker"]]
    n = len(ts)
    if not n:
        return []
    next_id = first_id if first_id is not None else int(cols.get("trade_id", [1])[0])
    span = int(ts[-1]) - int(ts[0]) + 1
    sym = symbol.upper()
    name = f"{symbol.lower()}@{stream}"
    frames = []
    for rep in range(repeat):
        shift = rep * span
        for k in range(n):
            t = int(ts[k]) + shift
            if stream == "aggTrade":
                data = {"e": "aggTrade", "E": t, "s": sym, "a": next_id, "p": f"{price[k]:.8f}",
                        "q": f"{qty[k]:.8f}", "f": next_id, "l": next_id, "T": t, "m": maker[k], "M": True}
            else:
                data = {"e": "trade", "E": t, "s": sym, "t": next_id, "p": f"{price[k]:.8f}",
                        "q": f"{qty[k]:.8f}", "T": t, "m": maker[k], "M": True}
            frames.append(json.dumps({"stream": name, "data": data}, separators=(",", ":")))
            next_id += 1
    return frames
