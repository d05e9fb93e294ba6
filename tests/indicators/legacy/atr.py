"""Average true range: Wilder's smoothing of the true range, seeded as TA-Lib seeds it."""

from __future__ import annotations

import numpy as np

from tests.indicators.legacy.base import Bars, Indicator
from tests.indicators.legacy.ema import EMAState
from tests.indicators.legacy.registry import register
from tests.indicators.legacy.windows import PrevBar, ensure_capacity, shift, true_range


@register
class ATR(Indicator):
    """Wilder-smoothed true range; the first bar only supplies a previous close (TA-Lib's ATR).

    ``from_first_bar`` counts the first bar's high-low as a true range instead (the pandas-based
    libraries' convention, used by the StockCharts sheets), so values start one bar earlier.
    """

    name = "atr"
    defaults = (14,)
    param_types = (int,)

    def __init__(self, period: int = 14, *, from_first_bar: bool = False) -> None:
        self.from_first_bar = from_first_bar
        super().__init__(period)

    def setup(self) -> None:
        n = self.params[0]
        self.prev = PrevBar()
        # seeded with the mean of the first n true ranges, then y += (tr - y) / n
        self.avg = EMAState(n, alpha=1.0 / n)
        self.children = [self.prev, self.avg]

    @property
    def lookback(self) -> int:
        return self.params[0] - 1 if self.from_first_bar else self.params[0]

    def push(self, slots: np.ndarray, bars: Bars) -> np.ndarray:
        """ATR of each slot after this bar, NaN in warm-up."""
        ensure_capacity(self, slots)
        _, _, prev_close = self.prev.push(slots, bars)
        tr = true_range(bars.high, bars.low, prev_close)
        if self.from_first_bar:
            tr = np.where(np.isnan(prev_close), bars.high - bars.low, tr)
        out = np.full(len(slots), np.nan)
        seen = ~np.isnan(tr)
        out[seen] = self.avg.push(slots[seen], tr[seen])
        return out

    def series(self, bars: Bars) -> np.ndarray:
        """Batch ATR as a 1-D array."""
        tr = true_range(bars.high, bars.low, shift(bars.close))
        first = 1
        if self.from_first_bar:
            tr[:1] = bars.high[:1] - bars.low[:1]
            first = 0
        out = np.full(len(bars), np.nan)
        out[first:] = self.avg.series(tr[first:])
        return out

    def step(self, slots: np.ndarray, bars: Bars) -> np.ndarray:
        return self.push(slots, bars)[:, None]

    def batch(self, bars: Bars) -> np.ndarray:
        return self.series(bars)[:, None]
