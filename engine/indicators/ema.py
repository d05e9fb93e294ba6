"""Exponential moving average, seeded with the SMA of the first ``period`` values (as TA-Lib)."""

from __future__ import annotations

import numpy as np

from engine.indicators.base import Indicator, SlotState, StateSpec
from engine.indicators.jit import inlined, row_kernel
from engine.indicators.registry import register


class EMAState(SlotState):
    """EMA of an arbitrary input series per slot; the primitive behind EMA, MACD, DEMA, TEMA, TRIX.

    ``alpha`` defaults to 2/(n+1); Wilder smoothing is the same recursion with alpha 1/n.
    """

    def __init__(self, period: int = 30, alpha: float | None = None) -> None:
        super().__init__()
        self.period = period
        self.alpha = 2.0 / (period + 1) if alpha is None else alpha

    def state_spec(self) -> StateSpec:
        return {"value": ((), np.float64, 0.0), "count": ((), np.int64, 0)}

    def handle(self) -> tuple:
        return self.s["value"], self.s["count"], self.period, self.alpha


@inlined
def ema_push(h, slot, x):
    """Feed one value to the slot's EMA; return the EMA (NaN until ``period`` values were seen)."""
    value, count, n, alpha = h
    v = value[slot]
    c = count[slot] + 1
    if c <= n:  # warm-up accumulates the plain sum; at count == n it becomes the SMA seed
        v = v + x
        if c == n:
            v = v / n
    else:
        # the operations, in the order, of the recursion the vectorised forms ran (scipy's lfilter)
        v = alpha * x - v * (alpha - 1.0)
    value[slot] = v
    count[slot] = c
    return v if c >= n else np.nan


@inlined
def ema_push_valid(h, slot, x):
    """``ema_push`` for chained smoothers: a NaN input (the previous stage in warm-up) leaves the
    slot's EMA untouched and gives NaN."""
    if np.isnan(x):
        return np.nan
    return ema_push(h, slot, x)


@row_kernel
def ema_rows(slots, gap, ts, highs, lows, closes, volumes, out, col, h):
    for r in range(len(slots)):
        if not gap[r]:
            out[r, col] = ema_push(h, slots[r], closes[r])


@register
class EMA(Indicator):
    """Exponential moving average of closes."""

    name = "ema"
    defaults = (30,)
    param_types = (int,)

    def setup(self) -> None:
        self.ema = EMAState(self.params[0])
        self.children = [self.ema]

    @property
    def lookback(self) -> int:
        return self.params[0] - 1

    def kernel(self):
        return ema_rows, self.ema.handle()
