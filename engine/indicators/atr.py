"""Average true range: Wilder's smoothing of the true range, seeded as TA-Lib seeds it."""

from __future__ import annotations

import numpy as np

from engine.indicators.base import Indicator
from engine.indicators.ema import EMAState, ema_push
from engine.indicators.jit import inlined, row_kernel
from engine.indicators.registry import register
from engine.indicators.scalar import true_range
from engine.indicators.windows import PrevBar, prev_bar_push


@inlined
def atr_push(h, slot, high, low, close):
    """ATR of the slot after this bar, NaN in warm-up."""
    prev, avg, from_first_bar = h
    _, _, prev_close = prev_bar_push(prev, slot, high, low, close)
    tr = true_range(high, low, prev_close)
    if from_first_bar and np.isnan(prev_close):
        tr = high - low
    if np.isnan(tr):
        return np.nan
    return ema_push(avg, slot, tr)


@row_kernel
def atr_rows(slots, gap, ts, highs, lows, closes, volumes, out, col, h):
    for r in range(len(slots)):
        if not gap[r]:
            out[r, col] = atr_push(h, slots[r], highs[r], lows[r], closes[r])


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

    def handle(self) -> tuple:
        return self.prev.handle(), self.avg.handle(), self.from_first_bar

    def kernel(self):
        return atr_rows, self.handle()
