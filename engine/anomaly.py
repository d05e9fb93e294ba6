"""Anomaly scores for rows of activity (market bars, wallet transfers, any numeric features); pure numpy.

Two scores per row:
- robust z: per column (x - median) / (1.4826 * MAD), the row's score the largest absolute value;
  columns whose MAD is 0 use the mean absolute deviation, then 1 (a constant column scores 0);
- isolation: the isolation-forest score 2^(-E[h(x)] / c(n)) of Liu, Ting and Zhou (2008) over
  ``trees`` random trees grown on subsamples of ``sample`` rows, seeded so that the same rows give
  the same scores. Near 1: isolated quickly (anomalous); around 0.5 or less: ordinary.
NaN (missing) values are replaced by their column's median before scoring.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from engine import libm
from schemas.errors import InputError

MAD_SCALE = 1.4826
EULER = 0.5772156649015329


@dataclass(frozen=True)
class AnomalyScores:
    """Per-row scores and which rows pass the thresholds."""

    robust_z: np.ndarray  # float64 (n,), max |z| over columns
    isolation: np.ndarray  # float64 (n,), in (0, 1]
    anomalous: np.ndarray  # int64 indices of rows with robust_z >= z_threshold or isolation >= iso_threshold


def _matrix(rows: np.ndarray) -> np.ndarray:
    X = np.asarray(rows, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] < 1 or X.shape[1] < 1:
        raise InputError(f"anomaly rows must be a non-empty 2-D array, got shape {X.shape}")
    if np.isinf(X).any():
        raise InputError("anomaly rows must be finite numbers (or NaN for missing)")
    missing = np.isnan(X)
    if missing.any():
        filled = np.where(missing.all(axis=0), 0.0, X)  # an all-missing column becomes 0 (scores 0)
        med = np.nanmedian(filled, axis=0)
        X = np.where(np.isnan(filled), med, filled)
    return X


def robust_z(rows: np.ndarray) -> np.ndarray:
    """Per-column robust z-scores of every row, shape (n, d)."""
    X = _matrix(rows)
    med = np.median(X, axis=0)
    dev = np.abs(X - med)
    scale = MAD_SCALE * np.median(dev, axis=0)
    fallback = dev.mean(axis=0) * np.sqrt(np.pi / 2)  # mean absolute deviation, normal-consistent
    scale = np.where(scale > 0, scale, np.where(fallback > 0, fallback, 1.0))
    return (X - med) / scale


def _c(n: np.ndarray | float) -> np.ndarray:
    """Average path length of an unsuccessful search in a binary search tree of n points."""
    n = np.asarray(n, dtype=np.float64)
    out = np.zeros_like(n)
    big = n > 2
    out[big] = 2.0 * (libm.log(n[big] - 1.0) + EULER) - 2.0 * (n[big] - 1.0) / n[big]
    out[n == 2] = 1.0
    return out


def _grow(X: np.ndarray, rng: np.random.Generator, limit: int) -> tuple[np.ndarray, ...]:
    """One isolation tree as arrays: feature, split, left, right (-1 at leaves), leaf size, depth."""
    feat, split, left, right, size, depth = [], [], [], [], [], []
    stack = [(np.arange(len(X)), 0, -1, False)]
    while stack:
        idx, d, parent, is_right = stack.pop()
        node = len(feat)
        if parent >= 0:
            (right if is_right else left)[parent] = node
        feat.append(-1), split.append(0.0), left.append(-1), right.append(-1), size.append(len(idx)), depth.append(d)
        if d >= limit or len(idx) <= 1:
            continue
        sub = X[idx]
        lo, hi = sub.min(axis=0), sub.max(axis=0)
        usable = np.flatnonzero(hi > lo)
        if usable.size == 0:
            continue
        f = int(rng.choice(usable))
        s = float(rng.uniform(lo[f], hi[f]))
        feat[node], split[node] = f, s
        go_left = sub[:, f] < s
        stack.append((idx[~go_left], d + 1, node, True))
        stack.append((idx[go_left], d + 1, node, False))
    return (np.array(feat), np.array(split), np.array(left), np.array(right), np.array(size), np.array(depth))


def isolation(rows: np.ndarray, trees: int = 100, sample: int = 256, seed: int = 0) -> np.ndarray:
    """Isolation-forest anomaly score of every row, shape (n,), deterministic for a seed."""
    X = _matrix(rows)
    n = len(X)
    if n < 2:
        return np.full(n, 0.5)
    psi = min(sample, n)
    limit = int(math.ceil(math.log2(psi)))
    rng = np.random.default_rng(seed)
    total = np.zeros(n)
    for _ in range(trees):
        feat, split, left, right, size, depth = _grow(X[rng.choice(n, psi, replace=False)], rng, limit)
        node = np.zeros(n, dtype=np.int64)
        for _ in range(limit + 1):  # every row descends one level per pass, leaves stay put
            f = feat[node]
            inner = f >= 0
            if not inner.any():
                break
            rows_in = np.flatnonzero(inner)
            goes_left = X[rows_in, f[rows_in]] < split[node[rows_in]]
            node[rows_in] = np.where(goes_left, left[node[rows_in]], right[node[rows_in]])
        total += depth[node] + _c(size[node])
    return 2.0 ** (-(total / trees) / _c(np.array([psi]))[0])


def detect(rows: np.ndarray, z_threshold: float = 3.5, iso_threshold: float = 0.65, trees: int = 100,
           seed: int = 0) -> AnomalyScores:
    """Both scores and the rows flagged by either threshold."""
    if not np.isfinite(z_threshold) or z_threshold <= 0 or not 0 < iso_threshold <= 1:
        raise InputError("z_threshold must be > 0 and iso_threshold in (0, 1]")
    z = np.abs(robust_z(rows)).max(axis=1)
    iso = isolation(rows, trees=trees, seed=seed)
    flagged = np.flatnonzero((z >= z_threshold) | (iso >= iso_threshold)).astype(np.int64)
    return AnomalyScores(z, iso, flagged)


def market_rows(close: np.ndarray, high: np.ndarray, low: np.ndarray, volume: np.ndarray) -> np.ndarray:
    """Bar activity features (log return, log range, log volume) for bars 1..n-1, shape (n-1, 3)."""
    close, high, low, volume = (np.asarray(a, dtype=np.float64) for a in (close, high, low, volume))
    if len(close) < 2:
        raise InputError("market anomalies need at least 2 bars")
    with np.errstate(divide="ignore", invalid="ignore"):
        ret = libm.log(close[1:] / close[:-1])
        rng = libm.log(high[1:] / low[1:])
        vol = libm.log(1.0 + np.maximum(volume[1:], 0.0))
    X = np.column_stack([ret, rng, vol])
    return np.where(np.isfinite(X), X, np.nan)


def transfer_rows(ts_s: np.ndarray, values: list[int], incoming: np.ndarray) -> np.ndarray:
    """Wallet transfer features in time order: log10 amount, direction (+1 in, -1 out), log gap to the previous
    transfer in seconds (NaN for the first); shape (n, 3). Amounts are exact ints; the log is taken on floats."""
    ts = np.asarray(ts_s, dtype=np.float64)
    amount = np.array([math.log10(1.0 + float(v)) for v in values], dtype=np.float64)
    gap = np.concatenate([[np.nan], libm.log(1.0 + np.maximum(np.diff(ts), 0.0))]) if len(ts) else np.zeros(0)
    return np.column_stack([amount, np.where(np.asarray(incoming, dtype=bool), 1.0, -1.0), gap])
