"""Double exponential moving average, 2*EMA - EMA(EMA) (TA-Lib DEMA)."""

from __future__ import annotations

import numpy as np

from tests.indicators.legacy.base import Bars, Indicator
from tests.indicators.legacy.ema import EMAState
from tests.indicators.legacy.registry import register
from tests.indicators.legacy.windows import push_where, series_after_nan


@register
class DEMA(Indicator):
    """Lag-reduced EMA built from two chained EMAs of the same period."""

    name = "dema"
    defaults = (30,)
    param_types = (int,)

    def setup(self) -> None:
        n = self.params[0]
        self.ema1, self.ema2 = EMAState(n), EMAState(n)
        self.children = [self.ema1, self.ema2]

    @property
    def lookback(self) -> int:
        return 2 * (self.params[0] - 1)

    def step(self, slots: np.ndarray, bars: Bars) -> np.ndarray:
        e1 = self.ema1.push(slots, bars.close)
        e2 = push_where(self.ema2, slots, e1, ~np.isnan(e1))
        return (2.0 * e1 - e2)[:, None]

    def batch(self, bars: Bars) -> np.ndarray:
        e1 = self.ema1.series(bars.close)
        e2 = series_after_nan(self.ema2, e1)
        e1 *= 2.0  # 2 e1 - e2 in place on the array built here
        e1 -= e2
        return e1[:, None]
