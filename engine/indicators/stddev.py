"""Population standard deviation of the last ``period`` closes, times ``nbdev`` (TA-Lib STDDEV)."""

from __future__ import annotations

import numpy as np

from engine.indicators.base import Indicator
from engine.indicators.jit import row_kernel
from engine.indicators.reductions import sum_scratch
from engine.indicators.registry import register
from engine.indicators.windows import RollingWindow, mean_pstd, window_push


@row_kernel
def stddev_rows(slots, gap, ts, highs, lows, closes, volumes, out, col, h):
    window, nbdev, scratch = h
    buf, n = window[0], window[0].shape[1] // 2
    for r in range(len(slots)):
        if not gap[r]:
            start, full = window_push(window, slots[r], closes[r])
            out[r, col] = mean_pstd(buf, slots[r], start, n, scratch)[1] * nbdev if full else np.nan


@register
class StdDev(Indicator):
    """Rolling population standard deviation, two-pass over the window (O(period) per bar)."""

    name = "stddev"
    defaults = (20, 1.0)
    param_types = (int, float)

    def setup(self) -> None:
        self.window = RollingWindow(self.params[0])
        self.children = [self.window]
        self.scratch = sum_scratch()  # working memory of the kernel, not state

    @property
    def lookback(self) -> int:
        return self.params[0] - 1

    def kernel(self):
        return stddev_rows, (self.window.handle(), float(self.params[1]), self.scratch)
