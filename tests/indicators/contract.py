"""Contract checks every indicator passes: streaming == batch, snapshot round trip, reset = fresh."""

from __future__ import annotations

import numpy as np

from engine.indicators.base import Bars, Indicator

STREAM_VS_BATCH_RTOL = 1e-12


def stream_many(ind: Indicator, series: list[Bars]) -> list[np.ndarray]:
    """Feed several series as separate slots, bar by bar, all slots advancing in one call per bar."""
    n = max(len(b) for b in series)
    outs = [np.full((len(b), len(ind.outputs)), np.nan) for b in series]
    for i in range(n):
        slots = np.array([k for k, b in enumerate(series) if i < len(b)], np.int64)
        row = Bars(*(np.array([getattr(series[k], f)[i] for k in slots]) for f in
                     ("ts", "open", "high", "low", "close", "volume")))
        res = ind.update(slots, row)
        for j, k in enumerate(slots):
            outs[k][i] = res[j]
    return outs


def assert_close(a: np.ndarray, b: np.ndarray, rtol: float, what: str, atol: float = 0.0) -> None:
    """Equal NaN pattern and values within rtol (relative to |b|) plus atol."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    assert a.shape == b.shape, f"{what}: shape {a.shape} != {b.shape}"
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    bad = np.flatnonzero((nan_a != nan_b).any(axis=-1) if a.ndim > 1 else nan_a != nan_b)
    assert not len(bad), f"{what}: NaN pattern differs first at row {bad[0]}: {a[bad[0]]} vs {b[bad[0]]}"
    ok = ~nan_a
    err = np.abs(a[ok] - b[ok]) - (rtol * np.abs(b[ok]) + atol)
    if len(err) and err.max() > 0:
        k = int(np.argmax(err))
        raise AssertionError(f"{what}: {a[ok][k]!r} vs {b[ok][k]!r} (rtol {rtol}, atol {atol})")
