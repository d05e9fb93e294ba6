"""Average directional index: Wilder's smoothing of DX, computed as TA-Lib computes it."""

from __future__ import annotations

import numpy as np

from tests.indicators.legacy.base import Bars, Indicator, StateSpec, nan_out
from tests.indicators.legacy.registry import register
from tests.indicators.legacy.windows import (
    DirectionalSums,
    directional_indicators,
    linear_recursion,
)


def directional_index(sums: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(DX, defined) from DirectionalSums rows; DX is undefined without range or movement."""
    plus, minus = directional_indicators(sums)
    total = minus + plus
    defined = (sums[:, 2] != 0) & (total != 0)
    dx = 100.0 * (np.abs(minus - plus) / np.where(defined, total, 1.0))
    return dx, defined


@register
class ADX(Indicator):
    """ADX: the mean of the first ``period`` DX values, then Wilder-smoothed DX.

    As in TA-Lib, a bar whose DX is undefined counts as 0 in the seed and leaves ADX unchanged after.
    """

    name = "adx"
    defaults = (14,)
    param_types = (int,)

    def setup(self) -> None:
        self.dm = DirectionalSums(self.params[0])
        self.children = [self.dm]

    def state_spec(self) -> StateSpec:
        return {"adx": ((), np.float64, 0.0), "count": ((), np.int64, 0)}

    @property
    def lookback(self) -> int:
        return 2 * self.params[0] - 1

    def step(self, slots: np.ndarray, bars: Bars) -> np.ndarray:
        n = self.params[0]
        alpha = 1.0 / n
        sums = self.dm.push(slots, bars)
        dx, defined = directional_index(sums)
        have = ~np.isnan(sums[:, 0])
        prev = self.s["adx"][slots]
        count = self.s["count"][slots] + have  # DX values seen
        adx = np.where(have & (count <= n), prev + np.where(defined, dx, 0.0), prev)
        adx = np.where(have & (count == n), adx / n, adx)
        # alpha*x + (1-alpha)*y is the update lfilter performs in batch: both round alike
        adx = np.where(have & (count > n) & defined, alpha * dx + (1.0 - alpha) * prev, adx)
        self.s["adx"][slots] = adx
        self.s["count"][slots] = count
        return np.where(count >= n, adx, np.nan)[:, None]

    def batch(self, bars: Bars) -> np.ndarray:
        n = self.params[0]
        out = nan_out(len(bars))
        if len(bars) < 2 * n:
            return out
        dx, defined = directional_index(self.dm.batch(bars))
        seed = np.cumsum(np.where(defined[n:2 * n], dx[n:2 * n], 0.0))[-1] / n
        ok = defined[2 * n:]
        # smooth only the defined DX values, then hold each value over the undefined bars
        held = np.concatenate(([seed], linear_recursion(dx[2 * n:][ok], 1.0 / n, seed)))
        out[2 * n - 1, 0] = seed
        out[2 * n:, 0] = held[np.cumsum(ok)]
        return out
