"""Guards shared by the venues' REST book-snapshot parsers: a malformed body is a :class:`FrameError`.

A snapshot body comes from a REST call the supervisor makes while a book is out of sync; whatever is
wrong with it (not JSON, a list or a string where an object belongs, a missing field, a price that is
not a number, a number too large for any type) must come back as one refused snapshot with a reason,
never as an arbitrary exception from deep inside a parser.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable

import orjson

from engine.venues.frames import BAD_JSON, BAD_VALUE, MISSING_FIELD, FrameError, levels
from schemas.records import BookUpdate

# what odd input makes plain Python parsing code raise (decimal errors are ArithmeticErrors)
INPUT_ERRORS = (KeyError, IndexError, TypeError, ValueError, AttributeError, ArithmeticError, RecursionError)


def _short(e: BaseException) -> str:
    return " ".join(f"{type(e).__name__}: {e}".split())[:200]


def snapshot_parser(fn: Callable[..., BookUpdate]) -> Callable[..., BookUpdate]:
    """Wraps a ``parse_book_snapshot(self, symbol, body)``: input errors become FrameErrors, and a
    result that is not a snapshot, or a crossed book, is refused too."""

    @functools.wraps(fn)
    def wrapper(self, symbol: str, body: bytes) -> BookUpdate:
        try:
            snap = fn(self, symbol, body)
        except FrameError:
            raise
        except (orjson.JSONDecodeError, json.JSONDecodeError, UnicodeError) as e:
            raise FrameError(BAD_JSON, f"snapshot body: {_short(e)}") from e
        except KeyError as e:
            raise FrameError(MISSING_FIELD, f"snapshot has no {e.args[0]!r}" if e.args else "snapshot field") from e
        except INPUT_ERRORS as e:
            raise FrameError(BAD_VALUE, f"snapshot: {_short(e)}") from e
        if not isinstance(snap, BookUpdate) or not snap.snapshot:
            raise FrameError(BAD_VALUE, "snapshot parser returned no snapshot")
        if snap.bids and snap.asks:
            bid, ask = max(p for p, _ in snap.bids), min(p for p, _ in snap.asks)
            if bid >= ask:
                raise FrameError(BAD_VALUE, f"crossed snapshot: best bid {bid:g} >= best ask {ask:g}")
        return snap

    return wrapper


def load_object(body: bytes, what: str = "snapshot") -> dict:
    """A REST body that must be one JSON object."""
    try:
        d = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise FrameError(BAD_JSON, f"{what}: {_short(e)}") from e
    if not isinstance(d, dict):
        raise FrameError(BAD_VALUE, f"{what}: expected an object, got {type(d).__name__} {str(d)[:80]!r}")
    return d


def book_levels(rows, what: str) -> list[list[float]]:
    """``[[price, size, ...], ...]`` of a snapshot side; a row that is not a list of >= 2 values is refused
    (a bare string row such as ``"12"`` would otherwise read as price 1, size 2)."""
    if not isinstance(rows, list):
        raise FrameError(BAD_VALUE, f"{what}: expected a list, got {type(rows).__name__}")
    for row in rows:
        if not isinstance(row, list) or len(row) < 2:
            raise FrameError(BAD_VALUE, f"{what}: level {str(row)[:60]!r} is not [price, size, ...]")
    return levels(rows)
