"""Momentum: close minus the close ``period`` bars earlier (TA-Lib MOM)."""

from __future__ import annotations

import numpy as np

from tests.indicators.legacy.base import Bars, Indicator, nan_out
from tests.indicators.legacy.registry import register
from tests.indicators.legacy.windows import RollingWindow


@register
class MOM(Indicator):
    """Price change over ``period`` bars."""

    name = "mom"
    defaults = (10,)
    param_types = (int,)

    def setup(self) -> None:
        self.closes = RollingWindow(self.params[0] + 1)  # oldest entry: the close n bars ago
        self.children = [self.closes]

    @property
    def lookback(self) -> int:
        return self.params[0]

    def step(self, slots: np.ndarray, bars: Bars) -> np.ndarray:
        rows, full = self.closes.push(slots, bars.close)
        return np.where(full, bars.close - rows[:, 0], np.nan)[:, None]

    def batch(self, bars: Bars) -> np.ndarray:
        n = self.params[0]
        out = nan_out(len(bars))
        out[n:, 0] = bars.close[n:] - bars.close[:-n]
        return out
