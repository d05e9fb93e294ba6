"""Simple moving average."""

from __future__ import annotations

import numpy as np

from engine.indicators.base import Indicator
from engine.indicators.jit import row_kernel
from engine.indicators.registry import register
from engine.indicators.windows import RollingSum, rolling_sum_push


@row_kernel
def sma_rows(slots, gap, ts, highs, lows, closes, volumes, out, col, h):
    n = h[0].shape[1]
    for r in range(len(slots)):
        if not gap[r]:
            total, full = rolling_sum_push(h, slots[r], closes[r])
            out[r, col] = total / n if full else np.nan


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

    def kernel(self):
        return sma_rows, self.sum.handle()
