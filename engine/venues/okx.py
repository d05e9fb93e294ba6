"""OKX v5 public market data: ``trades`` and ``books`` frames with their CRC32 checksum, and the REST
repair endpoints.

Wire facts used here (OKX v5 docs): a push is ``{"arg": {"channel", "instId"}, "data": [...]}``; a trade
row has ``tradeId``, ``px``, ``sz``, ``side`` (the taker's) and ``ts`` (ms), all strings; the ``trades``
channel may aggregate fills of one taker order at one price into a row (``count`` fills, ``tradeId`` the
last), so trade ids of consecutive rows are not consecutive. ``books`` pushes ``action`` snapshot then
update; rows are ``[px, sz, "0", orders]`` and size ``"0"`` removes the price. Each message carries
``checksum``, a signed CRC32 of the top 25 levels as sent, and newer messages ``seqId``/``prevSeqId``.
Replies to requests are ``{"event": "subscribe" | "error", ...}``; the heartbeat is the text ``ping``,
answered with the text ``pong`` (not JSON).
"""

from __future__ import annotations

import heapq
import zlib

import orjson

from engine.venues.frames import (
    BAD_VALUE,
    MAX_I64,
    MISSING_FIELD,
    NS_PER_MS,
    UNKNOWN_MESSAGE,
    VENUE_ERROR,
    FrameError,
    FrameOutput,
    integer,
    levels,
    number,
    object_list,
    taker_side,
)
from engine.venues.snapshots import book_levels, snapshot_parser
from engine.venues.symbols import market_key
from engine.venues.venue import Venue, VenueLimits
from schemas.records import BookUpdate

DEFAULT_CHANNELS = ("trades",)
BOOK_CHANNELS = ("books", "books5", "bbo-tbt")
KNOWN_CHANNELS = ("trades", "tickers") + BOOK_CHANNELS
CHECKSUM_DEPTH = 25
ARGS_PER_SUBSCRIBE = 100  # keeps a request far below OKX's 64 KB limit on the args of one request
CONTROL_EVENTS = ("subscribe", "unsubscribe", "login", "notice", "channel-conn-count")


def okx_checksum(bids, asks) -> int:
    """OKX's book checksum: CRC32 of ``bidPx:bidSz:askPx:askSz:...`` over the top 25 of each side
    (best first, the venue's original strings; the longer side's extra levels follow), signed 32-bit."""
    parts: list[str] = []
    for i in range(CHECKSUM_DEPTH):
        if i < len(bids):
            parts += bids[i][0], bids[i][1]
        if i < len(asks):
            parts += asks[i][0], asks[i][1]
    crc = zlib.crc32(":".join(parts).encode())
    return crc - (1 << 32) if crc >= 1 << 31 else crc


class OkxBook:
    """One instrument's book as OKX sent it (price -> original px and sz strings), to check checksums."""

    def __init__(self) -> None:
        self.bids: dict[float, tuple[str, str]] = {}
        self.asks: dict[float, tuple[str, str]] = {}

    def apply(self, action: str, data: dict) -> None:
        """Apply one ``data`` entry of a ``books`` message; ``action`` is ``snapshot`` or ``update``."""
        if action not in ("snapshot", "update"):
            raise FrameError(BAD_VALUE, f"books action {action!r}")
        # validate everything first: a refused entry leaves the book as it was
        bids = [_book_row(row) for row in data["bids"]]
        asks = [_book_row(row) for row in data["asks"]]
        if action == "snapshot":
            self.bids, self.asks = {}, {}
        for side, rows in ((self.bids, bids), (self.asks, asks)):
            for price, px, sz, removed in rows:
                if removed:
                    side.pop(price, None)
                else:
                    side[price] = (px, sz)

    def top(self, depth: int = CHECKSUM_DEPTH) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """Best ``depth`` bids (high to low) and asks (low to high) as original strings."""
        return ([self.bids[p] for p in heapq.nlargest(depth, self.bids)],
                [self.asks[p] for p in heapq.nsmallest(depth, self.asks)])

    def checksum(self) -> int:
        return okx_checksum(*self.top())


def _book_row(row) -> tuple[float, str, str, bool]:
    """(price, px, sz, removed) of one ``[px, sz, ...]`` row; the strings stay as sent."""
    px, sz = row[0], row[1]
    if type(px) is not str or type(sz) is not str:
        raise FrameError(BAD_VALUE, f"book row {row!r}"[:120])
    price, size = number(px), number(sz)
    if price <= 0 or size < 0:
        raise FrameError(BAD_VALUE, f"book row {row!r}"[:120])
    return price, px, sz, size == 0


class OkxParser:
    """Parses OKX v5 public pushes into trades and book updates (with the venue's checksum)."""

    # Frames that are plain text, not JSON: the reply to the text ``ping``. ``parse_frame`` decodes
    # JSON before a parser sees a frame, so it counts these as bad JSON unless it checks this set first.
    text_control = frozenset({"pong", b"pong"})

    def __init__(self, key: str = "OKX") -> None:
        self.venue = key
        self._markets: dict[str, str] = {}
        self._handlers = {"trades": self._trades, "tickers": _ignore}
        self._handlers.update({name: self._books for name in BOOK_CHANNELS})

    def _market(self, inst_id) -> str:
        m = self._markets.get(inst_id)
        if m is None:
            if not isinstance(inst_id, str) or not inst_id:
                raise FrameError(BAD_VALUE, f"instId {inst_id!r}")
            m = self._markets[inst_id] = market_key(self.venue, inst_id)
        return m

    def parse_message(self, msg, out: FrameOutput) -> None:
        if not isinstance(msg, dict):
            raise FrameError(UNKNOWN_MESSAGE, f"not an object: {type(msg).__name__}")
        event = msg.get("event")
        if event is not None:
            if event == "error":
                raise FrameError(VENUE_ERROR, f"{msg.get('code')}: {msg.get('msg')}")
            if event not in CONTROL_EVENTS:
                raise FrameError(UNKNOWN_MESSAGE, f"event {event!r}"[:120])
            out.control.append(msg)
            return
        arg = msg["arg"]
        if not isinstance(arg, dict):
            raise FrameError(BAD_VALUE, "arg is not an object")
        handler = self._handlers.get(arg["channel"])
        if handler is None:
            raise FrameError(UNKNOWN_MESSAGE, f"channel {arg['channel']!r}"[:120])
        handler(msg, arg, out)

    def _trades(self, msg: dict, arg: dict, out: FrameOutput) -> None:
        for d in object_list(msg["data"]):
            out.trade(self._market(d["instId"]), integer(d["ts"]) * NS_PER_MS, number(d["px"]), number(d["sz"]),
                      taker_side(d["side"], "buy", "sell"), _trade_id(d["tradeId"]))

    def _books(self, msg: dict, arg: dict, out: FrameOutput) -> None:
        action = msg.get("action", "snapshot")  # books5 and bbo-tbt push whole books without an action
        if action not in ("snapshot", "update"):
            raise FrameError(BAD_VALUE, f"books action {action!r}")
        market = self._market(arg["instId"])
        for d in object_list(msg["data"]):
            seq = _optional_seq(d.get("seqId"))
            checksum = d.get("checksum")
            out.books.append(BookUpdate(
                market=market, ts=_ms_to_ns(d["ts"]), bids=levels(d["bids"]), asks=levels(d["asks"]),
                snapshot=action == "snapshot", first_seq=seq, last_seq=seq,
                prev_seq=_optional_seq(d.get("prevSeqId"), least=-1),
                checksum=None if checksum is None else _int32(checksum)))


def _ignore(msg: dict, arg: dict, out: FrameOutput) -> None:
    """Channels the engine does not use (tickers): accepted, produce nothing."""


def _trade_id(v) -> int:
    tid = integer(v)
    if tid < 0:
        raise FrameError(BAD_VALUE, f"tradeId {v!r}")
    return tid


def _optional_seq(v, least: int = 0) -> int:
    """``seqId``/``prevSeqId`` (absent in older messages: -1); a snapshot's ``prevSeqId`` is -1."""
    if v is None:
        return -1
    seq = integer(v)
    if seq < least:
        raise FrameError(BAD_VALUE, f"sequence {v!r}")
    return seq


def _int32(v) -> int:
    c = integer(v)
    if not -(1 << 31) <= c < 1 << 31:
        raise FrameError(BAD_VALUE, f"checksum {v!r} is not a signed 32-bit integer")
    return c


def _ms_to_ns(v) -> int:
    ns = integer(v) * NS_PER_MS
    if not 0 < ns < MAX_I64:
        raise FrameError(BAD_VALUE, f"timestamp {v!r}")
    return ns


def _data(body: bytes) -> list:
    """The ``data`` list of a v5 REST reply; a ``code`` other than ``"0"`` is a venue error."""
    d = orjson.loads(body)
    if not isinstance(d, dict):
        raise FrameError(BAD_VALUE, f"expected an object, got {str(d)[:120]}")
    if d.get("code") != "0":
        raise FrameError(VENUE_ERROR, f"code {d.get('code')!r}: {d.get('msg')!r}")
    data = d.get("data")
    if not isinstance(data, list):
        raise FrameError(MISSING_FIELD, "no data list")
    return data


class Okx(Venue):
    """OKX v5 public WebSocket (``/ws/v5/public``) and the v5 market REST API."""

    name = "okx"
    key = "OKX"
    ws_url = "wss://ws.okx.com:8443/ws/v5/public"
    rest_url = "https://www.okx.com"
    # OKX drops a connection after 30 s without traffic: ping every 25 s (the pong is a frame too).
    # 3 requests/s per IP when connecting and subscribing; 480 (un)subscribes per hour per connection.
    limits = VenueLimits(max_streams_per_connection=200, max_messages_per_second=3, max_connections=30,
                         ping_interval_s=25.0, stale_after_s=40.0)
    # ``trades`` rows aggregate fills (tradeId jumps by ``count``): a jump is not a gap, and a REST
    # backfill of the "missing" ids would count those fills twice.
    trade_ids_contiguous = False
    max_backfill_per_request = 100

    def __init__(self, channels: tuple[str, ...] = DEFAULT_CHANNELS) -> None:
        unknown = set(channels) - set(KNOWN_CHANNELS)
        if unknown:
            raise ValueError(f"{self.name}: unknown channels {sorted(unknown)}; known: {list(KNOWN_CHANNELS)}")
        self.channels = tuple(channels)

    def parser(self) -> OkxParser:
        return OkxParser(self.key)

    def streams_per_symbol(self) -> int:
        return len(self.channels)

    def subscribe_frames(self, symbols: list[str]) -> list[str]:
        args = [{"channel": c, "instId": s.upper()} for s in symbols for c in self.channels]
        return [orjson.dumps({"op": "subscribe", "args": args[i:i + ARGS_PER_SUBSCRIBE]}).decode()
                for i in range(0, len(args), ARGS_PER_SUBSCRIBE)]

    def ping_frame(self) -> str:
        return "ping"

    def trades_request(self, symbol: str, after_id: int, limit: int) -> tuple[str, dict]:
        """Trades with ids after ``after_id``, at most 100. With ``type=1`` OKX pages by tradeId:
        ``before=X`` means ids > X and ``after=Y`` ids < Y. ``before`` alone returns the newest
        records, not those just after X, so ``after`` closes the window at ``after_id + n + 1``."""
        n = max(1, min(limit, self.max_backfill_per_request))
        return "/api/v5/market/history-trades", {"instId": symbol.upper(), "type": 1, "before": after_id,
                                                 "after": after_id + n + 1, "limit": n}

    def parse_trades_response(self, symbol: str, body: bytes, out: FrameOutput, after_id: int | None = None) -> None:
        """Append the trades (the venue lists newest first) oldest first; only ids > ``after_id`` if given."""
        market = market_key(self.key, symbol)
        parsed = []
        for d in object_list(_data(body)):
            tid = _trade_id(d["tradeId"])
            if after_id is None or tid > after_id:
                parsed.append((tid, integer(d["ts"]) * NS_PER_MS, number(d["px"]), number(d["sz"]),
                               taker_side(d["side"], "buy", "sell")))
        parsed.sort()
        mark = out.mark()
        try:
            for tid, ts, price, size, side in parsed:
                out.trade(market, ts, price, size, side, tid)
        except FrameError:
            out.rollback(mark)
            raise

    def book_snapshot_request(self, symbol: str) -> tuple[str, dict]:
        """A 400-level REST book. It carries no ``seqId``, so it cannot continue a ``prevSeqId`` chain:
        after a book gap, a resubscription (the venue then pushes a fresh snapshot) is the reliable fix."""
        return "/api/v5/market/books", {"instId": symbol.upper(), "sz": 400}

    @snapshot_parser
    def parse_book_snapshot(self, symbol: str, body: bytes) -> BookUpdate:
        data = object_list(_data(body))
        if not data:
            raise FrameError(MISSING_FIELD, "empty book reply")
        d = data[0]
        seq = _optional_seq(d.get("seqId"))
        return BookUpdate(market=market_key(self.key, symbol), ts=_ms_to_ns(d["ts"]),
                          bids=book_levels(d["bids"], "bids"), asks=book_levels(d["asks"], "asks"), snapshot=True,
                          first_seq=seq, last_seq=seq)
