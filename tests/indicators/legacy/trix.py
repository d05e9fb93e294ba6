"""TRIX: one-bar percent change of a triple-smoothed EMA (TA-Lib TRIX)."""

from __future__ import annotations

import numpy as np

from tests.indicators.legacy.base import Bars, Indicator, StateSpec, nan_out
from tests.indicators.legacy.ema import EMAState
from tests.indicators.legacy.registry import register
from tests.indicators.legacy.roc import percent_change
from tests.indicators.legacy.windows import push_where, series_after_nan


@register
class TRIX(Indicator):
    """Rate of change (x100) of EMA(EMA(EMA(close)))."""

    name = "trix"
    defaults = (30,)
    param_types = (int,)

    def setup(self) -> None:
        n = self.params[0]
        self.emas = [EMAState(n) for _ in range(3)]
        self.children = list(self.emas)

    def state_spec(self) -> StateSpec:
        return {"prev": ((), np.float64, np.nan)}  # last triple EMA, NaN until it exists

    @property
    def lookback(self) -> int:
        return 3 * (self.params[0] - 1) + 1

    def step(self, slots: np.ndarray, bars: Bars) -> np.ndarray:
        e1 = self.emas[0].push(slots, bars.close)
        e2 = push_where(self.emas[1], slots, e1, ~np.isnan(e1))
        e3 = push_where(self.emas[2], slots, e2, ~np.isnan(e2))
        prev = self.s["prev"][slots]
        self.s["prev"][slots] = e3
        return percent_change(e3, prev)[:, None]  # NaN while prev is NaN

    def batch(self, bars: Bars) -> np.ndarray:
        e3 = self.emas[0].series(bars.close)
        for ema in self.emas[1:]:
            e3 = series_after_nan(ema, e3)
        out = nan_out(len(bars))
        if len(bars) > 1:
            out[1:, 0] = percent_change(e3[1:], e3[:-1])
        return out
