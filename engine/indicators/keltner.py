"""Keltner channels: an EMA of closes with bands a multiple of the ATR away."""

from __future__ import annotations

import numpy as np

from engine.indicators.atr import ATR, atr_push
from engine.indicators.base import Indicator
from engine.indicators.ema import EMAState, ema_push
from engine.indicators.jit import row_kernel
from engine.indicators.registry import register


@row_kernel
def keltner_rows(slots, gap, ts, highs, lows, closes, volumes, out, col, h):
    ema, atr_h, multiplier = h
    for r in range(len(slots)):
        if gap[r]:
            continue
        slot, close = slots[r], closes[r]
        middle = ema_push(ema, slot, close)
        width = multiplier * atr_push(atr_h, slot, highs[r], lows[r], close)
        if np.isnan(width):
            out[r, col], out[r, col + 1], out[r, col + 2] = np.nan, np.nan, np.nan
        else:
            out[r, col], out[r, col + 1], out[r, col + 2] = middle + width, middle, middle - width


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
        return max(self.ema.period - 1, self.atr.lookback)

    def kernel(self):
        return keltner_rows, (self.ema.handle(), self.atr.handle(), float(self.params[2]))
