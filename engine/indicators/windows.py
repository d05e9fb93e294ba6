"""Building blocks shared by indicators: rolling windows and linear recursions, streaming and batch.

These are state holders used as children of indicators (they share the slot layout) and the
matching batch functions, so every indicator's two forms are built from the same two primitives.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter

from engine.indicators.base import Bars, Indicator, StateSpec


class RollingSum(Indicator):
    """Running sum over the last ``n`` values per slot: a ring buffer plus an O(1) running total.

    Not registered: a primitive other indicators hold. ``push`` returns (sum, window_full).
    """

    name = "rolling_sum"
    defaults = (1,)
    param_types = (int,)

    def state_spec(self) -> StateSpec:
        n = self.params[0]
        return {"buf": ((n,), np.float64, 0.0), "sum": ((), np.float64, 0.0), "count": ((), np.int64, 0)}

    @property
    def lookback(self) -> int:
        return self.params[0] - 1

    def push(self, slots: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if len(slots) and slots.max() >= self.capacity:
            self.grow(int(slots.max()) + 1)
        n = self.params[0]
        s = self.s
        count = s["count"][slots]
        pos = count % n
        old = s["buf"][slots, pos]
        total = s["sum"][slots] + x - old
        s["buf"][slots, pos] = x
        s["sum"][slots] = total
        s["count"][slots] = count + 1
        return total, count + 1 >= n

    def step(self, slots: np.ndarray, bars: Bars) -> np.ndarray:
        total, full = self.push(slots, bars.close)
        return np.where(full, total, np.nan)[:, None]

    def batch(self, bars: Bars) -> np.ndarray:
        out = np.full((len(bars), 1), np.nan)
        n = self.params[0]
        if len(bars) >= n:
            out[n - 1:, 0] = rolling_sum(bars.close, n)
        return out


def rolling_sum(x: np.ndarray, n: int) -> np.ndarray:
    """Sums of every full window of ``n`` (length len(x)-n+1), accumulated as the streaming form does.

    The streaming form keeps ``total += new - old``; a cumulative sum reproduces that order of
    additions closely enough (1e-12 relative) while staying vectorised.
    """
    x = np.asarray(x, np.float64)
    c = np.cumsum(x)
    out = c[n - 1:].copy()
    out[1:] -= c[:-n]
    return out


def linear_recursion(x: np.ndarray, alpha: float, seed: float) -> np.ndarray:
    """y[i] = y[i-1] + alpha * (x[i] - y[i-1]) with y[-1] = seed, run in C by scipy's lfilter."""
    x = np.asarray(x, np.float64)
    if len(x) == 0:
        return x.copy()
    y, _ = lfilter([alpha], [1.0, alpha - 1.0], x, zi=[(1.0 - alpha) * seed])
    return y
