"""Rate of change: percent change of the close over ``period`` bars (TA-Lib ROC)."""

from __future__ import annotations

import numpy as np

from tests.indicators.legacy.base import Bars, Indicator, nan_out
from tests.indicators.legacy.registry import register
from tests.indicators.legacy.windows import RollingWindow


def percent_change(new: np.ndarray, old: np.ndarray) -> np.ndarray:
    """100 * (new - old) / old, 0 where old is 0 (TA-Lib's convention), NaN where old is NaN."""
    # subtracting first keeps small changes exact instead of losing digits in ``new/old - 1``
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(old != 0.0, 100.0 * (new - old) / old, 0.0)


@register
class ROC(Indicator):
    """Percent change over ``period`` bars."""

    name = "roc"
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
        return np.where(full, percent_change(bars.close, rows[:, 0]), np.nan)[:, None]

    def batch(self, bars: Bars) -> np.ndarray:
        n = self.params[0]
        out = nan_out(len(bars))
        out[n:, 0] = percent_change(bars.close[n:], bars.close[:-n])
        return out
