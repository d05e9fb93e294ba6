"""Donchian channels: highest high and lowest low of the last ``period`` bars and their midpoint."""

from __future__ import annotations

import numpy as np

from engine.indicators.base import Indicator
from engine.indicators.jit import row_kernel
from engine.indicators.registry import register
from engine.indicators.windows import RollingExtreme, extreme_push


@row_kernel
def donchian_rows(slots, gap, ts, highs, lows, closes, volumes, out, col, h):
    high_window, low_window = h
    for r in range(len(slots)):
        if gap[r]:
            continue
        upper, _, full = extreme_push(high_window, slots[r], highs[r])
        lower, _, _ = extreme_push(low_window, slots[r], lows[r])
        if full:
            out[r, col], out[r, col + 1], out[r, col + 2] = upper, (upper + lower) / 2.0, lower
        else:
            out[r, col], out[r, col + 1], out[r, col + 2] = np.nan, np.nan, np.nan


@register
class Donchian(Indicator):
    """Upper, middle and lower Donchian bands over ``period`` bars including the current bar.

    The channel that excludes the current bar (breakout tests) is this one shifted by one bar.
    """

    name = "donchian"
    outputs = ("upper", "middle", "lower")
    defaults = (20,)
    param_types = (int,)

    def setup(self) -> None:
        self.high = RollingExtreme(self.params[0], largest=True)
        self.low = RollingExtreme(self.params[0], largest=False)
        self.children = [self.high, self.low]

    @property
    def lookback(self) -> int:
        return self.params[0] - 1

    def kernel(self):
        return donchian_rows, (self.high.handle(), self.low.handle())
