"""Aroon: how recently the last ``period`` + 1 bars made their high and their low, 0 to 100."""

from __future__ import annotations

import numpy as np

from engine.indicators.base import Indicator
from engine.indicators.jit import row_kernel
from engine.indicators.registry import register
from engine.indicators.windows import RollingExtreme, extreme_push


@row_kernel
def aroon_rows(slots, gap, ts, highs, lows, closes, volumes, out, col, h):
    high_window, low_window, n = h
    factor = 100.0 / n
    for r in range(len(slots)):
        if gap[r]:
            continue
        slot = slots[r]
        # bars since the window's latest low and latest high (TA-Lib counts ties so)
        _, since_high, full = extreme_push(high_window, slot, highs[r])
        _, since_low, _ = extreme_push(low_window, slot, lows[r])
        if full:
            out[r, col] = factor * (n - since_low)
            out[r, col + 1] = factor * (n - since_high)
        else:
            out[r, col], out[r, col + 1] = np.nan, np.nan


@register
class Aroon(Indicator):
    """Aroon down and up over ``period`` bars (TA-Lib's AROON, windows of period + 1 bars)."""

    name = "aroon"
    outputs = ("down", "up")
    defaults = (14,)
    param_types = (int,)

    def setup(self) -> None:
        self.high = RollingExtreme(self.params[0] + 1, largest=True)
        self.low = RollingExtreme(self.params[0] + 1, largest=False)
        self.children = [self.high, self.low]

    @property
    def lookback(self) -> int:
        return self.params[0]

    def kernel(self):
        return aroon_rows, (self.high.handle(), self.low.handle(), self.params[0])
