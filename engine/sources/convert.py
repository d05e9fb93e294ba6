"""Arrow columns of any reasonable type to the numpy arrays of a batch; bad values become missing."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas.batches import SIDE_BUY, SIDE_SELL, SIDE_UNKNOWN

_NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
_BUY = {"buy", "b", "bid", "long", "1", "+1"}
_SELL = {"sell", "s", "ask", "offer", "short", "-1"}
_TRUE = {"true", "t", "1", "yes", "y"}
_FALSE = {"false", "f", "0", "no", "n"}


def _array(col) -> pa.Array:
    return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col


def to_float(col) -> np.ndarray:
    """Float64 values; NaN where missing or not a number."""
    col = _array(col)
    t = col.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        s = pc.utf8_trim_whitespace(col)
        ok = pc.fill_null(pc.match_substring_regex(s, _NUMBER), False)
        col = pc.if_else(ok, s, pa.scalar(None, s.type))
    elif not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)
              or pa.types.is_null(t)):
        return np.full(len(col), np.nan)
    return col.cast(pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False).astype(np.float64)


def to_int(col, missing: int = -1) -> np.ndarray:
    """Int64 values; ``missing`` where absent, fractional or not a number."""
    col = _array(col)
    t = col.type
    if pa.types.is_integer(t):
        return col.cast(pa.int64()).fill_null(missing).to_numpy(zero_copy_only=False).astype(np.int64)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        s = pc.utf8_trim_whitespace(col)
        ok = pc.fill_null(pc.match_substring_regex(s, r"^[+-]?\d{1,18}$"), False)
        col = pc.if_else(ok, s, pa.scalar(None, s.type)).cast(pa.int64())
        return col.fill_null(missing).to_numpy(zero_copy_only=False).astype(np.int64)
    v = to_float(col)
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(v) & (v == np.round(v)) & (np.abs(v) < 9e18)
    return np.where(ok, np.where(ok, v, 0).astype(np.int64), missing)


def _words(col) -> np.ndarray:
    col = _array(col).cast(pa.string())
    return np.asarray(pc.utf8_lower(pc.utf8_trim_whitespace(col)).fill_null("").to_numpy(zero_copy_only=False),
                      dtype=object)


def to_side(col) -> tuple[np.ndarray, np.ndarray]:
    """Aggressor side from ``buy``/``sell`` words or signed numbers; also the rows not understood."""
    col = _array(col)
    if pa.types.is_integer(col.type) or pa.types.is_floating(col.type):
        side = np.sign(np.nan_to_num(to_float(col))).astype(np.int8)
        return side, np.zeros(len(side), bool)
    words = _words(col)
    uniq, inv = np.unique(words, return_inverse=True)
    codes = np.array([SIDE_BUY if w in _BUY else SIDE_SELL if w in _SELL else SIDE_UNKNOWN for w in uniq], np.int8)
    unknown = np.array([w != "" and w not in _BUY and w not in _SELL for w in uniq], bool)
    return codes[inv], unknown[inv]


def buyer_maker_side(col) -> tuple[np.ndarray, np.ndarray]:
    """Side from a buyer-is-maker flag: a maker buyer means the seller hit the bid (a sell)."""
    col = _array(col)
    if pa.types.is_boolean(col.type):
        flag = col.fill_null(False).to_numpy(zero_copy_only=False)
        valid = col.is_valid().to_numpy(zero_copy_only=False)
        side = np.where(valid, np.where(flag, SIDE_SELL, SIDE_BUY), SIDE_UNKNOWN).astype(np.int8)
        return side, np.zeros(len(side), bool)
    words = _words(col)
    uniq, inv = np.unique(words, return_inverse=True)
    codes = np.array([SIDE_SELL if w in _TRUE else SIDE_BUY if w in _FALSE else SIDE_UNKNOWN for w in uniq], np.int8)
    unknown = np.array([w != "" and w not in _TRUE and w not in _FALSE for w in uniq], bool)
    return codes[inv], unknown[inv]
