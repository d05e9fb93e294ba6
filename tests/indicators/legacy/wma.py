"""Weighted moving average: linear weights 1..n, newest heaviest (TA-Lib WMA)."""

from __future__ import annotations

import numpy as np

from tests.indicators.legacy.base import Bars, Indicator, nan_out
from tests.indicators.legacy.registry import register
from tests.indicators.legacy.windows import RollingWindow


@register
class WMA(Indicator):
    """Linearly weighted mean of the last ``period`` closes, recomputed per window."""

    # A running weighted sum (TA-Lib's O(1) update) integrates the running plain sum's rounding
    # error and drifts like t^1.5 over a long live stream; a direct dot product never drifts.

    name = "wma"
    defaults = (30,)
    param_types = (int,)

    def setup(self) -> None:
        n = self.params[0]
        self.window = RollingWindow(n)
        self.children = [self.window]
        self.weights = np.arange(1.0, n + 1)  # oldest first
        self.divisor = n * (n + 1) / 2

    @property
    def lookback(self) -> int:
        return self.params[0] - 1

    def step(self, slots: np.ndarray, bars: Bars) -> np.ndarray:
        rows, full = self.window.push(slots, bars.close)
        return np.where(full, rows @ self.weights / self.divisor, np.nan)[:, None]

    def batch(self, bars: Bars) -> np.ndarray:
        n = self.params[0]
        out = nan_out(len(bars))
        if len(bars) >= n:
            # positive weights on positive prices: any summation order agrees to ~1e-15
            out[n - 1:, 0] = np.convolve(bars.close, self.weights[::-1], "valid") / self.divisor
        return out
