"""Population standard deviation of the last ``period`` closes, times ``nbdev`` (TA-Lib STDDEV)."""

from __future__ import annotations

import numpy as np

from tests.indicators.legacy.base import Bars, Indicator, nan_out
from tests.indicators.legacy.registry import register
from tests.indicators.legacy.windows import RollingWindow, mean_pstd, sliding_mean_pstd


@register
class StdDev(Indicator):
    """Rolling population standard deviation, two-pass over the window (O(period) per bar)."""

    name = "stddev"
    defaults = (20, 1.0)
    param_types = (int, float)

    def setup(self) -> None:
        self.window = RollingWindow(self.params[0])
        self.children = [self.window]

    @property
    def lookback(self) -> int:
        return self.params[0] - 1

    def step(self, slots: np.ndarray, bars: Bars) -> np.ndarray:
        rows, full = self.window.push(slots, bars.close)
        _mean, sd = mean_pstd(rows)
        return np.where(full, sd * self.params[1], np.nan)[:, None]

    def batch(self, bars: Bars) -> np.ndarray:
        n = self.params[0]
        out = nan_out(len(bars))
        if len(bars) >= n:
            _mean, sd = sliding_mean_pstd(bars.close, n)
            np.multiply(sd, self.params[1], out=out[n - 1:, 0])
        return out
