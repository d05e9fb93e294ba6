"""Stochastic RSI: fast %K of the RSI over ``fastk`` bars and its ``fastd``-bar SMA %D (TA-Lib STOCHRSI)."""

from __future__ import annotations

import numpy as np

from engine.indicators.base import Indicator
from engine.indicators.jit import inlined, row_kernel
from engine.indicators.registry import register
from engine.indicators.rsi import RSI, rsi_push
from engine.indicators.scalar import near_zero
from engine.indicators.windows import (
    RollingExtreme,
    RollingSums,
    extreme_push,
    rolling_sums_push,
    rolling_sums_value,
)


@inlined
def fast_k(value, highest, lowest):
    """Position of ``value`` in [lowest, highest] as 0..100; 0 for a flat window, as TA-Lib."""
    # A flat price run leaves the RSI constant only up to rounding, so "flat" is TA-Lib's scaled
    # dead zone rather than an exact tie; otherwise rounding noise would swing %K across 0..100.
    span = highest - lowest
    if near_zero(span, abs(highest) + abs(lowest)):
        return 0.0
    return (value - lowest) / span * 100.0


@row_kernel
def stochrsi_rows(slots, gap, ts, highs, lows, closes, volumes, out, col, h):
    rsi_h, highest_h, lowest_h, d_sum, fastd = h
    for r in range(len(slots)):
        if gap[r]:
            continue
        slot = slots[r]
        out[r, col], out[r, col + 1] = np.nan, np.nan
        rsi = rsi_push(rsi_h, slot, closes[r])
        if np.isnan(rsi):
            continue
        highest, _, full = extreme_push(highest_h, slot, rsi)
        lowest, _, _ = extreme_push(lowest_h, slot, rsi)
        if not full:
            continue
        k = fast_k(rsi, highest, lowest)
        if rolling_sums_push(d_sum, slot, (k,)):
            out[r, col], out[r, col + 1] = k, rolling_sums_value(d_sum, slot, 0) / fastd


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
        self.highest = RollingExtreme(fastk, largest=True)
        self.lowest = RollingExtreme(fastk, largest=False)
        self.d_sum = RollingSums(fastd)
        self.children = [self.rsi, self.highest, self.lowest, self.d_sum]

    @property
    def lookback(self) -> int:
        period, fastk, fastd = self.params
        return period + fastk - 1 + fastd - 1

    def kernel(self):
        return stochrsi_rows, (self.rsi.handle(), self.highest.handle(), self.lowest.handle(), self.d_sum.handle(),
                                self.params[2])
