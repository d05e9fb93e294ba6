"""What venue parsers produce: trades in columns, book updates and closed klines, plus counted rejects.

Parsers append to a :class:`FrameOutput`; a frame is all-or-nothing (a bad field anywhere in it
rolls back what the frame had appended) so a half-parsed frame never reaches the engine.
"""

from __future__ import annotations

from collections import Counter
from typing import Protocol

import numpy as np
import orjson

from schemas.batches import SIDE_BUY, SIDE_SELL, SIDE_UNKNOWN, TradeBatch
from schemas.records import BookUpdate, Candle, MarkPrice

NS_PER_MS = 1_000_000
INF = float("inf")
MAX_I64 = (1 << 63) - 1
BUY, SELL, UNKNOWN = SIDE_BUY, SIDE_SELL, SIDE_UNKNOWN

# Low-cardinality reject reasons (they become metric labels).
BAD_JSON = "bad_json"
MISSING_FIELD = "missing_field"
BAD_VALUE = "bad_value"
UNKNOWN_MESSAGE = "unknown_message"
VENUE_ERROR = "venue_error"


class FrameError(ValueError):
    """A frame a parser refuses, with one of the reject reasons above."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class FrameOutput:
    """Accumulates parsed records until drained; trades stay columnar (plain lists) for speed."""

    def __init__(self) -> None:
        self.market: list[str] = []
        self.ts: list[int] = []
        self.price: list[float] = []
        self.size: list[float] = []
        self.side: list[int] = []
        self.trade_id: list[int] = []
        self.books: list[BookUpdate] = []
        self.candles: list[Candle] = []  # bars the venue reports closed
        self.marks: list[MarkPrice] = []
        self.control: list[dict] = []  # venue control messages (subscription acks, heartbeats, errors)
        self.rejects: Counter[str] = Counter()
        self.frames = 0
        self.last_error = ""

    def trade(self, market: str, ts: int, price: float, size: float, side: int, trade_id: int) -> None:
        # comparisons also reject NaN; the bounds keep ids and ns timestamps inside int64
        if not (0.0 < price < INF and 0.0 < size < INF and 0 < ts < MAX_I64 and -MAX_I64 < trade_id < MAX_I64):
            raise FrameError(BAD_VALUE, f"trade price={price} size={size} ts={ts} id={trade_id}")
        self.market.append(market)
        self.ts.append(ts)
        self.price.append(price)
        self.size.append(size)
        self.side.append(side)
        self.trade_id.append(trade_id)

    @property
    def trade_count(self) -> int:
        return len(self.ts)

    def mark(self) -> tuple[int, int, int, int, int]:
        return len(self.ts), len(self.books), len(self.candles), len(self.control), len(self.marks)

    def rollback(self, mark: tuple[int, int, int, int, int]) -> None:
        n, b, c, k, m = mark
        for col in (self.market, self.ts, self.price, self.size, self.side, self.trade_id):
            del col[n:]
        del self.books[b:]
        del self.candles[c:]
        del self.control[k:]
        del self.marks[m:]

    def reject(self, reason: str, detail: str = "") -> None:
        self.rejects[reason] += 1
        self.last_error = f"{reason}: {detail}"[:300]

    def drain_trades(self) -> TradeBatch:
        """The trades appended so far as one batch (market dictionary in first-seen order); clears them."""
        if not self.ts:
            return TradeBatch.empty()
        lut: dict[str, int] = {}
        idx = np.fromiter((lut.setdefault(m, len(lut)) for m in self.market), np.int32, len(self.market))
        batch = TradeBatch(list(lut), idx, np.array(self.ts, np.int64), np.array(self.price, np.float64),
                           np.array(self.size, np.float64), np.array(self.side, np.int8),
                           np.array(self.trade_id, np.int64))
        for col in (self.market, self.ts, self.price, self.size, self.side, self.trade_id):
            col.clear()
        return batch

    def take_rows(self) -> list[tuple]:
        """The trades appended so far as rows ``(market, ts, price, size, side, id)``; clears them.

        Per frame this is far cheaper than building numpy arrays (``drain_trades``) for one or two trades.
        """
        rows = list(zip(self.market, self.ts, self.price, self.size, self.side, self.trade_id))
        for col in (self.market, self.ts, self.price, self.size, self.side, self.trade_id):
            col.clear()
        return rows

    def drain(self) -> tuple[TradeBatch, list[BookUpdate], list[Candle], list[MarkPrice], list[dict]]:
        out = self.drain_trades(), self.books, self.candles, self.marks, self.control
        self.books, self.candles, self.marks, self.control = [], [], [], []
        return out


class VenueParser(Protocol):
    """Turns one received WebSocket frame of a venue into records appended to ``out``."""

    venue: str

    def parse_message(self, msg, out: FrameOutput) -> None:
        """Parse one decoded JSON message; raise FrameError (or let KeyError/TypeError/... escape)."""


_EXPECTED = (KeyError, IndexError, TypeError, ValueError, AttributeError, OverflowError)


def parse_frame(parser: VenueParser, frame: str | bytes, out: FrameOutput) -> bool:
    """Decode and parse one frame; never raises. A refused frame is counted in ``out.rejects``."""
    out.frames += 1
    if frame in getattr(parser, "text_control", ()):  # plain-text replies such as OKX's "pong"
        out.control.append({"text": frame})
        return True
    mark = out.mark()
    try:
        msg = orjson.loads(frame)
    except orjson.JSONDecodeError as e:
        out.reject(BAD_JSON, str(e))
        return False
    try:
        parser.parse_message(msg, out)
        return True
    except FrameError as e:
        out.rollback(mark)
        out.reject(e.reason, str(e))
    except KeyError as e:
        out.rollback(mark)
        out.reject(MISSING_FIELD, f"{type(e).__name__}: {e}")
    except _EXPECTED as e:
        out.rollback(mark)
        out.reject(BAD_VALUE, f"{type(e).__name__}: {e}")
    except RecursionError as e:  # absurdly nested JSON
        out.rollback(mark)
        out.reject(BAD_VALUE, f"{type(e).__name__}")
    return False


def number(value) -> float:
    """A venue number (JSON number or decimal string) as a finite float."""
    if isinstance(value, bool):
        raise FrameError(BAD_VALUE, f"boolean where a number was expected: {value!r}")
    f = float(value)
    if f != f or f in (float("inf"), float("-inf")):
        raise FrameError(BAD_VALUE, f"not a finite number: {value!r}")
    return f


def integer(value) -> int:
    """A venue id or timestamp (JSON integer or digit string) as a Python int that fits int64."""
    if isinstance(value, bool) or isinstance(value, float):
        raise FrameError(BAD_VALUE, f"not an integer: {value!r}")
    i = int(value)
    if not -(1 << 63) <= i < (1 << 63):
        raise FrameError(BAD_VALUE, f"integer out of range: {value!r}")
    return i


def object_list(rows) -> list[dict]:
    """A JSON array of objects (a frame's ``data``), or a refused frame."""
    if not isinstance(rows, list):
        raise FrameError(BAD_VALUE, f"expected a list, got {type(rows).__name__}")
    for r in rows:
        if not isinstance(r, dict):
            raise FrameError(BAD_VALUE, f"expected an object, got {r!r}"[:120])
    return rows


def taker_side(value, buy: str, sell: str) -> int:
    """The aggressor side from a venue's own spelling of buy and sell."""
    if value == buy:
        return BUY
    if value == sell:
        return SELL
    raise FrameError(BAD_VALUE, f"side {value!r}")


def levels(rows) -> list[list[float]]:
    """Book levels ``[[price, size, ...], ...]`` as ``[[price, size]]`` floats; sizes >= 0, prices > 0."""
    out = []
    for row in rows:
        p, s = number(row[0]), number(row[1])
        if p <= 0 or s < 0:
            raise FrameError(BAD_VALUE, f"book level {row!r}")
        out.append([p, s])
    return out
