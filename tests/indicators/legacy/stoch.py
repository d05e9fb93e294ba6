"""Slow stochastic oscillator (%K, %D) with simple-moving-average smoothing, as TA-Lib's STOCH."""

from __future__ import annotations

import numpy as np

from tests.indicators.legacy.base import Bars, Indicator, nan_out
from tests.indicators.legacy.registry import register
from tests.indicators.legacy.windows import (
    RollingSum,
    RollingWindow,
    rolling_max,
    rolling_min,
    running_sums,
)


def fast_k(close: np.ndarray, highest: np.ndarray, lowest: np.ndarray) -> np.ndarray:
    """100 * (close - lowest) / (highest - lowest); 0 for a flat window (as TA-Lib)."""
    diff = (highest - lowest) / 100.0
    flat = diff == 0
    return np.where(flat, 0.0, (close - lowest) / np.where(flat, 1.0, diff))


@register
class Stoch(Indicator):
    """Slow %K = SMA(fast %K, slowk), %D = SMA(slow %K, slowd); both start with %D."""

    name = "stoch"
    outputs = ("k", "d")
    defaults = (14, 3, 3)
    param_types = (int, int, int)

    def setup(self) -> None:
        fastk, slowk, slowd = self.params
        self.high = RollingWindow(fastk)
        self.low = RollingWindow(fastk)
        self.k_sum = RollingSum(slowk)
        self.d_sum = RollingSum(slowd)
        self.children = [self.high, self.low, self.k_sum, self.d_sum]

    @property
    def lookback(self) -> int:
        fastk, slowk, slowd = self.params
        return fastk + slowk + slowd - 3

    def step(self, slots: np.ndarray, bars: Bars) -> np.ndarray:
        _, slowk, slowd = self.params
        highs, full = self.high.push(slots, bars.high)
        lows, _ = self.low.push(slots, bars.low)
        out = np.full((len(slots), 2), np.nan)
        rows = np.flatnonzero(full)
        k = fast_k(bars.close[rows], highs[rows].max(axis=1), lows[rows].min(axis=1))
        k_total, k_full = self.k_sum.push(slots[rows], k)
        rows, slow_k = rows[k_full], k_total[k_full] / slowk
        d_total, d_full = self.d_sum.push(slots[rows], slow_k)
        rows = rows[d_full]
        out[rows, 0] = slow_k[d_full]
        out[rows, 1] = d_total[d_full] / slowd
        return out

    def batch(self, bars: Bars) -> np.ndarray:
        fastk, slowk, slowd = self.params
        out = nan_out(len(bars), 2)
        if len(bars) <= self.lookback:
            return out
        k = fast_k(bars.close[fastk - 1:], rolling_max(bars.high, fastk), rolling_min(bars.low, fastk))
        slow_k = running_sums(k, slowk)[slowk - 1:] / slowk
        slow_d = running_sums(slow_k, slowd)[slowd - 1:] / slowd
        out[self.lookback:, 0] = slow_k[slowd - 1:]
        out[self.lookback:, 1] = slow_d
        return out
