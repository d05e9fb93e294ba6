"""Aroon: how recently the last ``period`` + 1 bars made their high and their low, 0 to 100."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from engine.indicators.base import Bars, Indicator, nan_out
from engine.indicators.registry import register
from engine.indicators.windows import RollingWindow, rolling_max, rolling_min


def _aroon(since_low: np.ndarray, since_high: np.ndarray, n: int) -> np.ndarray:
    """(down, up) from bars since the window's low and high."""
    factor = 100.0 / n
    return np.column_stack((factor * (n - since_low), factor * (n - since_high)))


def _bars_since(extreme: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """Bars since the latest occurrence of ``extreme`` in each window (rows oldest first), as
    TA-Lib counts ties."""
    return (windows[:, ::-1] == extreme[:, None]).argmax(axis=1)


def _bars_since_batch(x: np.ndarray, extreme: np.ndarray) -> np.ndarray:
    """Batch twin of _bars_since for every window of n + 1: the offsets d = 0..n are rows of a
    (n + 1, windows) view, so argmax runs down short columns instead of along many short rows."""
    m = len(extreme)
    lagged = sliding_window_view(x, m)[::-1]  # row d: the value d bars before each window's end
    return (lagged == extreme).argmax(axis=0)


@register
class Aroon(Indicator):
    """Aroon down and up over ``period`` bars (TA-Lib's AROON, windows of period + 1 bars)."""

    name = "aroon"
    outputs = ("down", "up")
    defaults = (14,)
    param_types = (int,)

    def setup(self) -> None:
        self.high = RollingWindow(self.params[0] + 1)
        self.low = RollingWindow(self.params[0] + 1)
        self.children = [self.high, self.low]

    @property
    def lookback(self) -> int:
        return self.params[0]

    def step(self, slots: np.ndarray, bars: Bars) -> np.ndarray:
        highs, full = self.high.push(slots, bars.high)
        lows, _ = self.low.push(slots, bars.low)
        out = np.full((len(slots), 2), np.nan)
        highs, lows = highs[full], lows[full]
        out[full] = _aroon(_bars_since(lows.min(axis=1), lows), _bars_since(highs.max(axis=1), highs),
                           self.params[0])
        return out

    def batch(self, bars: Bars) -> np.ndarray:
        n = self.params[0]
        out = nan_out(len(bars), 2)
        if len(bars) > n:
            since_low = _bars_since_batch(bars.low, rolling_min(bars.low, n + 1))
            since_high = _bars_since_batch(bars.high, rolling_max(bars.high, n + 1))
            out[n:] = _aroon(since_low, since_high, n)
        return out
