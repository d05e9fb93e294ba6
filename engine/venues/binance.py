"""Binance spot and USD-M futures: combined-stream WebSocket frames and the REST repair endpoints.

Wire facts used here (Binance API docs): a combined stream wraps each event as
``{"stream": "btcusdt@aggTrade", "data": {...}}``; ``aggTrade`` ids (``a``) are consecutive per symbol,
``m`` is true when the buyer was the maker (so the aggressor sold); ``depthUpdate`` carries the
first/last update ids ``U``/``u`` (futures also ``pu``, the previous ``u``); a ``kline`` is final
when ``k.x`` is true; ``markPriceUpdate`` carries mark/index price and the funding rate.
"""

from __future__ import annotations

import orjson

from engine.venues.frames import (
    BAD_VALUE,
    BUY,
    MAX_I64,
    MISSING_FIELD,
    NS_PER_MS,
    SELL,
    UNKNOWN_MESSAGE,
    VENUE_ERROR,
    FrameError,
    FrameOutput,
    integer,
    levels,
    number,
)
from engine.venues.snapshots import book_levels, load_object, snapshot_parser
from engine.venues.symbols import market_key
from engine.venues.venue import Venue, VenueLimits
from schemas.records import BookUpdate, Candle, MarkPrice
from schemas.timeframes import parse_timeframe

SPOT_CHANNELS = ("aggTrade",)
FUTURES_CHANNELS = ("aggTrade",)
KNOWN_CHANNELS = ("aggTrade", "trade", "depth", "kline_1m", "markPrice", "bookTicker")


class BinanceParser:
    """Parses Binance market-data events (raw or combined-stream) into trades, books, klines, marks."""

    def __init__(self, key: str = "BINANCE") -> None:
        self.venue = key
        self._markets: dict[str, str] = {}
        self._handlers = {"aggTrade": self._agg_trade, "trade": self._trade, "depthUpdate": self._depth,
                          "kline": self._kline, "markPriceUpdate": self._mark, "bookTicker": _ignore,
                          "24hrTicker": _ignore, "24hrMiniTicker": _ignore}

    def _market(self, symbol: str) -> str:
        m = self._markets.get(symbol)
        if m is None:
            if not isinstance(symbol, str) or not symbol:
                raise FrameError("bad_value", f"symbol {symbol!r}")
            m = self._markets[symbol] = market_key(self.venue, symbol)
        return m

    def parse_message(self, msg, out: FrameOutput) -> None:
        if not isinstance(msg, dict):
            raise FrameError(UNKNOWN_MESSAGE, f"not an object: {type(msg).__name__}")
        data = msg.get("data", msg)
        if not isinstance(data, dict):
            raise FrameError(UNKNOWN_MESSAGE, "data is not an object")
        event = data.get("e")
        if event is None:
            if "result" in msg and "id" in msg:  # reply to SUBSCRIBE / LIST_SUBSCRIPTIONS
                out.control.append(msg)
                return
            if "code" in msg and "msg" in msg:
                out.control.append(msg)
                raise FrameError(VENUE_ERROR, f"{msg.get('code')}: {msg.get('msg')}")
            if "u" in data and "b" in data and "a" in data and "s" in data:  # spot bookTicker has no "e"
                return
            raise FrameError(UNKNOWN_MESSAGE, "no event type")
        handler = self._handlers.get(event)
        if handler is None:
            raise FrameError(UNKNOWN_MESSAGE, f"event {event!r}")
        handler(data, out)

    def _agg_trade(self, d: dict, out: FrameOutput) -> None:
        # the hot path: exact type checks instead of the generic helpers (a bool is not a price)
        p, q, t, a, m = d["p"], d["q"], d["T"], d["a"], d["m"]
        if type(p) is not str or type(q) is not str or type(t) is not int or type(a) is not int \
                or type(m) is not bool:
            raise FrameError("bad_value", f"aggTrade field types p={p!r} q={q!r} T={t!r} a={a!r} m={m!r}")
        out.trade(self._market(d["s"]), t * NS_PER_MS, float(p), float(q), SELL if m else BUY, a)

    def _trade(self, d: dict, out: FrameOutput) -> None:
        out.trade(self._market(d["s"]), integer(d["T"]) * NS_PER_MS, number(d["p"]), number(d["q"]),
                  SELL if _flag(d["m"]) else BUY, integer(d["t"]))

    def _depth(self, d: dict, out: FrameOutput) -> None:
        out.books.append(BookUpdate(
            market=self._market(d["s"]), ts=integer(d["E"]) * NS_PER_MS, bids=levels(d["b"]), asks=levels(d["a"]),
            first_seq=integer(d["U"]), last_seq=integer(d["u"]), prev_seq=integer(d.get("pu", -1))))

    def _kline(self, d: dict, out: FrameOutput) -> None:
        k = d["k"]
        if not isinstance(k, dict):
            raise FrameError("bad_value", "k is not an object")
        if not _flag(k["x"]):  # still forming: the engine builds its own live bars from trades
            return
        volume, taker_buy, quote = number(k["v"]), number(k["V"]), number(k["q"])
        trades = integer(k["n"])
        out.candles.append(Candle(
            market=self._market(k["s"]), timeframe=k["i"], open_ts=integer(k["t"]) * NS_PER_MS,
            close_ts=(integer(k["T"]) + 1) * NS_PER_MS, open=number(k["o"]), high=number(k["h"]),
            low=number(k["l"]), close=number(k["c"]), volume=volume, buy_volume=taker_buy,
            sell_volume=volume - taker_buy, vwap=quote / volume if volume else float("nan"),
            trade_count=trades, gap=trades == 0))
        parse_timeframe(k["i"])  # an unknown interval is a bad frame, not a silent odd bar

    def _mark(self, d: dict, out: FrameOutput) -> None:
        rate = d.get("r")
        out.marks.append(MarkPrice(
            market=self._market(d["s"]), ts=integer(d["E"]) * NS_PER_MS, mark_price=number(d["p"]),
            index_price=number(d["i"]) if d.get("i") not in (None, "") else None,
            funding_rate=number(rate) if rate not in (None, "") else None,
            next_funding_ts=integer(d["T"]) * NS_PER_MS if d.get("T") else None))


def _ignore(d: dict, out: FrameOutput) -> None:
    """Events the engine does not use (tickers): accepted, produce nothing."""


def _flag(v) -> bool:
    if not isinstance(v, bool):
        raise FrameError("bad_value", f"expected a boolean, got {v!r}")
    return v


def _stream_names(symbols: list[str], channels: tuple[str, ...]) -> list[str]:
    names = []
    for s in symbols:
        for c in channels:
            names.append(f"{s.lower()}@depth@100ms" if c == "depth" else f"{s.lower()}@{c}")
    return names


class BinanceSpot(Venue):
    """Binance spot: ``wss://stream.binance.com:9443/stream?streams=...`` and ``/api/v3``."""

    name = "binance"
    key = "BINANCE"
    ws_url = "wss://stream.binance.com:9443"
    rest_url = "https://api.binance.com"
    # 1,024 streams per connection, 5 incoming messages/s, server pings every 20 s (docs, 2024+)
    limits = VenueLimits(max_streams_per_connection=1024, max_messages_per_second=5, max_connections=300,
                         ping_interval_s=20.0, stale_after_s=60.0)
    trade_ids_contiguous = True
    rest_prefix = "/api/v3"

    def __init__(self, channels: tuple[str, ...] = SPOT_CHANNELS) -> None:
        unknown = set(channels) - set(KNOWN_CHANNELS)
        if unknown:
            raise ValueError(f"{self.name}: unknown channels {sorted(unknown)}; known: {list(KNOWN_CHANNELS)}")
        self.channels = tuple(channels)

    def parser(self) -> BinanceParser:
        return BinanceParser(self.key)

    def connect_url(self, ws_base: str, symbols: list[str]) -> str:
        return f"{ws_base.rstrip('/')}/stream?streams=" + "/".join(_stream_names(symbols, self.channels))

    def streams_per_symbol(self) -> int:
        return len(self.channels)

    def trades_request(self, symbol: str, after_id: int, limit: int) -> tuple[str, dict]:
        return f"{self.rest_prefix}/aggTrades", {"symbol": symbol.upper(), "fromId": after_id + 1,
                                                  "limit": min(limit, self.max_backfill_per_request)}

    def parse_trades_response(self, symbol: str, body: bytes, out: FrameOutput) -> None:
        rows = orjson.loads(body)
        if not isinstance(rows, list):
            raise FrameError(MISSING_FIELD, f"aggTrades: expected a list, got {str(rows)[:120]}")
        market = market_key(self.key, symbol)
        for d in rows:
            out.trade(market, integer(d["T"]) * NS_PER_MS, number(d["p"]), number(d["q"]),
                      SELL if _flag(d["m"]) else BUY, integer(d["a"]))

    def book_snapshot_request(self, symbol: str) -> tuple[str, dict]:
        return f"{self.rest_prefix}/depth", {"symbol": symbol.upper(), "limit": 1000}

    @snapshot_parser
    def parse_book_snapshot(self, symbol: str, body: bytes) -> BookUpdate:
        d = load_object(body, "depth")
        if "lastUpdateId" not in d:
            raise FrameError(MISSING_FIELD, f"depth: no lastUpdateId in {str(d)[:80]!r}")
        seq = integer(d["lastUpdateId"])
        ts = integer(d.get("E", 0)) * NS_PER_MS  # spot sends no E: 0
        if seq < 0 or not 0 <= ts < MAX_I64:
            raise FrameError(BAD_VALUE, f"depth: lastUpdateId {seq} E {d.get('E')!r}")
        return BookUpdate(market=market_key(self.key, symbol), ts=ts, bids=book_levels(d["bids"], "bids"),
                          asks=book_levels(d["asks"], "asks"), snapshot=True, first_seq=seq, last_seq=seq)


class BinanceFutures(BinanceSpot):
    """Binance USD-M futures: ``wss://fstream.binance.com/stream`` and ``/fapi/v1``."""

    name = "binance_futures"
    key = "BINANCE_FUTURES"
    ws_url = "wss://fstream.binance.com"
    rest_url = "https://fapi.binance.com"
    # 200 streams per connection, 10 incoming messages/s (USD-M docs)
    limits = VenueLimits(max_streams_per_connection=200, max_messages_per_second=10, max_connections=300,
                         ping_interval_s=180.0, stale_after_s=60.0)
    rest_prefix = "/fapi/v1"

    def __init__(self, channels: tuple[str, ...] = FUTURES_CHANNELS) -> None:
        super().__init__(channels)
