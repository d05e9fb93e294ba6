"""Wilder's RSI, its averages seeded by the mean of the first ``period`` moves (TA-Lib RSI)."""

from __future__ import annotations

import numpy as np

from engine.indicators.base import Indicator, StateSpec
from engine.indicators.ema import EMAState, ema_push
from engine.indicators.jit import inlined, row_kernel
from engine.indicators.registry import register
from engine.indicators.scalar import maximum


@inlined
def rsi_push(h, slot, close):
    """RSI of the slot after this close; NaN in warm-up."""
    prev, gain, loss = h
    p = prev[slot]
    prev[slot] = close
    if np.isnan(p):  # the first bar only supplies a previous close
        return np.nan
    change = close - p
    g = ema_push(gain, slot, maximum(change, 0.0))
    l_ = ema_push(loss, slot, maximum(-change, 0.0))
    if np.isnan(g):
        return np.nan
    total = g + l_
    # 0 for a history without any move, as TA-Lib answers
    return 100.0 * (g / total) if total != 0.0 else 0.0


@row_kernel
def rsi_rows(slots, gap, ts, highs, lows, closes, volumes, out, col, h):
    for r in range(len(slots)):
        if not gap[r]:
            out[r, col] = rsi_push(h, slots[r], closes[r])


@register
class RSI(Indicator):
    """Wilder's RSI of closes."""

    name = "rsi"
    defaults = (14,)
    param_types = (int,)

    def setup(self) -> None:
        n = self.params[0]
        # Wilder smoothing is the EMA recursion with alpha 1/n, seeded by the simple mean
        self.gain, self.loss = EMAState(n, alpha=1.0 / n), EMAState(n, alpha=1.0 / n)
        self.children = [self.gain, self.loss]

    def state_spec(self) -> StateSpec:
        return {"prev": ((), np.float64, np.nan)}  # previous close, NaN before the first bar

    @property
    def lookback(self) -> int:
        return self.params[0]

    def handle(self) -> tuple:
        return self.s["prev"], self.gain.handle(), self.loss.handle()

    def kernel(self):
        return rsi_rows, self.handle()
