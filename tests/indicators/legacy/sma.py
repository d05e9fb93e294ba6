"""Simple moving average."""

from __future__ import annotations

import numpy as np

from tests.indicators.legacy.base import Bars, Indicator, nan_out
from tests.indicators.legacy.registry import register
from tests.indicators.legacy.windows import RollingSum, rolling_sum


@register
class SMA(Indicator):
    """Mean of the last ``period`` closes."""

    name = "sma"
    defaults = (30,)
    param_types = (int,)

    def setup(self) -> None:
        self.sum = RollingSum(self.params[0])
        self.children = [self.sum]

    @property
    def lookback(self) -> int:
        return self.params[0] - 1

    def step(self, slots: np.ndarray, bars: Bars) -> np.ndarray:
        total, full = self.sum.push(slots, bars.close)
        return np.where(full, total / self.params[0], np.nan)[:, None]

    def batch(self, bars: Bars) -> np.ndarray:
        out = nan_out(len(bars))
        n = self.params[0]
        if len(bars) >= n:
            np.divide(rolling_sum(bars.close, n), n, out=out[n - 1:, 0])
        return out
