"""Aroon: how recently the last ``period`` + 1 bars made their high and their low, 0 to 100."""

from __future__ import annotations

import numpy as np

from tests.indicators.legacy.base import Bars, Indicator, nan_out
from tests.indicators.legacy.registry import register
from tests.indicators.legacy.windows import RollingWindow


def _aroon(since_low: np.ndarray, since_high: np.ndarray, n: int) -> np.ndarray:
    """(down, up) from bars since the window's low and high."""
    factor = 100.0 / n
    return np.column_stack((factor * (n - since_low), factor * (n - since_high)))


def _bars_since(extreme: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """Bars since the latest occurrence of ``extreme`` in each window (rows oldest first), as
    TA-Lib counts ties."""
    return (windows[:, ::-1] == extreme[:, None]).argmax(axis=1)


def _bars_since_batch(x: np.ndarray, size: int, later_wins: np.ufunc) -> np.ndarray:
    """Batch twin of _bars_since for every window of ``size`` values: bars since the window's
    latest extreme, where ``later_wins(later, earlier)`` (np.greater_equal for highs, np.less_equal
    for lows) says a later value is at least as extreme.

    Doubling: the extreme of windows of 1, 2, 4, ... values with the index of its latest
    occurrence, merging neighbours (ties go to the later half), then two overlapping windows
    cover ``size``. About log2(size) rounds of a few whole-array ops."""
    count = len(x) - size + 1
    pick = np.maximum if later_wins is np.greater_equal else np.minimum  # equal ties: same value
    value, index, width = x, np.arange(len(x)), 1
    while 2 * width <= size:
        later, earlier = value[width:], value[:-width]
        take = later_wins(later, earlier)
        first = index[:-width]
        index = first + take * (index[width:] - first)
        value = pick(later, earlier)
        width *= 2
    if width < size:
        shift = size - width
        later, earlier = value[shift:shift + count], value[:count]
        first = index[:count]
        index = first + later_wins(later, earlier) * (index[shift:shift + count] - first)
    else:
        index = index[:count]
    return np.arange(size - 1, size - 1 + count) - index


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
            since_low = _bars_since_batch(bars.low, n + 1, np.less_equal)
            since_high = _bars_since_batch(bars.high, n + 1, np.greater_equal)
            out[n:] = _aroon(since_low, since_high, n)
        return out
