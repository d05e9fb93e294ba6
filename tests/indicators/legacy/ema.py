"""Exponential moving average, seeded with the SMA of the first ``period`` values (as TA-Lib)."""

from __future__ import annotations

import numpy as np

from tests.indicators.legacy.base import Bars, Indicator, StateSpec, nan_out
from tests.indicators.legacy.registry import register
from tests.indicators.legacy.windows import linear_recursion


class EMAState(Indicator):
    """EMA of an arbitrary input series per slot; the primitive behind EMA, MACD, DEMA, TEMA, TRIX.

    ``alpha`` defaults to 2/(n+1); Wilder smoothing is the same recursion with alpha 1/n.
    """

    name = "ema_state"
    defaults = (30,)
    param_types = (int,)

    def __init__(self, period: int = 30, alpha: float | None = None) -> None:
        super().__init__(period)
        self.alpha = 2.0 / (period + 1) if alpha is None else alpha

    def state_spec(self) -> StateSpec:
        return {"value": ((), np.float64, 0.0), "count": ((), np.int64, 0)}

    @property
    def lookback(self) -> int:
        return self.params[0] - 1

    def push(self, slots: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Feed one value per slot; return the EMA (NaN until ``period`` values were seen)."""
        if len(slots) and slots.max() >= self.capacity:
            self.grow(int(slots.max()) + 1)
        n = self.params[0]
        value = self.s["value"][slots]
        count = self.s["count"][slots] + 1
        warm = count <= n
        # warm-up accumulates the plain sum; at count == n it becomes the SMA seed
        summed = value + x
        seeded = np.where(count == n, summed / n, summed)
        # the same operations, in the same order, as lfilter's recursion in ``series``: both forms
        # then agree bit for bit, which matters where EMAs are subtracted (MACD, TRIX)
        smoothed = self.alpha * x - value * (self.alpha - 1.0)
        value = np.where(warm, seeded, smoothed)
        self.s["value"][slots] = value
        self.s["count"][slots] = count
        return np.where(count >= n, value, np.nan)

    def step(self, slots: np.ndarray, bars: Bars) -> np.ndarray:
        return self.push(slots, bars.close)[:, None]

    def series(self, x: np.ndarray) -> np.ndarray:
        """Batch EMA of ``x`` (1-D), NaN before the seed."""
        n = self.params[0]
        out = np.full(len(x), np.nan)
        if len(x) >= n:
            seed = np.cumsum(x[:n])[-1] / n  # sequential, as the streaming warm-up sums
            out[n - 1] = seed
            out[n:] = linear_recursion(x[n:], self.alpha, seed)
        return out

    def batch(self, bars: Bars) -> np.ndarray:
        return self.series(bars.close)[:, None]


@register
class EMA(Indicator):
    """Exponential moving average of closes."""

    name = "ema"
    defaults = (30,)
    param_types = (int,)

    def setup(self) -> None:
        self.ema = EMAState(self.params[0])
        self.children = [self.ema]

    @property
    def lookback(self) -> int:
        return self.params[0] - 1

    def step(self, slots: np.ndarray, bars: Bars) -> np.ndarray:
        return self.ema.push(slots, bars.close)[:, None]

    def batch(self, bars: Bars) -> np.ndarray:
        out = nan_out(len(bars))
        out[:, 0] = self.ema.series(bars.close)
        return out
