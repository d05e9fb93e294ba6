"""Williams %R: where the close sits in the high-low range of the last ``period`` bars, 0 to -100."""

from __future__ import annotations

import numpy as np

from engine.indicators.base import Indicator
from engine.indicators.jit import row_kernel
from engine.indicators.registry import register
from engine.indicators.windows import RollingExtreme, extreme_push


@row_kernel
def willr_rows(slots, gap, ts, highs, lows, closes, volumes, out, col, h):
    high_window, low_window = h
    for r in range(len(slots)):
        if gap[r]:
            continue
        highest, _, full = extreme_push(high_window, slots[r], highs[r])
        lowest, _, _ = extreme_push(low_window, slots[r], lows[r])
        if full:
            # -100 * (highest - close) / (highest - lowest); 0 for a flat window (as TA-Lib)
            diff = (highest - lowest) / -100.0
            out[r, col] = 0.0 if diff == 0 else (highest - closes[r]) / diff
        else:
            out[r, col] = np.nan


@register
class WillR(Indicator):
    """Williams %R over ``period`` bars including the current one (TA-Lib's WILLR)."""

    name = "willr"
    defaults = (14,)
    param_types = (int,)

    def setup(self) -> None:
        self.high = RollingExtreme(self.params[0], largest=True)
        self.low = RollingExtreme(self.params[0], largest=False)
        self.children = [self.high, self.low]

    @property
    def lookback(self) -> int:
        return self.params[0] - 1

    def kernel(self):
        return willr_rows, (self.high.handle(), self.low.handle())
