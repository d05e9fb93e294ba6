"""Donchian channels: highest high and lowest low of the last ``period`` bars and their midpoint."""

from __future__ import annotations

import numpy as np

from tests.indicators.legacy.base import Bars, Indicator, nan_out
from tests.indicators.legacy.registry import register
from tests.indicators.legacy.windows import RollingWindow, rolling_max, rolling_min


def _channel(upper: np.ndarray, lower: np.ndarray) -> np.ndarray:
    return np.column_stack((upper, (upper + lower) / 2.0, lower))


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
        self.high = RollingWindow(self.params[0])
        self.low = RollingWindow(self.params[0])
        self.children = [self.high, self.low]

    @property
    def lookback(self) -> int:
        return self.params[0] - 1

    def step(self, slots: np.ndarray, bars: Bars) -> np.ndarray:
        highs, full = self.high.push(slots, bars.high)
        lows, _ = self.low.push(slots, bars.low)
        out = np.full((len(slots), 3), np.nan)
        out[full] = _channel(highs[full].max(axis=1), lows[full].min(axis=1))
        return out

    def batch(self, bars: Bars) -> np.ndarray:
        n = self.params[0]
        out = nan_out(len(bars), 3)
        if len(bars) >= n:
            out[n - 1:] = _channel(rolling_max(bars.high, n), rolling_min(bars.low, n))
        return out
