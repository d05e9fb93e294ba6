"""TRIX: one-bar percent change of a triple-smoothed EMA (TA-Lib TRIX)."""

from __future__ import annotations

import numpy as np

from engine.indicators.base import Indicator, StateSpec
from engine.indicators.ema import EMAState
from engine.indicators.jit import row_kernel
from engine.indicators.registry import register
from engine.indicators.scalar import percent_change
from engine.indicators.tema import triple_ema_push


@row_kernel
def trix_rows(slots, gap, ts, highs, lows, closes, volumes, out, col, h):
    emas, prev = h
    for r in range(len(slots)):
        if not gap[r]:
            slot = slots[r]
            e3 = triple_ema_push(emas, slot, closes[r])[2]
            old = prev[slot]
            prev[slot] = e3
            out[r, col] = percent_change(e3, old)  # NaN while the previous value is NaN


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

    def kernel(self):
        return trix_rows, (tuple(e.handle() for e in self.emas), self.s["prev"])
