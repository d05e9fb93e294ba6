"""Williams %R: where the close sits in the high-low range of the last ``period`` bars, 0 to -100."""

from __future__ import annotations

import numpy as np

from tests.indicators.legacy.base import Bars, Indicator, nan_out
from tests.indicators.legacy.registry import register
from tests.indicators.legacy.windows import RollingWindow, rolling_max, rolling_min


def williams_r(close: np.ndarray, highest: np.ndarray, lowest: np.ndarray) -> np.ndarray:
    """-100 * (highest - close) / (highest - lowest); 0 for a flat window (as TA-Lib)."""
    diff = (highest - lowest) / -100.0
    flat = diff == 0
    return np.where(flat, 0.0, (highest - close) / np.where(flat, 1.0, diff))


@register
class WillR(Indicator):
    """Williams %R over ``period`` bars including the current one (TA-Lib's WILLR)."""

    name = "willr"
    defaults = (14,)
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
        r = williams_r(bars.close, highs.max(axis=1), lows.min(axis=1))
        return np.where(full, r, np.nan)[:, None]

    def batch(self, bars: Bars) -> np.ndarray:
        n = self.params[0]
        out = nan_out(len(bars))
        if len(bars) >= n:
            out[n - 1:, 0] = williams_r(bars.close[n - 1:], rolling_max(bars.high, n),
                                        rolling_min(bars.low, n))
        return out
