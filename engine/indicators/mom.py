"""Momentum: close minus the close ``period`` bars earlier (TA-Lib MOM)."""

from __future__ import annotations

import numpy as np

from engine.indicators.base import Indicator
from engine.indicators.jit import row_kernel
from engine.indicators.registry import register
from engine.indicators.windows import RollingWindow, window_push


@row_kernel
def mom_rows(slots, gap, ts, highs, lows, closes, volumes, out, col, h):
    for r in range(len(slots)):
        if not gap[r]:
            close = closes[r]
            start, full = window_push(h, slots[r], close)  # oldest entry: the close n bars ago
            out[r, col] = close - h[0][slots[r], start] if full else np.nan


@register
class MOM(Indicator):
    """Price change over ``period`` bars."""

    name = "mom"
    defaults = (10,)
    param_types = (int,)

    def setup(self) -> None:
        self.closes = RollingWindow(self.params[0] + 1)
        self.children = [self.closes]

    @property
    def lookback(self) -> int:
        return self.params[0]

    def kernel(self):
        return mom_rows, self.closes.handle()
