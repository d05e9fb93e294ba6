"""Field readers for aggregator JSON rows: each either returns a clean value or raises :class:`RowError`
with a short reason, so one bad row is skipped and counted instead of failing the whole response."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.errors import InputError

# reason, detail -> None; the client counts reasons in its stats
Reject = Callable[[str, str], None]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


class RowError(InputError):
    """One row of a response cannot be used; ``reason`` is a short counter key such as ``missing:usd``."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def obj(row: Any, key: str, *, required: bool = True) -> Mapping[str, Any] | None:
    """The JSON object under ``key`` (None when absent/null and not required)."""
    value = row.get(key) if isinstance(row, Mapping) else None
    if value is None:
        if required:
            raise RowError(f"missing:{key}")
        return None
    if not isinstance(value, Mapping):
        raise RowError(f"not_object:{key}", repr(value)[:80])
    return value


def text(row: Mapping[str, Any], key: str) -> str:
    """A required non-empty string field."""
    value = row.get(key)
    if value is None or value == "":
        raise RowError(f"missing:{key}")
    if not isinstance(value, str):
        raise RowError(f"not_text:{key}", repr(value)[:80])
    return value


def number(row: Mapping[str, Any], key: str, *, required: bool = False, positive: bool = False) -> float | None:
    """A finite float from a JSON number or numeric string (DexScreener sends prices as strings)."""
    value = row.get(key)
    if value is None or value == "":
        if required:
            raise RowError(f"missing:{key}")
        return None
    # bool is an int subclass; True is never a price
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise RowError(f"not_numeric:{key}", repr(value)[:80])
    try:
        out = float(value)
    except ValueError:
        raise RowError(f"not_numeric:{key}", repr(value)[:80]) from None
    if not math.isfinite(out):
        raise RowError(f"not_finite:{key}", repr(value)[:80])
    if positive and out <= 0:
        raise RowError(f"not_positive:{key}", repr(value)[:80])
    return out


def epoch_s_ns(row: Mapping[str, Any], key: str) -> int | None:
    """Unix seconds under ``key`` as int nanoseconds, None when absent."""
    value = number(row, key, positive=True)
    return None if value is None else int(value) * 1_000_000_000


def iso_ns(row: Mapping[str, Any], key: str) -> int | None:
    """An ISO-8601 time such as ``2024-04-07T16:49:31.736Z`` as int nanoseconds UTC, None when absent."""
    value = row.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise RowError(f"not_time:{key}", repr(value)[:80])
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise RowError(f"not_time:{key}", value[:80]) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)  # the aggregators speak UTC
    # integer microseconds keep the value exact; a float timestamp would round it
    return (dt - _EPOCH) // _US * 1000
