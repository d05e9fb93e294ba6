"""Bollinger bands: SMA middle band +- ``nbdev`` population standard deviations (TA-Lib BBANDS)."""

from __future__ import annotations

import numpy as np

from tests.indicators.legacy.base import Bars, Indicator, nan_out
from tests.indicators.legacy.registry import register
from tests.indicators.legacy.windows import RollingWindow, mean_pstd, sliding_mean_pstd


@register
class BBands(Indicator):
    """Upper, middle and lower band over the last ``period`` closes."""

    name = "bbands"
    outputs = ("upper", "middle", "lower")
    defaults = (20, 2.0)
    param_types = (int, float)

    def setup(self) -> None:
        self.window = RollingWindow(self.params[0])
        self.children = [self.window]

    @property
    def lookback(self) -> int:
        return self.params[0] - 1

    def _bands(self, mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
        # mean and deviation come from one two-pass sweep, so the bands sit on the same mean
        width = sd * self.params[1]
        return np.column_stack([mean + width, mean, mean - width])

    def step(self, slots: np.ndarray, bars: Bars) -> np.ndarray:
        rows, full = self.window.push(slots, bars.close)
        out = self._bands(*mean_pstd(rows))
        out[~full] = np.nan
        return out

    def batch(self, bars: Bars) -> np.ndarray:
        n = self.params[0]
        out = nan_out(len(bars), 3)
        if len(bars) >= n:
            mean, sd = sliding_mean_pstd(bars.close, n)
            width = sd
            width *= self.params[1]  # in place; the same product as ``_bands``
            rows = out[n - 1:]
            np.add(mean, width, out=rows[:, 0])
            rows[:, 1] = mean
            np.subtract(mean, width, out=rows[:, 2])
        return out
