"""Any timestamp column (epoch s/ms/us/ns, ISO strings, Arrow timestamps) to int64 ns UTC.

Unparsable values become ``NO_TS`` so the validator can count them; nothing here raises for a
bad row. A column of epoch numbers has one unit, detected from the magnitude of its median.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.validation import NO_TS
from schemas.errors import InputError

_UNIT_NS = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}
_NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
_ISO = (r"^(?P<y>\d{4})-(?P<mo>\d{1,2})-(?P<d>\d{1,2})"
        r"(?:[T ](?P<h>\d{1,2}):(?P<mi>\d{2})(?::(?P<s>\d{2})(?:[.,](?P<f>\d{1,9})\d*)?)?)?"
        r"\s*(?P<tz>Z|z|UTC|[+-]\d{2}(?::?\d{2})?)?$")
_MAX_NS = np.iinfo(np.int64).max


def epoch_unit(values: np.ndarray) -> str:
    """Unit of epoch numbers by magnitude: ~1e9 s, ~1e12 ms, ~1e15 us, ~1e18 ns (dates 1973-2286)."""
    finite = np.abs(values[np.isfinite(values)]) if values.dtype.kind == "f" else np.abs(values)
    if not len(finite):
        return "ns"
    mag = float(np.median(finite))
    return "s" if mag < 1e11 else "ms" if mag < 1e14 else "us" if mag < 1e17 else "ns"


def to_ns(col: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Int64 ns since the epoch, UTC (naive values are taken as UTC); ``NO_TS`` where unparsable."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    t = col.type
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        try:
            ns = col.cast(pa.timestamp("ns", tz=getattr(t, "tz", None))).cast(pa.int64())
        except pa.ArrowInvalid as e:
            raise InputError(f"timestamps outside the years 1677-2262 cannot be held in ns: {e}") from e
        return ns.fill_null(NO_TS).to_numpy(zero_copy_only=False).astype(np.int64)
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return _epoch_to_ns(col)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return _strings_to_ns(col)
    if pa.types.is_null(t):
        return np.full(len(col), NO_TS, np.int64)
    raise InputError(f"a timestamp column of type {t} is not supported: use epoch numbers, ISO strings or "
                     "Arrow timestamps")


def _epoch_to_ns(col: pa.Array, unit: str | None = None) -> np.ndarray:
    if pa.types.is_integer(col.type):
        ok = col.is_valid().to_numpy(zero_copy_only=False)
        v = col.fill_null(0).cast(pa.int64()).to_numpy(zero_copy_only=False)
        unit = unit or epoch_unit(v[ok])
        mult = _UNIT_NS[unit]
        ok &= np.abs(v) <= _MAX_NS // mult  # would overflow int64 ns
        return np.where(ok, v * mult, NO_TS)
    v = col.cast(pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False)
    unit = unit or epoch_unit(v)
    mult = _UNIT_NS[unit]
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(v) & (np.abs(v) < _MAX_NS / mult)
    # whole and fractional parts apart: v * 1e9 alone would round 1.7e18 ns to a multiple of 256
    whole = np.floor(np.where(ok, v, 0.0))
    ns = whole.astype(np.int64) * mult + np.round((np.where(ok, v, 0.0) - whole) * mult).astype(np.int64)
    return np.where(ok, ns, NO_TS)


def _strings_to_ns(col: pa.Array) -> np.ndarray:
    s = pc.utf8_trim_whitespace(col)
    out = np.full(len(s), NO_TS, np.int64)
    numeric = pc.fill_null(pc.match_substring_regex(s, _NUMBER), False).to_numpy(zero_copy_only=False)
    if numeric.any():
        nums = pc.filter(s, pa.array(numeric))
        integral = pc.match_substring_regex(nums, r"^[+-]?\d{1,18}$").to_numpy(zero_copy_only=False)
        values = (pc.cast(nums, pa.int64()) if integral.all() else pc.cast(nums, pa.float64()))
        out[numeric] = _epoch_to_ns(values)
    rest = ~numeric
    if rest.any():
        out[rest] = _iso_to_ns(pc.filter(s, pa.array(rest)))
    return out


def _iso_to_ns(s: pa.Array) -> np.ndarray:
    """ISO 8601 / ``YYYY-MM-DD HH:MM:SS[.fff][Z|+HH:MM]`` strings; NO_TS where they do not parse."""
    parts = pc.extract_regex(s, _ISO)
    matched = parts.is_valid().to_numpy(zero_copy_only=False)

    def num(name: str) -> np.ndarray:
        field = pc.struct_field(parts, name)
        field = pc.if_else(pc.equal(field, ""), "0", field)
        return pc.cast(field.fill_null("0"), pa.int64()).to_numpy(zero_copy_only=False)

    y, mo, d, h, mi, sec = (num(k) for k in ("y", "mo", "d", "h", "mi", "s"))
    frac = pc.utf8_rpad(pc.struct_field(parts, "f").fill_null(""), 9, "0")
    frac = pc.cast(frac, pa.int64()).to_numpy(zero_copy_only=False)
    tz = pc.struct_field(parts, "tz").fill_null("").to_numpy(zero_copy_only=False).astype(str)
    offset = np.zeros(len(s), np.int64)
    signed = np.char.startswith(tz, "+") | np.char.startswith(tz, "-")
    if signed.any():
        digits = np.char.replace(tz[signed], ":", "")
        sign = np.where(np.char.startswith(digits, "-"), -1, 1)
        hh = np.array([int(x[1:3]) for x in digits], np.int64)
        mm = np.array([int(x[3:5] or 0) for x in digits], np.int64)
        offset[signed] = sign * (hh * 3600 + mm * 60)
    ok = matched & (mo >= 1) & (mo <= 12) & (d >= 1) & (d <= _days_in_month(y, mo)) & (h < 24) & (mi < 60) \
        & (sec < 61)
    secs = _days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - offset
    return np.where(ok, secs * 1_000_000_000 + frac, NO_TS)


def _days_from_civil(y: np.ndarray, m: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of proleptic Gregorian dates (Howard Hinnant's algorithm)."""
    y = y - (m <= 2)
    era = np.floor_divide(y, 400)
    yoe = y - era * 400
    doy = (153 * (m + np.where(m > 2, -3, 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _days_in_month(y: np.ndarray, m: np.ndarray) -> np.ndarray:
    leap = ((y % 4 == 0) & (y % 100 != 0)) | (y % 400 == 0)
    days = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], np.int64)[np.clip(m, 1, 12) - 1]
    return days + ((m == 2) & leap)
