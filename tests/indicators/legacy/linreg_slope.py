"""Slope of the least-squares line through the last ``period`` closes, per bar (TA-Lib LINEARREG_SLOPE)."""

from __future__ import annotations

import numpy as np

from schemas.errors import IndicatorSpecError
from tests.indicators.legacy.base import Bars, Indicator, nan_out
from tests.indicators.legacy.registry import register
from tests.indicators.legacy.windows import RollingWindow


def _centred_dot(rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """sum(w_j * (row_j - row_0)) per streamed row, added in order j = 0..n-1."""
    return np.cumsum((rows - rows[:, :1]) * weights, axis=1)[:, -1]


def _sliding_centred_dot(x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Batch twin of ``_centred_dot`` for every full window of ``x``: the same products, added in
    the same order, so a slope near zero comes out bit for bit as streamed."""
    m = len(x) - len(weights) + 1
    first = x[:m]
    total = np.zeros(m)
    for j, w in enumerate(weights):  # over offsets in the window; each step spans all windows
        term = x[j:j + m] - first
        term *= w
        total += term
    return total


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

    def step(self, slots: np.ndarray, bars: Bars) -> np.ndarray:
        rows, full = self.window.push(slots, bars.close)
        return np.where(full, _centred_dot(rows, self.offsets) / self.denominator, np.nan)[:, None]

    def batch(self, bars: Bars) -> np.ndarray:
        n = self.params[0]
        out = nan_out(len(bars))
        if len(bars) >= n:
            out[n - 1:, 0] = _sliding_centred_dot(bars.close, self.offsets) / self.denominator
        return out
