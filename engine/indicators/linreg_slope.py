"""Slope of the least-squares line through the last ``period`` closes, per bar (TA-Lib LINEARREG_SLOPE)."""

from __future__ import annotations

import numpy as np

from engine.indicators.base import Indicator
from engine.indicators.jit import row_kernel
from engine.indicators.registry import register
from engine.indicators.windows import RollingWindow, window_push
from schemas.errors import IndicatorSpecError


@row_kernel
def linreg_slope_rows(slots, gap, ts, highs, lows, closes, volumes, out, col, h):
    window, offsets, denominator = h
    buf, n = window[0], window[0].shape[1] // 2
    for r in range(len(slots)):
        if gap[r]:
            continue
        slot = slots[r]
        start, full = window_push(window, slot, closes[r])
        if full:
            # sum(w_j * (x_j - x_0)) over the window x, added in order j = 0..n-1
            first = buf[slot, start]
            total = (first - first) * offsets[0]
            for j in range(1, n):
                total += (buf[slot, start + j] - first) * offsets[j]
            out[r, col] = total / denominator
        else:
            out[r, col] = np.nan


@register
class LinRegSlope(Indicator):
    """Least-squares slope over a window, recomputed per window like TA-Lib (O(period) per bar)."""

    name = "linreg_slope"
    defaults = (14,)
    param_types = (int,)

    def validate(self) -> None:
        super().validate()
        if self.params[0] < 2:
            raise IndicatorSpecError(f"{self.name}: a line needs period >= 2, got {self.params[0]}")

    def setup(self) -> None:
        n = self.params[0]
        self.window = RollingWindow(n)
        self.children = [self.window]
        # Bar offsets centred on the window's middle, oldest first; their squares sum to
        # n(n^2-1)/12. They also sum to zero, so prices may be taken relative to the window's
        # first one: exact for nearby prices, that keeps the price level out of the cancellation.
        self.offsets = np.arange(n) - (n - 1) / 2
        self.denominator = n * (n * n - 1) / 12

    @property
    def lookback(self) -> int:
        return self.params[0] - 1

    def kernel(self):
        return linreg_slope_rows, (self.window.handle(), self.offsets, self.denominator)
