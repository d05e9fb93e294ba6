"""Stochastic RSI: fast %K of the RSI over ``fastk`` bars and its ``fastd``-bar SMA %D (TA-Lib STOCHRSI)."""

from __future__ import annotations

import numpy as np

from tests.indicators.legacy.base import Bars, Indicator, nan_out
from tests.indicators.legacy.registry import register
from tests.indicators.legacy.rsi import RSI
from tests.indicators.legacy.windows import (
    RollingSums,
    RollingWindow,
    near_zero,
    rolling_max,
    rolling_min,
    running_sums,
)


def fast_k(value: np.ndarray, highest: np.ndarray, lowest: np.ndarray) -> np.ndarray:
    """Position of ``value`` in [lowest, highest] as 0..100; 0 for a flat window, as TA-Lib."""
    # A flat price run leaves the RSI constant only up to rounding, so "flat" is TA-Lib's scaled
    # dead zone rather than an exact tie; otherwise rounding noise would swing %K across 0..100.
    span = highest - lowest
    flat = near_zero(span, np.abs(highest) + np.abs(lowest))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(flat, 0.0, (value - lowest) / span * 100.0)


@register
class StochRSI(Indicator):
    """%K (``k``) and %D (``d``) of the RSI; both NaN until %D exists, as in TA-Lib."""

    name = "stochrsi"
    outputs = ("k", "d")
    defaults = (14, 5, 3)
    param_types = (int, int, int)

    def setup(self) -> None:
        period, fastk, fastd = self.params
        self.rsi = RSI(period)
        self.window = RollingWindow(fastk)
        self.d_sum = RollingSums(fastd)
        self.children = [self.rsi, self.window, self.d_sum]

    @property
    def lookback(self) -> int:
        period, fastk, fastd = self.params
        return period + fastk - 1 + fastd - 1

    def step(self, slots: np.ndarray, bars: Bars) -> np.ndarray:
        out = nan_out(len(slots), 2)
        rsi = self.rsi.step(slots, bars)[:, 0]
        has_rsi = np.flatnonzero(~np.isnan(rsi))  # positions in ``slots``
        if not len(has_rsi):
            return out
        rows, full = self.window.push(slots[has_rsi], rsi[has_rsi])
        has_k = has_rsi[full]
        if len(has_k):
            k = fast_k(rsi[has_k], rows[full].max(axis=1), rows[full].min(axis=1))
            total, ready = self.d_sum.push(slots[has_k], k[:, None])
            out[has_k[ready], 0] = k[ready]
            out[has_k[ready], 1] = total[ready, 0] / self.params[2]
        return out

    def batch(self, bars: Bars) -> np.ndarray:
        period, fastk, fastd = self.params
        out = nan_out(len(bars), 2)
        start = self.lookback
        if len(bars) <= start:
            return out
        rsi = self.rsi.batch(bars)[period:, 0]
        k = fast_k(rsi[fastk - 1:], rolling_max(rsi, fastk), rolling_min(rsi, fastk))
        out[start:, 0] = k[fastd - 1:]
        out[start:, 1] = running_sums(k, fastd)[fastd - 1:] / fastd
        return out
