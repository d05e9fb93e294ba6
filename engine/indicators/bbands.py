"""Bollinger bands: SMA middle band +- ``nbdev`` population standard deviations (TA-Lib BBANDS)."""

from __future__ import annotations

import numpy as np

from engine.indicators.base import Bars, Indicator, nan_out
from engine.indicators.jit import row_kernel
from engine.indicators.numpy_batch import sliding_mean_pstd
from engine.indicators.reductions import sum_scratch
from engine.indicators.registry import register
from engine.indicators.windows import RollingWindow, mean_pstd, window_push


@row_kernel
def bbands_rows(slots, gap, ts, highs, lows, closes, volumes, out, col, h):
    window, nbdev, scratch = h
    buf, n = window[0], window[0].shape[1] // 2
    for r in range(len(slots)):
        if gap[r]:
            continue
        start, full = window_push(window, slots[r], closes[r])
        if full:
            # mean and deviation come from one two-pass sweep, so the bands sit on the same mean
            mean, sd = mean_pstd(buf, slots[r], start, n, scratch)
            width = sd * nbdev
            out[r, col], out[r, col + 1], out[r, col + 2] = mean + width, mean, mean - width
        else:
            out[r, col], out[r, col + 1], out[r, col + 2] = np.nan, np.nan, np.nan


@register
class BBands(Indicator):
    """Upper, middle and lower band over the last ``period`` closes."""

    name = "bbands"
    outputs = ("upper", "middle", "lower")
    defaults = (20, 2.0)
    param_types = (int, float)

    def setup(self) -> None:
        self.window = RollingWindow(self.params[0])
        self.children = [self.window]
        self.scratch = sum_scratch()  # working memory of the kernel, not state

    @property
    def lookback(self) -> int:
        return self.params[0] - 1

    def kernel(self):
        return bbands_rows, (self.window.handle(), float(self.params[1]), self.scratch)

    def batch(self, bars: Bars) -> np.ndarray:
        """The numpy form (see ``engine.indicators.numpy_batch``); within 1e-12 of the kernel."""
        n = self.params[0]
        out = nan_out(len(bars), 3)
        if len(bars) >= n:
            mean, sd = sliding_mean_pstd(bars.close, n)
            width = sd
            width *= self.params[1]
            rows = out[n - 1:]
            np.add(mean, width, out=rows[:, 0])
            rows[:, 1] = mean
            np.subtract(mean, width, out=rows[:, 2])
        return out
