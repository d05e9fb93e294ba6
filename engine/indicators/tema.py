"""Triple exponential moving average, 3*EMA - 3*EMA(EMA) + EMA(EMA(EMA)) (TA-Lib TEMA)."""

from __future__ import annotations

from engine.indicators.base import Indicator
from engine.indicators.ema import EMAState, ema_push, ema_push_valid
from engine.indicators.jit import inlined, row_kernel
from engine.indicators.registry import register


@inlined
def triple_ema_push(h, slot, x):
    """(EMA, EMA of EMA, EMA of that) of the slot; each stage starts with its input's first value."""
    ema1, ema2, ema3 = h
    e1 = ema_push(ema1, slot, x)
    e2 = ema_push_valid(ema2, slot, e1)
    return e1, e2, ema_push_valid(ema3, slot, e2)


@row_kernel
def tema_rows(slots, gap, ts, highs, lows, closes, volumes, out, col, h):
    for r in range(len(slots)):
        if not gap[r]:
            e1, e2, e3 = triple_ema_push(h, slots[r], closes[r])
            out[r, col] = 3.0 * e1 - 3.0 * e2 + e3


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

    def kernel(self):
        return tema_rows, tuple(e.handle() for e in self.emas)
