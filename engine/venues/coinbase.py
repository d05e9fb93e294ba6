"""Coinbase Exchange: WebSocket feed (``matches``, ``level2_batch``, ``heartbeat``) and the REST repair endpoints.

Wire facts used here (Coinbase Exchange docs): a ``match`` (and the ``last_match`` sent on subscribing)
names the MAKER order's ``side``, so the aggressor is the opposite side; ``trade_id`` is consecutive
per product; times are RFC 3339 with microseconds. ``level2`` sends one ``snapshot`` then ``l2update``
messages whose ``changes`` are ``[side, price, new size]`` (size 0 removes the level) with no sequence
number, so a book can only be checked by crossing and by the ``ticker``'s best bid/ask. Since 2023 the
unbatched ``level2`` channel needs authentication; ``level2_batch`` sends the same messages publicly.
REST ``/products/{id}/trades`` also reports the maker side and pages newest first.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import orjson

from engine.venues.frames import (
    BAD_VALUE,
    BUY,
    MISSING_FIELD,
    SELL,
    UNKNOWN_MESSAGE,
    VENUE_ERROR,
    FrameError,
    FrameOutput,
    integer,
    levels,
    number,
)
from engine.venues.snapshots import book_levels, snapshot_parser
from engine.venues.symbols import market_key
from engine.venues.venue import Venue, VenueLimits
from schemas.records import BookUpdate

CHANNELS = ("matches", "heartbeat")
BOOK_CHANNEL = "level2_batch"
KNOWN_CHANNELS = ("matches", "heartbeat", "level2_batch", "level2", "ticker")

# [0-9], not \d: \d also matches other scripts' digits, which int() would quietly accept
_ISO = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?"
                  r"(Z|[+-][0-9]{2}:[0-9]{2})")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)
# the aggressor is the taker, on the other side of the maker order the venue names
_TAKER_OF_MAKER = {"buy": SELL, "sell": BUY}


def iso_ns(value) -> int:
    """An RFC 3339 UTC time (``2021-04-17T16:43:30.244075Z``, up to 9 fraction digits) as exact int ns."""
    if type(value) is not str:
        raise FrameError(BAD_VALUE, f"time is not a string: {value!r}")
    m = _ISO.fullmatch(value)
    if m is None:
        raise FrameError(BAD_VALUE, f"not an RFC 3339 time: {value[:40]!r}")
    y, mo, d, h, mi, s, frac, tz = m.groups()
    # datetime validates the calendar (month 13, Feb 30, hour 24 raise ValueError); integer maths
    # from there on, so microseconds never pass through a float
    secs = (datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), tzinfo=UTC) - _EPOCH) // _SECOND
    if tz != "Z":
        offset = int(tz[1:3]) * 3600 + int(tz[4:6]) * 60
        secs -= offset if tz[0] == "+" else -offset
    return secs * 1_000_000_000 + (int(frac.ljust(9, "0")) if frac else 0)


def _list(d: dict, key: str) -> list:
    v = d[key]
    if not isinstance(v, list):
        raise FrameError(BAD_VALUE, f"{key} is not a list")
    return v


class CoinbaseParser:
    """Parses Coinbase Exchange feed messages (and Advanced Trade ``market_trades``) into trades and books."""

    def __init__(self, key: str = "COINBASE") -> None:
        self.venue = key
        self._markets: dict[str, str] = {}
        self._handlers = {"match": self._match, "last_match": self._match, "snapshot": self._snapshot,
                          "l2update": self._l2update, "ticker": _ignore, "heartbeat": _control,
                          "subscriptions": _control, "error": _error}

    def _market(self, product: str) -> str:
        m = self._markets.get(product)
        if m is None:
            if not isinstance(product, str) or not product:
                raise FrameError(BAD_VALUE, f"product_id {product!r}")
            m = self._markets[product] = market_key(self.venue, product)
        return m

    def parse_message(self, msg, out: FrameOutput) -> None:
        if not isinstance(msg, dict):
            raise FrameError(UNKNOWN_MESSAGE, f"not an object: {type(msg).__name__}")
        kind = msg.get("type")
        if kind is None and "channel" in msg:
            self._advanced(msg, out)
            return
        handler = self._handlers.get(kind) if isinstance(kind, str) else None
        if handler is None:
            raise FrameError(UNKNOWN_MESSAGE, f"type {kind!r}")
        handler(msg, out)

    def _match(self, d: dict, out: FrameOutput) -> None:
        side = _TAKER_OF_MAKER.get(d["side"]) if isinstance(d["side"], str) else None
        if side is None:
            raise FrameError(BAD_VALUE, f"maker side {d['side']!r}")
        out.trade(self._market(d["product_id"]), iso_ns(d["time"]), number(d["price"]), number(d["size"]), side,
                  integer(d["trade_id"]))

    def _snapshot(self, d: dict, out: FrameOutput) -> None:
        # the feed's snapshot carries no sequence: the book rule for Coinbase is "none"
        ts = iso_ns(d["time"]) if d.get("time") is not None else 0
        out.books.append(BookUpdate(market=self._market(d["product_id"]), ts=ts, bids=levels(_list(d, "bids")),
                                    asks=levels(_list(d, "asks")), snapshot=True))

    def _l2update(self, d: dict, out: FrameOutput) -> None:
        bids, asks = [], []
        for change in _list(d, "changes"):
            side = change[0]
            if side == "buy":
                bids.append(change[1:3])
            elif side == "sell":
                asks.append(change[1:3])
            else:
                raise FrameError(BAD_VALUE, f"l2update side {side!r}")
        out.books.append(BookUpdate(market=self._market(d["product_id"]), ts=iso_ns(d["time"]), bids=levels(bids),
                                    asks=levels(asks)))

    def _advanced(self, msg: dict, out: FrameOutput) -> None:
        """Advanced Trade (``advanced-trade-ws.coinbase.com``) messages: trades; other channels accepted."""
        channel = msg["channel"]
        if channel == "market_trades":
            for event in _list(msg, "events"):
                for t in _list(event, "trades"):
                    # Assumption: ``side`` is the maker side, as on the Exchange feed and REST. Coinbase's
                    # Advanced Trade docs only say "BUY or SELL"; NautilusTrader's adapter (the source of
                    # our fixture) changed its reading to "maker side, aggressor opposite". Not yet checked
                    # against a live capture.
                    side = _TAKER_OF_MAKER.get(t["side"].lower()) if isinstance(t["side"], str) else None
                    if side is None:
                        raise FrameError(BAD_VALUE, f"market_trades side {t['side']!r}")
                    out.trade(self._market(t["product_id"]), iso_ns(t["time"]), number(t["price"]),
                              number(t["size"]), side, integer(t["trade_id"]))
        elif channel in ("subscriptions", "heartbeats"):
            out.control.append(msg)
        elif channel in ("ticker", "ticker_batch", "candles", "status"):
            return
        else:
            raise FrameError(UNKNOWN_MESSAGE, f"channel {channel!r}")


def _ignore(d: dict, out: FrameOutput) -> None:
    """Messages the engine does not use (tickers): accepted, produce nothing."""


def _control(d: dict, out: FrameOutput) -> None:
    out.control.append(d)


def _error(d: dict, out: FrameOutput) -> None:
    # a refused frame is rolled back, control included: the venue's words travel in the reject detail
    raise FrameError(VENUE_ERROR, f"{d.get('message')}: {d.get('reason')}")


class Coinbase(Venue):
    """Coinbase Exchange: ``wss://ws-feed.exchange.coinbase.com`` and ``https://api.exchange.coinbase.com``."""

    name = "coinbase"
    key = "COINBASE"
    ws_url = "wss://ws-feed.exchange.coinbase.com"
    rest_url = "https://api.exchange.coinbase.com"
    # Client messages: 8/s per IP (bursts to 20) per the Exchange WebSocket rate limits. No product limit
    # per connection is published: 100 product-channels is our own choice. The server sends no
    # pings we must answer; the heartbeat channel (1 message/s per product) keeps quiet markets alive,
    # so silence for 30 s really means a stale connection.
    limits = VenueLimits(max_streams_per_connection=100, max_messages_per_second=8, max_connections=50,
                         ping_interval_s=30.0, stale_after_s=30.0)
    trade_ids_contiguous = True
    max_backfill_per_request = 1000  # REST trades: limit <= 1000

    def __init__(self, channels: tuple[str, ...] = CHANNELS) -> None:
        unknown = set(channels) - set(KNOWN_CHANNELS)
        if unknown:
            raise ValueError(f"{self.name}: unknown channels {sorted(unknown)}; known: {list(KNOWN_CHANNELS)}")
        self.channels = tuple(channels)

    def parser(self) -> CoinbaseParser:
        return CoinbaseParser(self.key)

    def streams_per_symbol(self) -> int:
        return len(self.channels)

    def subscribe_frames(self, symbols: list[str]) -> list[str]:
        frame = {"type": "subscribe", "product_ids": [s.upper() for s in symbols], "channels": list(self.channels)}
        return [orjson.dumps(frame).decode()]

    def trades_request(self, symbol: str, after_id: int, limit: int) -> tuple[str, dict]:
        """REST pages newest first and ``after=N`` returns ids < N: so ``after = after_id + limit + 1`` asks
        for ids ``after_id+1 .. after_id+limit``. Near the newest trade the page also holds ids <= after_id,
        which the sequencer drops as duplicates."""
        limit = max(1, min(limit, self.max_backfill_per_request))
        return f"/products/{symbol.upper()}/trades", {"after": after_id + limit + 1, "limit": limit}

    def parse_trades_response(self, symbol: str, body: bytes, out: FrameOutput) -> None:
        rows = orjson.loads(body)
        if not isinstance(rows, list):
            raise FrameError(MISSING_FIELD, f"trades: expected a list, got {str(rows)[:120]}")
        market = market_key(self.key, symbol.upper())
        parsed = []
        for d in rows:
            side = _TAKER_OF_MAKER.get(d["side"]) if isinstance(d["side"], str) else None
            if side is None:
                raise FrameError(BAD_VALUE, f"maker side {d['side']!r}")
            parsed.append((integer(d["trade_id"]), iso_ns(d["time"]), number(d["price"]), number(d["size"]), side))
        for tid, ts, price, size, side in sorted(parsed):  # newest-first page -> oldest first
            out.trade(market, ts, price, size, side, tid)

    def book_snapshot_request(self, symbol: str) -> tuple[str, dict]:
        return f"/products/{symbol.upper()}/book", {"level": 2}

    @snapshot_parser
    def parse_book_snapshot(self, symbol: str, body: bytes) -> BookUpdate:
        d = orjson.loads(body)
        if not isinstance(d, dict):
            raise FrameError(MISSING_FIELD, f"book: expected an object, got {str(d)[:120]}")
        seq = integer(d["sequence"])
        if seq < 0:
            raise FrameError(BAD_VALUE, f"book: sequence {seq}")
        ts = iso_ns(d["time"]) if d.get("time") is not None else 0
        # level 2 rows are [price, size, num_orders]; book_levels() keeps price and size
        return BookUpdate(market=market_key(self.key, symbol.upper()), ts=ts, bids=book_levels(d["bids"], "bids"),
                          asks=book_levels(d["asks"], "asks"), snapshot=True, first_seq=seq, last_seq=seq)
