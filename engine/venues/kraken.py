"""Kraken spot: WebSocket v1 (``trade``, ``book-N`` with its CRC32 checksum), v2 trades, and REST repairs.

Wire facts used here (Kraken WebSocket v1 docs): data messages are arrays
``[channelID, payload..., channelName, pair]``; a trade row is ``[price, volume, time, side, orderType,
misc]`` with ``side`` the taker's ("b"/"s") and no trade id; a book snapshot is ``{"as": [...], "bs": [...]}``,
an update one or two dicts ``{"a": [...]}`` / ``{"b": [...]}`` with the checksum ``"c"`` in the last;
levels are ``[price, volume, timestamp]`` strings (a 4th element "r" marks a republished level) and
volume 0 removes the price. After each update the book is cut to the subscribed depth, and ``c`` is the
CRC32 of the top 10 asks then top 10 bids, each price and volume as sent with the "." removed and
leading zeros stripped: hence :class:`KrakenBook` keeps the strings. v2 trades carry ids and the taker side.
"""

from __future__ import annotations

import bisect
import json
import re
import zlib

import orjson

from engine.venues.book import L2Book
from engine.venues.coinbase import iso_ns
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

CHANNELS = ("trade",)
KNOWN_CHANNELS = ("trade", "book")
BOOK_DEPTHS = (10, 25, 100, 500, 1000)  # the depths Kraken v1 accepts
CHECKSUM_LEVELS = 10

_DECIMAL = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_SECONDS = re.compile(r"([0-9]+)(?:\.([0-9]{1,9}))?")
_TAKER = {"b": BUY, "s": SELL, "buy": BUY, "sell": SELL}


def seconds_ns(text: str) -> int:
    """Decimal seconds as Kraken writes them (``"1618678123.481570"``) as exact int ns, no float rounding."""
    m = _SECONDS.fullmatch(text) if type(text) is str else None
    if m is None:
        raise FrameError(BAD_VALUE, f"not decimal seconds: {str(text)[:40]!r}")
    whole, frac = m.groups()
    return int(whole) * 1_000_000_000 + (int(frac.ljust(9, "0")) if frac else 0)


def _digits(text: str) -> str:
    return text.replace(".", "").lstrip("0")


def checksum_of(asks: list[tuple[str, str]], bids: list[tuple[str, str]]) -> int:
    """Kraken's CRC32 of (price, volume) strings: best 10 asks ascending, then best 10 bids descending."""
    return zlib.crc32("".join(_digits(p) + _digits(v) for p, v in asks + bids).encode())


def kraken_checksum(book: L2Book, price_decimals: int, volume_decimals: int = 8) -> int:
    """The checksum of an :class:`L2Book`; floats are written back with the pair's fixed decimals (v1 sends
    prices with the pair's ``pair_decimals`` and volumes with 8), which must be given: the float alone
    cannot tell "0.000022900" from "0.0000229"."""
    bids, asks = book.top(CHECKSUM_LEVELS)
    return checksum_of(_written(asks, price_decimals, volume_decimals), _written(bids, price_decimals, volume_decimals))


def _written(rows, price_decimals: int, volume_decimals: int) -> list[tuple[str, str]]:
    return [(f"{p:.{price_decimals}f}", f"{v:.{volume_decimals}f}") for p, v in rows]


class KrakenBook:
    """One pair's book as Kraken sent it (price and volume strings kept for the checksum), cut to ``depth``."""

    def __init__(self, depth: int) -> None:
        self.depth = depth
        self.asks: dict[float, tuple[str, str]] = {}
        self.bids: dict[float, tuple[str, str]] = {}
        self._ask_prices: list[float] = []  # ascending: best ask first
        self._bid_prices: list[float] = []  # ascending: best bid last

    def reset(self, asks: list[tuple], bids: list[tuple]) -> None:
        """Replace the book with snapshot rows ``(price, price_str, volume, volume_str)``."""
        self.asks, self.bids, self._ask_prices, self._bid_prices = {}, {}, [], []
        self.apply(asks, bids)

    def apply(self, asks: list[tuple], bids: list[tuple]) -> tuple[list[float], list[float]]:
        """Apply update rows in order, then cut to depth; returns the prices cut off (asks, bids)."""
        for rows, levels_, prices in ((asks, self.asks, self._ask_prices), (bids, self.bids, self._bid_prices)):
            for p, p_str, v, v_str in rows:
                known = p in levels_
                if v > 0:
                    levels_[p] = (p_str, v_str)
                    if not known:
                        bisect.insort(prices, p)
                elif known:
                    del levels_[p]
                    del prices[bisect.bisect_left(prices, p)]
        cut_asks = self._ask_prices[self.depth:]  # the worst asks are the highest
        del self._ask_prices[self.depth:]
        cut_bids = self._bid_prices[:max(0, len(self._bid_prices) - self.depth)]  # the worst bids are the lowest
        del self._bid_prices[:len(cut_bids)]
        for p in cut_asks:
            del self.asks[p]
        for p in cut_bids:
            del self.bids[p]
        return cut_asks, cut_bids

    def top(self, n: int = CHECKSUM_LEVELS) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """Best ``n`` asks (ascending) and bids (descending) as the venue's strings."""
        return ([self.asks[p] for p in self._ask_prices[:n]],
                [self.bids[p] for p in reversed(self._bid_prices[-n:])] if n else [])

    def checksum(self) -> int:
        return checksum_of(*self.top(CHECKSUM_LEVELS))


def _v1_levels(rows) -> tuple[list[tuple], int]:
    """Validated v1 level rows as ``(price, price_str, volume, volume_str)`` and their latest time (ns)."""
    if not isinstance(rows, list):
        raise FrameError(BAD_VALUE, "book levels are not a list")
    out, latest = [], 0
    for row in rows:
        p_str, v_str = row[0], row[1]
        # the checksum is computed from these strings: only plain decimals have one agreed digit form
        if type(p_str) is not str or type(v_str) is not str or not _DECIMAL.fullmatch(p_str) \
                or not _DECIMAL.fullmatch(v_str):
            raise FrameError(BAD_VALUE, f"book level {str(row)[:80]}")
        p, v = number(p_str), number(v_str)
        if p <= 0:
            raise FrameError(BAD_VALUE, f"book price {p_str!r}")
        latest = max(latest, seconds_ns(row[2]))
        out.append((p, p_str, v, v_str))
    return out, latest


def _checksum_value(c) -> int:
    value = integer(c)
    if not 0 <= value < 1 << 32:
        raise FrameError(BAD_VALUE, f"checksum {c!r}")
    return value


class KrakenParser:
    """Parses Kraken WebSocket v1 arrays (and v2 trade/book objects) into trades and checked books.

    It keeps a :class:`KrakenBook` per subscribed book so each update's checksum is verified; a mismatch
    is counted in ``checksum_mismatches`` and reported as a control message (the book needs a resubscribe).
    """

    def __init__(self, key: str = "KRAKEN") -> None:
        self.venue = key
        self._markets: dict[str, str] = {}
        self.books: dict[tuple[str, int], KrakenBook] = {}  # (market, depth) -> book
        self.checksums_verified = 0
        self.checksum_mismatches = 0

    def _market(self, pair: str) -> str:
        m = self._markets.get(pair)
        if m is None:
            if not isinstance(pair, str) or not pair:
                raise FrameError(BAD_VALUE, f"pair {pair!r}")
            m = self._markets[pair] = market_key(self.venue, pair)
        return m

    def parse_message(self, msg, out: FrameOutput) -> None:
        if isinstance(msg, list):
            self._v1_data(msg, out)
        elif not isinstance(msg, dict):
            raise FrameError(UNKNOWN_MESSAGE, f"not an array or object: {type(msg).__name__}")
        elif "event" in msg:
            self._event(msg, out)
        elif "channel" in msg:
            self._v2(msg, out)
        elif "method" in msg:  # v2 reply to subscribe/unsubscribe/ping
            if msg.get("success") is False:
                raise FrameError(VENUE_ERROR, f"{msg.get('method')}: {msg.get('error')}")
            out.control.append(msg)
        else:
            raise FrameError(UNKNOWN_MESSAGE, "no event, channel or method")

    # ---- v1 ---------------------------------------------------------------------------------
    def _event(self, msg: dict, out: FrameOutput) -> None:
        event = msg["event"]
        if event in ("heartbeat", "systemStatus", "pong"):
            out.control.append(msg)
        elif event == "subscriptionStatus":
            # a refused frame is rolled back, control included: the venue's words travel in the reject detail
            if msg.get("status") == "error":
                raise FrameError(VENUE_ERROR, f"{msg.get('pair')}: {msg.get('errorMessage')}")
            out.control.append(msg)
        elif event == "error":
            raise FrameError(VENUE_ERROR, str(msg.get("errorMessage")))
        else:
            raise FrameError(UNKNOWN_MESSAGE, f"event {event!r}")

    def _v1_data(self, msg: list, out: FrameOutput) -> None:
        if len(msg) < 4 or type(msg[-2]) is not str:
            raise FrameError(BAD_VALUE, f"data array of length {len(msg)}")
        channel, pair, payload = msg[-2], msg[-1], msg[1:-2]
        if channel == "trade":
            if len(payload) != 1 or not isinstance(payload[0], list):
                raise FrameError(BAD_VALUE, "trade payload is not one list")
            market = self._market(pair)
            for row in payload[0]:
                side = _TAKER.get(row[3]) if type(row[3]) is str else None
                if side is None:
                    raise FrameError(BAD_VALUE, f"trade side {row[3]!r}")
                out.trade(market, seconds_ns(row[2]), number(row[0]), number(row[1]), side, -1)
        elif channel.startswith("book-"):
            depth = int(channel[5:])
            if depth <= 0:
                raise FrameError(BAD_VALUE, f"channel {channel!r}")
            if not payload or not all(isinstance(p, dict) for p in payload):
                raise FrameError(BAD_VALUE, "book payload is not objects")
            if "as" in payload[0] or "bs" in payload[0]:
                self._v1_snapshot(payload[0], self._market(pair), depth, out)
            else:
                self._v1_update(payload, self._market(pair), depth, out)
        elif channel in ("spread", "ticker") or channel.startswith("ohlc-"):
            return
        else:
            raise FrameError(UNKNOWN_MESSAGE, f"channel {channel!r}")

    def _v1_snapshot(self, d: dict, market: str, depth: int, out: FrameOutput) -> None:
        asks, t_a = _v1_levels(d.get("as", []))
        bids, t_b = _v1_levels(d.get("bs", []))
        # validated: from here on nothing raises, so the kept book and the output agree
        book = self.books.get((market, depth))
        if book is None:
            book = self.books[(market, depth)] = KrakenBook(depth)
        book.reset(asks, bids)
        out.books.append(BookUpdate(market=market, ts=max(t_a, t_b), bids=[[r[0], r[2]] for r in bids],
                                    asks=[[r[0], r[2]] for r in asks], snapshot=True))

    def _v1_update(self, payload: list, market: str, depth: int, out: FrameOutput) -> None:
        asks, bids, checksum, latest = [], [], None, 0
        for d in payload:
            if "a" in d:
                rows, t = _v1_levels(d["a"])
                asks += rows
                latest = max(latest, t)
            if "b" in d:
                rows, t = _v1_levels(d["b"])
                bids += rows
                latest = max(latest, t)
            if "c" in d:
                checksum = _checksum_value(d["c"])
        if not asks and not bids:
            raise FrameError(MISSING_FIELD, "book update without a or b levels")
        cut_asks: list[float] = []
        cut_bids: list[float] = []
        book = self.books.get((market, depth))
        if book is not None:  # an update before any snapshot cannot be checked or cut
            cut_asks, cut_bids = book.apply(asks, bids)
            if checksum is not None:
                computed = book.checksum()
                if computed == checksum:
                    self.checksums_verified += 1
                else:
                    self.checksum_mismatches += 1
                    out.control.append({"event": "checksumMismatch", "market": market, "depth": depth,
                                        "expected": checksum, "computed": computed})
        # levels cut off by the depth rule go out as removals, so a plain L2Book stays the venue's book
        out.books.append(BookUpdate(
            market=market, ts=latest, bids=[[r[0], r[2]] for r in bids] + [[p, 0.0] for p in cut_bids],
            asks=[[r[0], r[2]] for r in asks] + [[p, 0.0] for p in cut_asks], checksum=checksum))

    # ---- v2 ---------------------------------------------------------------------------------
    def _v2(self, msg: dict, out: FrameOutput) -> None:
        channel = msg["channel"]
        if channel == "trade":
            data = msg["data"]
            if not isinstance(data, list):
                raise FrameError(BAD_VALUE, "data is not a list")
            # snapshot (the last trades, sent on subscribing) and update rows are both real trades; ids
            # let downstream drop the ones it already has
            for t in data:
                side = _TAKER.get(t["side"]) if type(t["side"]) is str else None
                if side is None:
                    raise FrameError(BAD_VALUE, f"trade side {t['side']!r}")
                out.trade(self._market(t["symbol"]), iso_ns(t["timestamp"]), number(t["price"]), number(t["qty"]),
                          side, integer(t["trade_id"]))
        elif channel == "book":
            # v2 checksums format the numbers with the pair's precision, which the message does not carry:
            # they are passed on, not verified here
            snapshot = msg["type"] == "snapshot"
            for b in msg["data"]:
                ts = iso_ns(b["timestamp"]) if b.get("timestamp") is not None else 0
                out.books.append(BookUpdate(
                    market=self._market(b["symbol"]), ts=ts, bids=levels([(r["price"], r["qty"]) for r in b["bids"]]),
                    asks=levels([(r["price"], r["qty"]) for r in b["asks"]]), snapshot=snapshot,
                    checksum=_checksum_value(b["checksum"]) if b.get("checksum") is not None else None))
        elif channel in ("heartbeat", "status"):
            out.control.append(msg)
        elif channel in ("ticker", "ohlc", "instrument"):
            return
        else:
            raise FrameError(UNKNOWN_MESSAGE, f"channel {channel!r}")


def rest_pair(symbol: str) -> str:
    """REST name of a WebSocket pair: ``XBT/USD`` -> ``XBTUSD`` (Kraken's altname)."""
    return symbol.upper().replace("/", "")


def _loads_exact(body: bytes):
    # REST sends trade times as JSON numbers; keeping their text (parse_float=str) keeps the ns exact.
    # orjson first: it refuses JSON nested deeper than 1024 levels, which the standard parser would
    # follow into a C stack overflow (a crash, not an error) when the recursion limit has been raised
    orjson.loads(body)
    return json.loads(body, parse_float=str)


def _result(d) -> dict:
    if not isinstance(d, dict):
        raise FrameError(MISSING_FIELD, f"expected an object, got {str(d)[:120]}")
    if d.get("error"):
        raise FrameError(VENUE_ERROR, str(d["error"])[:200])
    result = d["result"]
    if not isinstance(result, dict):
        raise FrameError(BAD_VALUE, "result is not an object")
    return result


class Kraken(Venue):
    """Kraken spot: ``wss://ws.kraken.com`` (v1) and ``https://api.kraken.com/0/public``."""

    name = "kraken"
    key = "KRAKEN"
    ws_url = "wss://ws.kraken.com"
    rest_url = "https://api.kraken.com"
    # Kraken publishes no per-connection pair limit or client message rate for public v1 feeds: these are
    # conservative choices. The server sends a heartbeat each second without data, so 30 s of silence
    # is a stale connection; an app-level {"event": "ping"} keeps intermediaries from closing idle links.
    limits = VenueLimits(max_streams_per_connection=100, max_messages_per_second=5, max_connections=20,
                         ping_interval_s=30.0, stale_after_s=30.0)
    trade_ids_contiguous = False  # v1 trades carry no id
    max_backfill_per_request = 1000  # REST Trades: count <= 1000

    def __init__(self, channels: tuple[str, ...] = CHANNELS, book_depth: int = 100) -> None:
        unknown = set(channels) - set(KNOWN_CHANNELS)
        if unknown:
            raise ValueError(f"{self.name}: unknown channels {sorted(unknown)}; known: {list(KNOWN_CHANNELS)}")
        if book_depth not in BOOK_DEPTHS:
            raise ValueError(f"{self.name}: book depth must be one of {BOOK_DEPTHS}, got {book_depth}")
        self.channels = tuple(channels)
        self.book_depth = book_depth

    def parser(self) -> KrakenParser:
        return KrakenParser(self.key)

    def streams_per_symbol(self) -> int:
        return len(self.channels)

    def subscribe_frames(self, symbols: list[str]) -> list[str]:
        pairs = [s.upper() for s in symbols]
        frames = []
        for c in self.channels:
            sub = {"name": "book", "depth": self.book_depth} if c == "book" else {"name": c}
            frames.append(orjson.dumps({"event": "subscribe", "pair": pairs, "subscription": sub}).decode())
        return frames

    def ping_frame(self) -> str:
        return '{"event":"ping"}'

    def trades_request(self, symbol: str, after_id: int, limit: int) -> tuple[str, dict]:
        """Kraken pages trades by time, not id: ``after_id`` is taken as the ``since`` cursor, a ns timestamp
        (the ``last`` of a previous response); a negative one asks for the latest trades."""
        params = {"pair": rest_pair(symbol), "count": max(1, min(limit, self.max_backfill_per_request))}
        if after_id >= 0:
            params["since"] = after_id
        return "/0/public/Trades", params

    def parse_trades_response(self, symbol: str, body: bytes, out: FrameOutput) -> None:
        result = _result(_loads_exact(body))
        tables = [v for k, v in result.items() if k != "last"]
        if len(tables) != 1 or not isinstance(tables[0], list):
            raise FrameError(MISSING_FIELD, f"Trades: expected one pair's rows, got keys {list(result)[:5]}")
        market = market_key(self.key, symbol.upper())
        for row in tables[0]:  # [price, volume, time, side, type, misc, trade_id]; oldest first
            side = _TAKER.get(row[3]) if type(row[3]) is str else None
            if side is None:
                raise FrameError(BAD_VALUE, f"trade side {row[3]!r}")
            when = row[2] if type(row[2]) is str else str(integer(row[2]))
            out.trade(market, seconds_ns(when), number(row[0]), number(row[1]), side,
                      integer(row[6]) if len(row) > 6 else -1)

    def book_snapshot_request(self, symbol: str) -> tuple[str, dict]:
        return "/0/public/Depth", {"pair": rest_pair(symbol), "count": 500}

    @snapshot_parser
    def parse_book_snapshot(self, symbol: str, body: bytes) -> BookUpdate:
        result = _result(_loads_exact(body))
        if len(result) != 1:
            raise FrameError(MISSING_FIELD, f"Depth: expected one pair, got keys {list(result)[:5]}")
        d = next(iter(result.values()))
        if not isinstance(d, dict):
            raise FrameError(BAD_VALUE, f"Depth: the pair's book is a {type(d).__name__}, not an object")
        bids, asks = book_levels(d["bids"], "bids"), book_levels(d["asks"], "asks")
        rows = d["asks"] + d["bids"]
        ts = max((seconds_ns(r[2] if type(r[2]) is str else str(integer(r[2]))) for r in rows), default=0)
        # Depth has no sequence that WebSocket updates could chain onto: use it alone, not with v1 diffs
        return BookUpdate(market=market_key(self.key, symbol.upper()), ts=ts, bids=bids, asks=asks, snapshot=True)
