"""Keltner channels: an EMA of closes with bands a multiple of the ATR away."""

from __future__ import annotations

import numpy as np

from tests.indicators.legacy.atr import ATR
from tests.indicators.legacy.base import Bars, Indicator
from tests.indicators.legacy.ema import EMAState
from tests.indicators.legacy.registry import register


@register
class Keltner(Indicator):
    """EMA(close, ema period) +/- multiplier * ATR(atr period); all three start when both are valid.

    By default both averages are seeded as TA-Lib seeds EMA and ATR. ``from_first_bar`` seeds the EMA
    with the first close and the ATR with the first bar's range (pandas-based libraries, StockCharts
    sheets); it is a constructor option only, so it does not appear in the column label.
    """

    name = "keltner"
    outputs = ("upper", "middle", "lower")
    defaults = (20, 10, 2.0)
    param_types = (int, int, float)

    def __init__(self, ema_period: int = 20, atr_period: int = 10, multiplier: float = 2.0, *,
                 from_first_bar: bool = False) -> None:
        self.from_first_bar = from_first_bar
        super().__init__(ema_period, atr_period, multiplier)

    def setup(self) -> None:
        ema_period, atr_period, _ = self.params
        if self.from_first_bar:
            self.ema = EMAState(1, alpha=2.0 / (ema_period + 1))  # a one-value seed: the first close
        else:
            self.ema = EMAState(ema_period)
        self.atr = ATR(atr_period, from_first_bar=self.from_first_bar)
        self.children = [self.ema, self.atr]

    @property
    def lookback(self) -> int:
        return max(self.ema.lookback, self.atr.lookback)

    def _bands(self, middle: np.ndarray, atr: np.ndarray) -> np.ndarray:
        width = self.params[2] * atr
        out = np.column_stack((middle + width, middle, middle - width))
        out[np.isnan(width)] = np.nan
        return out

    def step(self, slots: np.ndarray, bars: Bars) -> np.ndarray:
        return self._bands(self.ema.push(slots, bars.close), self.atr.push(slots, bars))

    def batch(self, bars: Bars) -> np.ndarray:
        return self._bands(self.ema.series(bars.close), self.atr.series(bars))
