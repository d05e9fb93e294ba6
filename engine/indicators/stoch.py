"""Slow stochastic oscillator (%K, %D) with simple-moving-average smoothing, as TA-Lib's STOCH."""

from __future__ import annotations

import numpy as np

from engine.indicators.base import Indicator
from engine.indicators.jit import inlined, row_kernel
from engine.indicators.registry import register
from engine.indicators.windows import (
    RollingExtreme,
    RollingSum,
    extreme_push,
    rolling_sum_push,
)


@inlined
def fast_k(close, highest, lowest):
    """100 * (close - lowest) / (highest - lowest); 0 for a flat window (as TA-Lib)."""
    diff = (highest - lowest) / 100.0
    return 0.0 if diff == 0 else (close - lowest) / diff


@row_kernel
def stoch_rows(slots, gap, ts, highs, lows, closes, volumes, out, col, h):
    high_window, low_window, k_sum, d_sum, slowk, slowd = h
    for r in range(len(slots)):
        if gap[r]:
            continue
        slot = slots[r]
        out[r, col], out[r, col + 1] = np.nan, np.nan
        highest, _, full = extreme_push(high_window, slot, highs[r])
        lowest, _, _ = extreme_push(low_window, slot, lows[r])
        if not full:
            continue
        k = fast_k(closes[r], highest, lowest)
        k_total, k_full = rolling_sum_push(k_sum, slot, k)
        if not k_full:
            continue
        slow_k = k_total / slowk
        d_total, d_full = rolling_sum_push(d_sum, slot, slow_k)
        if d_full:
            out[r, col], out[r, col + 1] = slow_k, d_total / slowd


@register
class Stoch(Indicator):
    """Slow %K = SMA(fast %K, slowk), %D = SMA(slow %K, slowd); both start with %D."""

    name = "stoch"
    outputs = ("k", "d")
    defaults = (14, 3, 3)
    param_types = (int, int, int)

    def setup(self) -> None:
        fastk, slowk, slowd = self.params
        self.high = RollingExtreme(fastk, largest=True)
        self.low = RollingExtreme(fastk, largest=False)
        self.k_sum = RollingSum(slowk)
        self.d_sum = RollingSum(slowd)
        self.children = [self.high, self.low, self.k_sum, self.d_sum]

    @property
    def lookback(self) -> int:
        fastk, slowk, slowd = self.params
        return fastk + slowk + slowd - 3

    def kernel(self):
        _, slowk, slowd = self.params
        return stoch_rows, (self.high.handle(), self.low.handle(), self.k_sum.handle(), self.d_sum.handle(),
                            slowk, slowd)
