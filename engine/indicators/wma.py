"""Weighted moving average: linear weights 1..n, newest heaviest (TA-Lib WMA)."""

from __future__ import annotations

import numpy as np

from engine.indicators.base import Indicator
from engine.indicators.jit import row_kernel
from engine.indicators.registry import register
from engine.indicators.windows import RollingWindow, window_push


@row_kernel
def wma_rows(slots, gap, ts, highs, lows, closes, volumes, out, col, h):
    window, divisor = h
    buf, n = window[0], window[0].shape[1] // 2
    for r in range(len(slots)):
        if not gap[r]:
            slot = slots[r]
            start, full = window_push(window, slot, closes[r])
            if full:
                # oldest first, weights 1..n; four partial sums, as the sum is in no order of record
                # (the numpy step's BLAS dot added in an order that depended on the other keys)
                s0, s1, s2, s3 = 0.0, 0.0, 0.0, 0.0
                j = 0
                while j + 4 <= n:
                    s0 += buf[slot, start + j] * (j + 1.0)
                    s1 += buf[slot, start + j + 1] * (j + 2.0)
                    s2 += buf[slot, start + j + 2] * (j + 3.0)
                    s3 += buf[slot, start + j + 3] * (j + 4.0)
                    j += 4
                while j < n:
                    s0 += buf[slot, start + j] * (j + 1.0)
                    j += 1
                out[r, col] = ((s0 + s1) + (s2 + s3)) / divisor
            else:
                out[r, col] = np.nan


@register
class WMA(Indicator):
    """Linearly weighted mean of the last ``period`` closes, recomputed per window."""

    # A running weighted sum (TA-Lib's O(1) update) integrates the running plain sum's rounding
    # error and drifts like t^1.5 over a long live stream; a direct dot product never drifts.

    name = "wma"
    defaults = (30,)
    param_types = (int,)

    def setup(self) -> None:
        n = self.params[0]
        self.window = RollingWindow(n)
        self.children = [self.window]
        self.divisor = n * (n + 1) / 2

    @property
    def lookback(self) -> int:
        return self.params[0] - 1

    def kernel(self):
        return wma_rows, (self.window.handle(), self.divisor)
