"""WebSocket live feed at ``/ws/v1/feed``: the engine's Redis streams fanned out to API-key clients.

It runs beside Ray Serve, not inside it: Serve's HTTP proxy is built for request/response traffic
and is not meant to hold thousands of long-lived sockets, each needing its own backpressure. Here
one reader task per stream (``candles``, ``signals``, ``structure``, ``alerts``) does a blocking
``XREAD`` and hands each entry to the matching subscriptions; every client has a bounded queue
and its own writer task. Each entry is encoded once per channel, not per client: the same bytes
go to every subscriber that keeps up, with no queue and no per-client encoding on that path. A client whose queue fills is told it ``lagged`` and skips ahead (its
queue is cleared); after ``max_lags`` lags in a row it is closed with 4408. A slow client never
blocks the reader or the other clients (rule 4).

Protocol (JSON text frames), client to server::

    {"op": "subscribe", "channels": ["candles:BINANCE:BTCUSDT:1m", "signals:*"], "from": {"signals:*": "<seq>"},
     "batch": true}
    {"op": "unsubscribe", "channels": ["signals:*"]}
    {"op": "ping"}

server to client: ``data`` (channel, seq = Redis stream id, data = the record), ``subscribed``,
``unsubscribed``, ``pong``, ``error`` (code, message), ``heartbeat`` (ts, ns UTC) every
``heartbeat_s`` and ``lagged`` (channel, skipped_to). ``from`` replays the stream after the given
seq and then continues live, with nothing missing and nothing repeated. ``batch`` (optional, off by
default, kept for the connection until a later subscribe says otherwise) lets the server send
several data messages that are ready at once as one JSON array frame, ``[{"op": "data", ...},
...]``, each element exactly a single data message, in order; one message alone still comes as a
plain object and other messages are never batched. Close codes: 4401 no or bad API key, 4429 too
many connections for the user's tier, 4408 too slow, 1011 authentication backend unavailable.

Several servers can share one port (``reuse_port=True``, ``SO_REUSEPORT``): the kernel spreads the
connections over them and each reads the streams itself, so seqs stay the stream ids, exact.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

from connectors.storage.redis_keys import CHANNELS, RedisKeys
from schemas.errors import ConfigError
from serve.accounts import Principal
from serve.channels import (
    Channel,
    ChannelError,
    Subject,
    parse_channel,
    parse_seq,
    subject,
)
from serve.keys import key_id, redact

log = logging.getLogger(__name__)

PATH = "/ws/v1/feed"
CLOSE_UNAUTHORIZED = 4401
CLOSE_TOO_SLOW = 4408
CLOSE_TOO_MANY = 4429
CLOSE_AUTH_DOWN = 1011
MAX_SUBSCRIPTIONS = 100  # per connection: bounds the matching work one client can cause
WRITE_BATCH = 256  # frames per socket write; one syscall for many small frames
BATCH_BYTES = 128 * 1024  # an array frame holds at most this much (clients cap frame sizes, 1 MiB by default)
REPLAY_PAGE = 500

# queue item kinds: data and lag notices fold into one notice per channel when a client lags;
# control replies survive that; heartbeats are simply dropped
DATA, LAGGED, CONTROL, BEAT = 0, 1, 2, 3
Item = tuple[int, str, bytes, bytes]  # kind, channel, seq, JSON payload (framed by the writer)

_QUERY_KEY = re.compile(r"(?i)((?:api_)?key=)[^&\s\"']+")
_HEADER_KEY = re.compile(r"(?i)((?:authorization|x-api-key):\s*).+")


def _scrub(text: str) -> str:
    """``text`` without API keys: ``ci_...`` tokens, ``key=`` query values and auth header values."""
    return _HEADER_KEY.sub(r"\1***", _QUERY_KEY.sub(r"\1***", redact(text)))


class _ScrubKeys(logging.Filter):
    """Rewrites log records of the websockets library so a key in a URL or header never reaches a handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = _scrub(message)
        if clean != message:
            record.msg, record.args = clean, ()
        return True


_ws_log = logging.getLogger(__name__ + ".websockets")
_ws_log.addFilter(_ScrubKeys())


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _wire(payload: bytes) -> bytes:
    """A complete WebSocket text frame (RFC 6455 5.2): FIN + opcode 1, unmasked, then the payload."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x81, 126, n) + payload
    return struct.pack("!BBQ", 0x81, 127, n) + payload


def _json(message: dict[str, Any]) -> bytes:
    """A message as a JSON payload."""
    return orjson.dumps(message)


def _data_head(name: str) -> bytes:
    return b'{"op":"data","channel":' + orjson.dumps(name) + b',"seq":"'


def _payload(head: bytes, seq: bytes, raw: bytes) -> bytes:
    # the stream holds canonical record JSON already: splice it in rather than decode and re-encode
    return head + seq + b'","data":' + raw + b"}"


def _arrays(payloads: list[bytes]) -> list[bytes]:
    """Data payloads as batch-mode frames: one alone as itself, several as JSON arrays of at most BATCH_BYTES."""
    if len(payloads) == 1:
        return [_wire(payloads[0])]
    runs: list[list[bytes]] = [[]]
    size = 0
    for payload in payloads:
        if runs[-1] and size + len(payload) > BATCH_BYTES:
            runs.append([])
            size = 0
        runs[-1].append(payload)
        size += len(payload) + 1
    return [_wire(b"[" + b",".join(run) + b"]") if len(run) > 1 else _wire(run[0]) for run in runs]


class _Encoded:
    """One channel's entries of one dispatch, encoded at most once per wire form and shared by every subscriber.

    Server frames are unmasked and uncompressed, so their bytes are the same for every client: the
    entries are framed once per channel, then written as they are to each subscriber's socket."""

    __slots__ = ("_batched", "_plain", "entries")

    def __init__(self, entries: list[tuple[bytes, bytes]]) -> None:
        self.entries = entries  # (seq, payload)
        self._plain: bytes | None = None
        self._batched: bytes | None = None

    def plain(self) -> bytes:
        """One text frame per message, concatenated: a single socket write."""
        if self._plain is None:
            self._plain = b"".join([_wire(payload) for _, payload in self.entries])
        return self._plain

    def batched(self) -> bytes:
        """The batch-mode form: the messages as array frames (a single message as a plain frame)."""
        if self._batched is None:
            if len(self.entries) == 1:
                self._batched = self.plain()
            else:
                self._batched = b"".join(_arrays([payload for _, payload in self.entries]))
        return self._batched


def api_key(request: Request) -> str | None:
    """The key of a handshake: ``Authorization: Bearer``, ``X-API-Key`` or ``?key=`` (browsers cannot set headers)."""
    headers: Headers = request.headers
    auth = headers.get("Authorization", "")
    if auth[:7].lower() == "bearer " and auth[7:].strip():
        return auth[7:].strip()
    if headers.get("X-API-Key", "").strip():
        return headers["X-API-Key"].strip()
    values = parse_qs(urlsplit(request.path).query).get("key")
    return values[0] if values and values[0] else None


@dataclass(eq=False)
class _Sub:
    """One client's subscription to one channel; buffers live entries while its replay runs."""

    client: _Client
    channel: Channel
    pending: list[tuple[bytes, bytes]] | None = None  # (seq, payload) seen live during replay
    skipped: bytes | None = None  # newest seq dropped from an overflowing pending buffer
    active: bool = True

    def deliver(self, encoded: _Encoded) -> None:
        """Hand a channel's matching entries on: to the client, or to the replay buffer."""
        if self.pending is None:
            self.client.send(self.channel.name, encoded)
            return
        for seq, payload in encoded.entries:
            if len(self.pending) < self.client.queue.maxsize:
                self.pending.append((seq, payload))
            else:
                # skip ahead, as a full client queue would: everything up to this seq is gone
                self.pending.clear()
                self.skipped = seq

    def go_live(self, replayed_to: tuple[int, int]) -> None:
        """End the replay at ``replayed_to``: pass on buffered entries after it, then deliver live."""
        pending, self.pending = self.pending or [], None
        if self.skipped is not None and parse_seq(_text(self.skipped)) > replayed_to:
            self.client.enqueue((LAGGED, self.channel.name, self.skipped, _lag_payload(self.channel.name, self.skipped)))
        # entries up to replayed_to came from the replay already: this is the no-duplicates boundary
        fresh = [(seq, payload) for seq, payload in pending if parse_seq(_text(seq)) > replayed_to]
        if fresh:
            self.client.send(self.channel.name, _Encoded(fresh))


def _lag_payload(channel: str, seq: bytes) -> bytes:
    return _json({"op": "lagged", "channel": channel, "skipped_to": _text(seq)})


@dataclass(eq=False)
class _Client:
    """One connection: its principal, bounded queue, subscriptions and counters."""

    id: int
    ws: ServerConnection
    principal: Principal
    queue: asyncio.Queue[Item]
    max_lags: int
    on_slow: Callable[[_Client], None]
    subs: dict[str, _Sub] = field(default_factory=dict)
    sent: int = 0
    dropped: int = 0
    lags: int = 0
    lag_streak: int = 0
    replayed: int = 0
    closing: bool = False
    batch: bool = False  # several ready data messages go as one JSON array frame (opted in at subscribe)
    tasks: set[asyncio.Task] = field(default_factory=set)

    def send(self, channel: str, encoded: _Encoded) -> None:
        """Data messages of one channel: written at once when nothing is waiting for this socket, else queued."""
        if self.closing:
            return
        ws = self.ws
        if self.queue.empty() and ws.transport.get_write_buffer_size() == 0 and ws.protocol.state is State.OPEN:
            # the client keeps up: skip the queue and the writer task's wake-up (the common case, and
            # the one that decides latency): the bytes shared by every subscriber, one write, no
            # per-client encoding; the socket takes at most one dispatch slice this way
            ws.transport.write(encoded.batched() if self.batch else encoded.plain())
            self.sent += len(encoded.entries)
            self.lag_streak = 0
            return
        for seq, payload in encoded.entries:
            self.enqueue((DATA, channel, seq, payload))

    def enqueue(self, item: Item) -> None:
        """Queue a frame without waiting; a full queue makes the client lag (skip ahead)."""
        if self.closing:
            return
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self._lag(item)

    def control(self, message: dict[str, Any]) -> None:
        """Queue a reply (subscribed, error, pong, ...) in order with the data."""
        self.enqueue((CONTROL, "", b"", _json(message)))

    def error(self, code: str, message: str) -> None:
        """Queue an error message; the connection stays open."""
        self.control({"op": "error", "code": code, "message": message})

    def beat(self, payload: bytes) -> None:
        """Queue a heartbeat unless the queue is full (a lagging client learns of it from ``lagged``)."""
        if not self.closing and not self.queue.full():
            self.queue.put_nowait((BEAT, "", b"", payload))

    def _lag(self, item: Item) -> None:
        kept: list[Item] = []
        skipped: dict[str, bytes] = {}
        dropped = 0
        for kind, channel, seq, payload in [*self._drain_queue(), item]:
            if kind == CONTROL:
                kept.append((kind, channel, seq, payload))
            elif kind in (DATA, LAGGED):
                skipped[channel] = seq  # queue order is stream order per channel: the last one is the newest
                dropped += kind == DATA
        self.dropped += dropped
        self.lags += 1
        self.lag_streak += 1
        if self.lag_streak >= self.max_lags:
            self.closing = True
            self.on_slow(self)
            return
        notices = [(LAGGED, ch, seq, _lag_payload(ch, seq)) for ch, seq in skipped.items()]
        for queued in kept + notices:
            try:
                self.queue.put_nowait(queued)
            except asyncio.QueueFull:  # only with more pending replies than queue slots
                break

    def _drain_queue(self) -> list[Item]:
        items = []
        while not self.queue.empty():
            items.append(self.queue.get_nowait())
        return items

    async def write(self) -> None:
        """Send queued frames in batches; waits on the socket's flow control, never on the readers."""
        ws, queue, protocol = self.ws, self.queue, self.ws.protocol
        try:
            while True:
                batch = [await queue.get()]
                for _ in range(min(queue.qsize(), WRITE_BATCH - 1)):
                    batch.append(queue.get_nowait())
                # frames are complete and never fragmented, so they may go straight to the transport
                # between websockets' own (ping, close) frames; never after a close frame, though
                if protocol.state is not State.OPEN:
                    return
                ws.transport.writelines(self._frames(batch))
                self.sent += sum(1 for kind, _, _, _ in batch if kind == DATA)
                await ws.drain()  # one flow-control wait per batch
                if queue.empty():
                    self.lag_streak = 0  # caught up with live
        except (ConnectionClosed, OSError):
            return

    def _frames(self, items: list[Item]) -> list[bytes]:
        """Queued items as text frames; in batch mode each run of data messages as array frames."""
        if not self.batch:
            return [_wire(payload) for _, _, _, payload in items]
        frames: list[bytes] = []
        run: list[bytes] = []
        for kind, _, _, payload in items:
            if kind == DATA:
                run.append(payload)
                continue
            if run:
                frames += _arrays(run)
                run = []
            frames.append(_wire(payload))
        if run:
            frames += _arrays(run)
        return frames

    def stats(self) -> dict[str, Any]:
        """Counters of this connection."""
        return {"user": self.principal.username, "key_id": self.principal.key_id, "tier": self.principal.tier.name,
                "channels": sorted(self.subs), "batch": self.batch, "queued": self.queue.qsize(), "sent": self.sent,
                "dropped": self.dropped, "lags": self.lags, "replayed": self.replayed}


@dataclass(eq=False)
class _Group:
    """The subscriptions of every client to one channel name; matched and encoded once per entry."""

    channel: Channel
    head: bytes
    members: dict[_Sub, None] = field(default_factory=dict)


@dataclass
class _ReaderStats:
    last_seq: str = "0-0"
    read: int = 0
    errors: int = 0
    bad: int = 0


class FeedServer:
    """The live feed server; ``await start()``, then clients connect to ``ws://host:port/ws/v1/feed``.

    With ``reuse_port`` several servers (one per process) listen on the same port side by side."""

    def __init__(self, redis_url: str, authenticate: Callable[[str], Awaitable[Principal | None]],
                 host: str = "127.0.0.1", port: int = 8001, namespace: str = "ci", queue_size: int = 1000,
                 heartbeat_s: float = 15.0, max_lags: int = 3, read_count: int = 2000, block_ms: int = 1000,
                 close_timeout_s: float = 2.0, send_buffer: int | None = 256 * 1024,
                 reuse_port: bool = False) -> None:
        if queue_size < 1 or max_lags < 1 or read_count < 1 or block_ms < 1:
            raise ConfigError("FeedServer needs queue_size, max_lags, read_count and block_ms >= 1, got "
                              f"{queue_size}, {max_lags}, {read_count}, {block_ms}")
        if not heartbeat_s > 0:
            raise ConfigError(f"FeedServer heartbeat_s must be > 0, got {heartbeat_s}")
        self._redis_url = redis_url
        self._authenticate = authenticate
        self._host, self._port = host, port
        self._keys = RedisKeys(namespace)
        self._queue_size, self._max_lags = queue_size, max_lags
        self._heartbeat_s = heartbeat_s
        self._read_count, self._block_ms = read_count, block_ms
        self._close_timeout_s = close_timeout_s
        self._send_buffer = send_buffer
        self._reuse_port = reuse_port
        self._redis: Redis | None = None
        self._server: Server | None = None
        self._tasks: set[asyncio.Task] = set()  # readers and heartbeat, cancelled by stop()
        self._closers: set[asyncio.Task] = set()  # closing handshakes, each ends by itself
        self._connections: set[ServerConnection] = set()
        self._groups: dict[str, dict[str, _Group]] = {s: {} for s in CHANNELS}
        self._clients: dict[int, _Client] = {}
        self._per_user: dict[str, int] = {}
        self._ids = itertools.count(1)
        self._readers = {s: _ReaderStats() for s in CHANNELS}
        self._totals = {"connections": 0, "sent": 0, "dropped": 0, "lags": 0, "closed_slow": 0,
                        "rejected_unauthorized": 0, "rejected_too_many": 0}

    # ---- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        """Listen for clients and start one stream reader per channel kind and the heartbeat."""
        if self._server is not None:
            raise ConfigError("FeedServer already started")
        # blocking XREADs must return before the socket timeout fires
        self._redis = Redis.from_url(self._redis_url, decode_responses=False, socket_connect_timeout=2.0,
                                     socket_timeout=self._block_ms / 1000 + 5.0)
        for stream in CHANNELS:
            self._spawn(self._read(stream), self._tasks)
        self._spawn(self._heartbeat(), self._tasks)
        # no compression: deflating each frame per client would cost more CPU than the fan-out itself
        self._server = await serve(self._handle, self._host, self._port, process_request=self._check_path,
                                   compression=None, max_size=64 * 1024, close_timeout=self._close_timeout_s,
                                   logger=_ws_log, reuse_port=self._reuse_port)
        log.info("feed listening on ws://%s:%d%s", self._host, self.port, PATH)

    async def stop(self) -> None:
        """Close every connection (1001), stop the readers and release Redis."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            self._server.close()
            try:
                await asyncio.wait_for(self._server.wait_closed(), self._close_timeout_s + 1.0)
            except TimeoutError:
                # a peer that stopped reading keeps close() waiting for buffer space: cut it off, and any
                # connection still in its handshake (not yet in our set) with it
                for connection in {*self._connections, *getattr(self._server, "connections", ())}:
                    connection.transport.abort()
                try:
                    await asyncio.wait_for(self._server.wait_closed(), self._close_timeout_s + 1.0)
                except TimeoutError:
                    log.warning("feed server: connections still open after abort; leaving them to the OS")
            self._server = None
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    async def __aenter__(self) -> FeedServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        """The port listened on (the one picked by the OS when constructed with 0)."""
        if self._server is None or not self._server.sockets:
            return self._port
        return self._server.sockets[0].getsockname()[1]

    def stats(self) -> dict[str, Any]:
        """Totals (closed connections included), per-stream reader counters and per-connection counters."""
        live = self._clients.values()
        totals = dict(self._totals)
        for name in ("sent", "dropped", "lags"):
            totals[name] += sum(getattr(c, name) for c in live)
        return {"open": len(self._clients), "users": dict(self._per_user), **totals,
                "readers": {s: vars(r).copy() for s, r in self._readers.items()},
                "clients": {cid: c.stats() for cid, c in self._clients.items()}}

    def _spawn(self, coro: Awaitable[None], owner: set[asyncio.Task]) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        owner.add(task)
        task.add_done_callback(owner.discard)
        return task

    # ---- connections ----------------------------------------------------------------------
    def _check_path(self, connection: ServerConnection, request: Request) -> Response | None:
        if urlsplit(request.path).path != PATH:
            return connection.respond(404, f"the live feed is at {PATH}\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        self._connections.add(ws)
        try:
            await self._serve_client(ws)
        finally:
            self._connections.discard(ws)

    async def _serve_client(self, ws: ServerConnection) -> None:
        key = api_key(ws.request)
        principal = None
        if key is not None:
            try:
                principal = await self._authenticate(key)
            except Exception as e:  # the backend's own failures (database down, ...): refuse, show no key
                log.warning("feed authentication failed for key %s: %s", key_id(key), type(e).__name__)
                await ws.close(CLOSE_AUTH_DOWN, "authentication unavailable; try again later")
                return
        if principal is None:
            self._totals["rejected_unauthorized"] += 1
            log.info("feed connection refused: %s", "no API key" if key is None else f"unknown key {key_id(key)}")
            await ws.close(CLOSE_UNAUTHORIZED, "unauthorized: pass an API key as 'Authorization: Bearer KEY', "
                                               "'X-API-Key: KEY' or '?key=KEY'")
            return
        user, tier = principal.username, principal.tier
        # check and count with no await in between, so concurrent handshakes cannot both pass
        if self._per_user.get(user, 0) >= tier.max_ws_connections:
            self._totals["rejected_too_many"] += 1
            log.info("feed connection for %s (key %s) refused: tier %s allows %d", user, principal.key_id,
                     tier.name, tier.max_ws_connections)
            await ws.close(CLOSE_TOO_MANY, f"too many connections: tier {tier.name} allows "
                                           f"{tier.max_ws_connections} at once")
            return
        self._per_user[user] = self._per_user.get(user, 0) + 1
        sock = ws.transport.get_extra_info("socket")
        if self._send_buffer and sock is not None:
            # a fixed kernel buffer per socket instead of autotuning up to megabytes: bounds memory per
            # client and lets a stalled reader show up as backpressure (then lag) soon
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self._send_buffer)
        client = _Client(next(self._ids), ws, principal, asyncio.Queue(self._queue_size), self._max_lags,
                         self._close_slow)
        self._clients[client.id] = client
        self._totals["connections"] += 1
        log.info("feed client %d connected: user %s, key %s, tier %s", client.id, user, principal.key_id, tier.name)
        self._spawn(client.write(), client.tasks)
        try:
            async for message in ws:
                self._on_message(client, message)
        except ConnectionClosed:
            pass
        finally:
            self._forget(client)

    def _forget(self, client: _Client) -> None:
        for task in list(client.tasks):
            task.cancel()
        for sub in list(client.subs.values()):
            self._unregister(sub)
        client.subs.clear()
        self._clients.pop(client.id, None)
        left = self._per_user.get(client.principal.username, 1) - 1
        if left > 0:
            self._per_user[client.principal.username] = left
        else:
            self._per_user.pop(client.principal.username, None)
        for name in ("sent", "dropped", "lags"):
            self._totals[name] += getattr(client, name)
        log.info("feed client %d (user %s) closed: sent %d, dropped %d, lagged %d times", client.id,
                 client.principal.username, client.sent, client.dropped, client.lags)

    def _close_slow(self, client: _Client) -> None:
        self._totals["closed_slow"] += 1
        log.info("feed client %d (user %s) closed: lagged %d times in a row", client.id,
                 client.principal.username, client.lag_streak)
        self._spawn(self._close(client.ws, CLOSE_TOO_SLOW, f"too slow: lagged {client.lag_streak} times in a row"),
                    self._closers)

    async def _close(self, ws: ServerConnection, code: int, reason: str) -> None:
        try:
            await asyncio.wait_for(ws.close(code, reason), self._close_timeout_s)
        except TimeoutError:
            # close() first waits for room in the send buffer, which a peer that stopped reading never
            # makes (nor does the keepalive ping): drop the TCP connection instead
            ws.transport.abort()

    # ---- protocol -------------------------------------------------------------------------
    def _on_message(self, client: _Client, message: str | bytes) -> None:
        if isinstance(message, bytes):
            client.error("bad_request", "send JSON text frames, not binary")
            return
        try:  # orjson: a bounded nesting depth, so a hostile frame is an error, never a stack overflow
            request = orjson.loads(message)
        except orjson.JSONDecodeError:
            client.error("bad_request", "not valid JSON; e.g. {\"op\": \"subscribe\", \"channels\": [\"signals:*\"]}")
            return
        op = request.get("op") if isinstance(request, dict) else None
        if op == "subscribe":
            self._subscribe(client, request)
        elif op == "unsubscribe":
            self._unsubscribe(client, request)
        elif op == "ping":
            client.control({"op": "pong", "ts": time.time_ns()})
        else:
            client.error("bad_request", f"unknown op {op!r}; use subscribe, unsubscribe or ping")

    @staticmethod
    def _names(client: _Client, request: dict[str, Any]) -> list[str] | None:
        names = request.get("channels")
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            client.error("bad_request", "'channels' must be a non-empty list of channel names, e.g. [\"signals:*\"]")
            return None
        return names

    def _subscribe(self, client: _Client, request: dict[str, Any]) -> None:
        names = self._names(client, request)
        resume = request.get("from") or {}
        if names is None:
            return
        if not isinstance(resume, dict):
            client.error("bad_request", "'from' must map channel names to the last seq received")
            return
        batch = request.get("batch")
        if batch is not None and not isinstance(batch, bool):
            client.error("bad_request", "'batch' must be true (data messages ready together come as one JSON "
                                        "array frame) or false (one message per frame)")
            return
        if batch is not None:
            client.batch = batch
        tier = client.principal.tier
        accepted: list[str] = []
        replays: list[tuple[_Sub, tuple[int, int]]] = []
        for name in names:
            try:
                channel = parse_channel(name)
                after = resume.get(name, resume.get(channel.name))
                start = parse_seq(after) if after is not None else None
            except ChannelError as e:
                client.error("bad_channel", str(e))
                continue
            if not tier.allows_channel(channel.kind):
                client.error("channel_not_allowed", f"tier {tier.name} does not include {channel.kind}; "
                                                    f"it allows {', '.join(sorted(tier.channels))}")
                continue
            if channel.name in client.subs:
                accepted.append(channel.name)  # subscribing twice changes nothing
                continue
            if len(client.subs) >= MAX_SUBSCRIPTIONS:
                client.error("too_many_channels", f"at most {MAX_SUBSCRIPTIONS} channels per connection; "
                                                  "use wildcards such as candles:*:1m")
                continue
            sub = _Sub(client, channel, pending=[] if start is not None else None)
            # registered before the replay reads the stream, so no entry falls between the two
            self._register(sub)
            accepted.append(channel.name)
            if start is not None:
                replays.append((sub, start))
        if accepted:
            ack: dict[str, Any] = {"op": "subscribed", "channels": accepted}
            if batch is not None:
                ack["batch"] = client.batch
            client.control(ack)
        if replays:
            self._spawn(self._replay(client, replays), client.tasks)

    def _unsubscribe(self, client: _Client, request: dict[str, Any]) -> None:
        names = self._names(client, request)
        if names is None:
            return
        removed = []
        for name in names:
            sub = client.subs.get(name.strip())
            if sub is not None:
                self._unregister(sub)
                removed.append(sub.channel.name)
        client.control({"op": "unsubscribed", "channels": removed})

    def _register(self, sub: _Sub) -> None:
        sub.client.subs[sub.channel.name] = sub
        groups = self._groups[sub.channel.stream]
        group = groups.get(sub.channel.name)
        if group is None:
            group = groups[sub.channel.name] = _Group(sub.channel, _data_head(sub.channel.name))
        group.members[sub] = None

    def _unregister(self, sub: _Sub) -> None:
        sub.active = False
        sub.client.subs.pop(sub.channel.name, None)
        groups = self._groups[sub.channel.stream]
        group = groups.get(sub.channel.name)
        if group is not None:
            group.members.pop(sub, None)
            if not group.members:
                del groups[sub.channel.name]

    # ---- replay ---------------------------------------------------------------------------
    async def _replay(self, client: _Client, replays: list[tuple[_Sub, tuple[int, int]]]) -> None:
        assert self._redis is not None
        for sub, start in replays:
            channel = sub.channel
            key = self._keys.feed(channel.stream)
            cursor, position = f"{start[0]}-{start[1]}", start
            try:
                trimmed = await self._trimmed_to(key)
                if trimmed is not None and parse_seq(trimmed) > start:
                    # entries right after the client's seq were trimmed away: say so, replay what is left
                    client.enqueue((LAGGED, channel.name, trimmed.encode(), _lag_payload(channel.name, trimmed.encode())))
                head = _data_head(channel.name)
                while sub.active and not client.closing:
                    rows = await self._redis.xrange(key, min=f"({cursor}", max="+", count=REPLAY_PAGE)
                    for seq, fields in rows:
                        raw = fields[b"data"]
                        if channel.filtered and not channel.matches(subject(orjson.loads(raw))):
                            continue
                        # waiting here slows only this client's replay; live entries wait in sub.pending
                        await client.queue.put((DATA, channel.name, seq, _payload(head, seq, raw)))
                        client.replayed += 1
                    if rows:
                        cursor = _text(rows[-1][0])
                        position = parse_seq(cursor)
                    if len(rows) < REPLAY_PAGE:
                        break
            except (RedisError, OSError, ValueError) as e:
                # going live now would leave a gap: drop the subscription and let the client retry
                self._unregister(sub)
                client.error("replay_failed", f"replaying {channel.name} failed ({type(e).__name__}); "
                                              f"subscribe again with from {cursor}")
                continue
            if sub.active:
                sub.go_live(position)

    async def _trimmed_to(self, key: str) -> str | None:
        """The newest id trimmed from a stream (``max-deleted-entry-id``), or None if it has no entries yet."""
        assert self._redis is not None
        try:
            info = await self._redis.xinfo_stream(key)
        except ResponseError:  # no such key: nothing written, nothing trimmed
            return None
        value = info.get("max-deleted-entry-id", info.get(b"max-deleted-entry-id"))
        return _text(value) if value is not None else None

    # ---- fan-out --------------------------------------------------------------------------
    async def _read(self, stream: str) -> None:
        """The one reader of a stream: blocking XREAD from the newest entry on, dispatching every batch."""
        assert self._redis is not None
        key = self._keys.feed(stream)
        stats = self._readers[stream]
        last: str | bytes | None = None
        delay = 0.0
        slice_size = max(1, self._queue_size // 2)
        while True:
            try:
                if last is None:
                    newest = await self._redis.xrevrange(key, count=1)
                    last = newest[0][0] if newest else b"0-0"
                    stats.last_seq = _text(last)
                reply = await self._redis.xread({key: last}, count=self._read_count, block=self._block_ms)
            except RedisError as e:
                stats.errors += 1
                delay = min(5.0, delay * 2 if delay else 0.1)
                if stats.errors == 1 or delay == 5.0:
                    log.warning("feed reader %s: Redis error (%s: %s); retrying in %.1f s", stream,
                                type(e).__name__, e, delay)
                await asyncio.sleep(delay)
                continue
            delay = 0.0
            rows = _rows(reply)
            if not rows:
                continue
            last = rows[-1][0]
            stats.last_seq = _text(last)
            stats.read += len(rows)
            for i in range(0, len(rows), slice_size):
                if i:
                    # let the writers empty their queues before the next slice fills them
                    await asyncio.sleep(0)
                self._dispatch(stream, rows[i:i + slice_size], stats)

    def _dispatch(self, stream: str, rows: list, stats: _ReaderStats) -> None:
        groups = list(self._groups[stream].values())
        if not groups:
            return
        entries = [(seq, fields[b"data"]) for seq, fields in rows if b"data" in fields]
        stats.bad += len(rows) - len(entries)
        subjects = [self._subject(raw, stats) for _, raw in entries] if any(g.channel.filtered for g in groups) \
            else []
        for group in groups:
            channel = group.channel
            # one batch per channel and slice: encoded once, then one socket write per subscriber
            head = group.head
            batch = [(seq, _payload(head, seq, raw)) for i, (seq, raw) in enumerate(entries)
                     if not channel.filtered or (subjects[i] is not None and channel.matches(subjects[i]))]
            if batch:
                encoded = _Encoded(batch)
                for sub in group.members:
                    sub.deliver(encoded)

    @staticmethod
    def _subject(raw: bytes, stats: _ReaderStats) -> Subject | None:
        try:
            return subject(orjson.loads(raw))
        except (ValueError, AttributeError):
            stats.bad += 1
            return None

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_s)
            payload = _json({"op": "heartbeat", "ts": time.time_ns()})
            for client in list(self._clients.values()):
                client.beat(payload)


def _rows(reply: Any) -> list:
    if not reply:
        return []
    rows = next(iter(reply.values())) if isinstance(reply, dict) else reply[0][1]  # RESP3 or RESP2 shape
    return rows[0] if len(rows) == 1 and isinstance(rows[0], list) else rows
