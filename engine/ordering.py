"""Event-time order checks shared by the candle aggregator and input validation."""

from __future__ import annotations

import numpy as np


def segment_keys(keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, int, int] | None:
    """``seg * width + (values - low)``: one int64 that orders by (run of ``keys``, value); None if too wide."""
    low, high = int(values.min()), int(values.max())
    width = high - low + 1
    seg = np.concatenate(([0], np.cumsum(keys[1:] != keys[:-1]))).astype(np.int64)
    if width * (int(seg[-1]) + 1) >= 2 ** 62:
        return None
    return seg * width + (values - low), width, low


def segmented_cummax(keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Running max of int64 ``values`` within each run of equal ``keys`` (runs must be contiguous)."""
    if not len(values):
        return values.copy()
    packed = segment_keys(keys, values)
    if packed is not None:  # values offset per run so one global running max stays inside each run
        v, width, low = packed
        return np.maximum.accumulate(v) - (v - (values - low)) + low
    uniq, rank = np.unique(values, return_inverse=True)  # spans too wide to pack: use ranks instead
    seg = np.concatenate(([0], np.cumsum(keys[1:] != keys[:-1]))).astype(np.int64)
    width = len(uniq)
    return uniq[np.maximum.accumulate(seg * width + rank) - seg * width]


def rows_behind(keys: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """Positions of rows whose time is earlier than a previous row of the same key, in row order."""
    if len(ts) < 2:
        return np.empty(0, np.int64)
    if len(keys) and (keys == keys[0]).all():
        return np.flatnonzero(ts < np.maximum.accumulate(ts))
    order = np.argsort(keys, kind="stable")
    k, t = keys[order], ts[order]
    if not ((t[1:] < t[:-1]) & (k[1:] == k[:-1])).any():
        return np.empty(0, np.int64)
    return np.sort(order[t < segmented_cummax(k, t)])
