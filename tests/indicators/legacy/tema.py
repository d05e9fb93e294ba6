"""Triple exponential moving average, 3*EMA - 3*EMA(EMA) + EMA(EMA(EMA)) (TA-Lib TEMA)."""

from __future__ import annotations

import numpy as np

from tests.indicators.legacy.base import Bars, Indicator
from tests.indicators.legacy.ema import EMAState
from tests.indicators.legacy.registry import register
from tests.indicators.legacy.windows import push_where, series_after_nan


@register
class TEMA(Indicator):
    """Lag-reduced EMA built from three chained EMAs of the same period."""

    name = "tema"
    defaults = (30,)
    param_types = (int,)

    def setup(self) -> None:
        n = self.params[0]
        self.emas = [EMAState(n) for _ in range(3)]
        self.children = list(self.emas)

    @property
    def lookback(self) -> int:
        return 3 * (self.params[0] - 1)

    def step(self, slots: np.ndarray, bars: Bars) -> np.ndarray:
        e1 = self.emas[0].push(slots, bars.close)
        e2 = push_where(self.emas[1], slots, e1, ~np.isnan(e1))
        e3 = push_where(self.emas[2], slots, e2, ~np.isnan(e2))
        return (3.0 * e1 - 3.0 * e2 + e3)[:, None]

    def batch(self, bars: Bars) -> np.ndarray:
        e1 = self.emas[0].series(bars.close)
        e2 = series_after_nan(self.emas[1], e1)
        e3 = series_after_nan(self.emas[2], e2)
        # 3 e1 - 3 e2 + e3 in place on the arrays built here (same operations, no temporaries)
        e1 *= 3.0
        e2 *= 3.0
        e1 -= e2
        e1 += e3
        return e1[:, None]
