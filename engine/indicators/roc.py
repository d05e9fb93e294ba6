"""Rate of change: percent change of the close over ``period`` bars (TA-Lib ROC)."""

from __future__ import annotations

import numpy as np

from engine.indicators.base import Indicator
from engine.indicators.jit import row_kernel
from engine.indicators.registry import register
from engine.indicators.scalar import percent_change
from engine.indicators.windows import RollingWindow, window_push


@row_kernel
def roc_rows(slots, gap, ts, highs, lows, closes, volumes, out, col, h):
    for r in range(len(slots)):
        if not gap[r]:
            close = closes[r]
            start, full = window_push(h, slots[r], close)  # oldest entry: the close n bars ago
            out[r, col] = percent_change(close, h[0][slots[r], start]) if full else np.nan


@register
class ROC(Indicator):
    """Percent change over ``period`` bars."""

    name = "roc"
    defaults = (10,)
    param_types = (int,)

    def setup(self) -> None:
        self.closes = RollingWindow(self.params[0] + 1)
        self.children = [self.closes]

    @property
    def lookback(self) -> int:
        return self.params[0]

    def kernel(self):
        return roc_rows, self.closes.handle()
