"""Bybit public market data: v5 ``publicTrade`` / ``orderbook`` frames, the legacy ``realtime`` frames
of recorded sessions, and the v5 REST repair endpoints.

Wire facts used here (Bybit v5 docs): a topic frame is ``{"topic", "type", "ts", "data"}``;
``publicTrade`` rows carry ``T`` (ms), ``s``, ``S`` (taker side ``Buy``/``Sell``), ``v``, ``p`` and ``i``
(numeric on spot, a UUID on derivatives); ``orderbook.{depth}.{symbol}`` carries ``b``/``a`` levels and
``u``, consecutive per book (``u == 1``: the venue restarted its book service and this is a fresh
snapshot). Replies to ``op`` requests carry ``success``; pings are ``{"op": "ping"}`` every 20 s.

The legacy inverse ``realtime`` API (retired; kept because recorded sessions use it) sends
``trade.{symbol}`` rows and ``orderBookL2_25.{symbol}`` books keyed by level id: a delta is
``{"delete", "update", "insert"}`` lists and a delete may omit the price, so the parser keeps each
symbol's id -> price map. Its ``cross_seq`` only increases (it is not consecutive per book), so
those books can only be kept with the ``"none"`` rule of :class:`~engine.venues.book.BookSync`.
"""

from __future__ import annotations

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

CATEGORIES = ("spot", "linear", "inverse")
DEFAULT_CHANNELS = ("publicTrade",)
KNOWN_CHANNELS = ("publicTrade", "orderbook.1", "orderbook.50", "orderbook.200", "orderbook.500",
                  "orderbook.1000", "tickers")
ARGS_PER_SUBSCRIBE = 10  # Bybit refuses a subscribe request with more than 10 topics (spot)
LEGACY_BOOKS = ("orderBookL2_25", "orderBookL2_200", "orderBook_200")
IGNORED = ("tickers", "kline", "klineV2", "instrument_info", "liquidation", "insurance")


class BybitParser:
    """Parses Bybit public frames (v5 and legacy ``realtime``) into trades and book updates."""

    def __init__(self, key: str = "BYBIT") -> None:
        self.venue = key
        self._markets: dict[str, str] = {}
        # legacy books: symbol -> level id -> (price, side); deletes may name only the id
        self._level_ids: dict[str, dict[int, tuple[float, str]]] = {}
        self._handlers = {"publicTrade": self._trades, "trade": self._trades, "orderbook": self._book}
        self._handlers.update({name: self._legacy_book for name in LEGACY_BOOKS})
        self._handlers.update({name: _ignore for name in IGNORED})

    def _market(self, symbol) -> str:
        m = self._markets.get(symbol)
        if m is None:
            if not isinstance(symbol, str) or not symbol:
                raise FrameError(BAD_VALUE, f"symbol {symbol!r}")
            m = self._markets[symbol] = market_key(self.venue, symbol)
        return m

    def parse_message(self, msg, out: FrameOutput) -> None:
        if not isinstance(msg, dict):
            raise FrameError(UNKNOWN_MESSAGE, f"not an object: {type(msg).__name__}")
        topic = msg.get("topic")
        if topic is None:
            _control(msg, out)
            return
        if not isinstance(topic, str):
            raise FrameError(BAD_VALUE, f"topic {topic!r}")
        handler = self._handlers.get(topic.partition(".")[0])
        if handler is None:
            raise FrameError(UNKNOWN_MESSAGE, f"topic {topic[:80]!r}")
        handler(msg, out)

    def _trades(self, msg: dict, out: FrameOutput) -> None:
        for d in object_list(msg["data"]):
            if "trade_time_ms" in d:  # legacy realtime row
                out.trade(self._market(d["symbol"]), integer(d["trade_time_ms"]) * NS_PER_MS, number(d["price"]),
                          number(d["size"]), taker_side(d["side"], "Buy", "Sell"), _trade_id(d["trade_id"]))
            else:
                out.trade(self._market(d["s"]), integer(d["T"]) * NS_PER_MS, number(d["p"]), number(d["v"]),
                          taker_side(d["S"], "Buy", "Sell"), _trade_id(d["i"]))

    def _book(self, msg: dict, out: FrameOutput) -> None:
        d = msg["data"]
        if not isinstance(d, dict):
            raise FrameError(BAD_VALUE, "orderbook data is not an object")
        kind = msg["type"]
        if kind not in ("snapshot", "delta"):
            raise FrameError(BAD_VALUE, f"orderbook type {kind!r}")
        seq = _seq(d["u"])
        out.books.append(BookUpdate(
            market=self._market(d["s"]), ts=_ms_to_ns(msg["ts"]), bids=levels(d["b"]), asks=levels(d["a"]),
            snapshot=kind == "snapshot" or seq == 1, first_seq=seq, last_seq=seq))

    def _legacy_book(self, msg: dict, out: FrameOutput) -> None:
        symbol = msg["topic"].rsplit(".", 1)[-1]
        kind, data = msg["type"], msg["data"]
        ts = integer(msg["timestamp_e6"]) * 1000
        seq = _seq(msg["cross_seq"])
        if not 0 < ts < MAX_I64:
            raise FrameError(BAD_VALUE, f"timestamp_e6 {msg['timestamp_e6']!r}")
        if kind == "snapshot":
            ids: dict[int, tuple[float, str]] = {}
            rows = data["order_book"] if isinstance(data, dict) else data  # linear snapshots wrap the list
            changes = [_legacy_level(e, ids, deleted=False) for e in object_list(rows)]
        elif kind == "delta":
            if not isinstance(data, dict):
                raise FrameError(BAD_VALUE, "delta data is not an object")
            ids = dict(self._level_ids.get(symbol, {}))  # a copy: a refused frame must not touch the map
            # the venue's order: deletes, then updates, then inserts (a level may leave and come back)
            changes = [_legacy_level(e, ids, deleted=True) for e in object_list(data["delete"])]
            changes += [_legacy_level(e, ids, deleted=False) for e in object_list(data["update"])]
            changes += [_legacy_level(e, ids, deleted=False) for e in object_list(data["insert"])]
        else:
            raise FrameError(BAD_VALUE, f"book type {kind!r}")
        bids = levels([(p, s) for p, s, side in changes if side == "Buy"])
        asks = levels([(p, s) for p, s, side in changes if side == "Sell"])
        update = BookUpdate(market=self._market(symbol), ts=ts, bids=bids, asks=asks, snapshot=kind == "snapshot",
                            first_seq=seq, last_seq=seq)
        self._level_ids[symbol] = ids
        out.books.append(update)


def _legacy_level(e, ids: dict[int, tuple[float, str]], deleted: bool) -> tuple[float, float, str]:
    """One legacy level as (price, size, side), keeping ``ids`` current; a deleted level has size 0."""
    level_id = integer(e["id"])
    known = ids.pop(level_id, None) if deleted else ids.get(level_id)
    price = e.get("price")
    if price is not None:
        price = number(price)
    elif known is not None:
        price = known[0]
    elif deleted:
        return 0.0, 0.0, ""  # never seen (no snapshot yet): nothing to remove; dropped below
    else:
        raise FrameError(MISSING_FIELD, f"level {level_id} has no price and was never seen")
    side = e.get("side") or (known[1] if known else None)
    if side not in ("Buy", "Sell"):
        raise FrameError(BAD_VALUE, f"level side {side!r}")
    if deleted:
        return price, 0.0, side
    ids[level_id] = (price, side)
    return price, number(e["size"]), side


def _control(msg: dict, out: FrameOutput) -> None:
    """Replies to subscribe/ping requests; ``success: false`` is a venue error."""
    if "success" in msg:
        ok = msg["success"]
        if not isinstance(ok, bool):
            raise FrameError(BAD_VALUE, f"success {ok!r}")
        if not ok:
            raise FrameError(VENUE_ERROR, f"{msg.get('ret_msg')!r} for {msg.get('request') or msg.get('op')!r}")
        out.control.append(msg)
        return
    if msg.get("op") in ("ping", "pong"):
        out.control.append(msg)
        return
    raise FrameError(UNKNOWN_MESSAGE, "no topic")


def _ignore(msg: dict, out: FrameOutput) -> None:
    """Topics the engine does not use (tickers, klines): accepted, produce nothing."""


def _trade_id(v) -> int:
    """Numeric trade ids (spot) as ints; opaque ones (UUIDs on derivatives) as -1: the column is int64."""
    if type(v) is int or type(v) is str and v.isascii() and v.isdigit():
        tid = integer(v)
        if tid >= 0:
            return tid
    elif type(v) is str and v:
        return -1
    raise FrameError(BAD_VALUE, f"trade id {v!r}")


def _seq(v) -> int:
    """A book sequence number; negative ones would read as "none" (-1) downstream."""
    seq = integer(v)
    if seq < 0:
        raise FrameError(BAD_VALUE, f"sequence {v!r}")
    return seq


def _ms_to_ns(v) -> int:
    ns = integer(v) * NS_PER_MS
    if not 0 < ns < MAX_I64:
        raise FrameError(BAD_VALUE, f"timestamp {v!r}")
    return ns


def _result(body: bytes) -> dict:
    """The ``result`` of a v5 REST reply; a non-zero ``retCode`` is a venue error."""
    d = orjson.loads(body)
    if not isinstance(d, dict):
        raise FrameError(BAD_VALUE, f"expected an object, got {str(d)[:120]}")
    if d.get("retCode") != 0:
        raise FrameError(VENUE_ERROR, f"retCode {d.get('retCode')!r}: {d.get('retMsg')!r}")
    result = d.get("result")
    if not isinstance(result, dict):
        raise FrameError(MISSING_FIELD, "no result object")
    return result


class Bybit(Venue):
    """Bybit v5 public streams of one category (spot, linear or inverse) and the v5 market REST API."""

    name = "bybit"
    key = "BYBIT"
    ws_url = "wss://stream.bybit.com/v5/public/spot"
    rest_url = "https://api.bybit.com"
    # Bybit asks for a ping every 20 s; a pong comes back, so even a quiet market sends a frame within 45 s.
    limits = VenueLimits(max_streams_per_connection=200, max_messages_per_second=5, max_connections=100,
                         ping_interval_s=20.0, stale_after_s=45.0)
    trade_ids_contiguous = False  # derivatives ids are UUIDs; spot ids are not promised to be gapless

    def __init__(self, channels: tuple[str, ...] = DEFAULT_CHANNELS, category: str = "spot") -> None:
        unknown = set(channels) - set(KNOWN_CHANNELS)
        if unknown:
            raise ValueError(f"{self.name}: unknown channels {sorted(unknown)}; known: {list(KNOWN_CHANNELS)}")
        if category not in CATEGORIES:
            raise ValueError(f"{self.name}: category must be one of {CATEGORIES}, got {category!r}")
        self.channels = tuple(channels)
        self.category = category
        self.ws_url = f"wss://stream.bybit.com/v5/public/{category}"
        # /v5/market/recent-trade serves at most 60 trades on spot, 1000 elsewhere
        self.max_backfill_per_request = 60 if category == "spot" else 1000

    def parser(self) -> BybitParser:
        return BybitParser(self.key)

    def streams_per_symbol(self) -> int:
        return len(self.channels)

    def subscribe_frames(self, symbols: list[str]) -> list[str]:
        topics = [f"{c}.{s.upper()}" for s in symbols for c in self.channels]
        return [orjson.dumps({"op": "subscribe", "args": topics[i:i + ARGS_PER_SUBSCRIBE]}).decode()
                for i in range(0, len(topics), ARGS_PER_SUBSCRIBE)]

    def ping_frame(self) -> str:
        return '{"op":"ping"}'

    def trades_request(self, symbol: str, after_id: int, limit: int) -> tuple[str, dict]:
        """The most recent trades: Bybit has no paging by trade id, so ``after_id`` cannot be honoured
        and only a gap within the last 60 (spot) / 1000 trades can be recovered."""
        return "/v5/market/recent-trade", {"category": self.category, "symbol": symbol.upper(),
                                           "limit": self.max_backfill_per_request}

    def parse_trades_response(self, symbol: str, body: bytes, out: FrameOutput) -> None:
        rows = _result(body).get("list")
        if not isinstance(rows, list):
            raise FrameError(MISSING_FIELD, "result.list is not a list")
        market = market_key(self.key, symbol)
        parsed = []
        for r in object_list(rows):
            parsed.append((integer(r["time"]) * NS_PER_MS, number(r["price"]), number(r["size"]),
                           taker_side(r["side"], "Buy", "Sell"), _trade_id(r["execId"])))
        parsed.reverse()  # the venue lists newest first; a stable sort by time then fixes any other order
        parsed.sort(key=lambda t: t[0])
        mark = out.mark()
        try:
            for ts, price, size, side, tid in parsed:
                out.trade(market, ts, price, size, side, tid)
        except FrameError:
            out.rollback(mark)
            raise

    def book_snapshot_request(self, symbol: str) -> tuple[str, dict]:
        """A 200-level REST book. Its ``u`` continues only the WebSocket book of the matching depth."""
        return "/v5/market/orderbook", {"category": self.category, "symbol": symbol.upper(), "limit": 200}

    @snapshot_parser
    def parse_book_snapshot(self, symbol: str, body: bytes) -> BookUpdate:
        r = _result(body)
        seq = _seq(r["u"])
        return BookUpdate(market=market_key(self.key, symbol), ts=_ms_to_ns(r["ts"]), bids=book_levels(r["b"], "b"),
                          asks=book_levels(r["a"], "a"), snapshot=True, first_seq=seq, last_seq=seq)
