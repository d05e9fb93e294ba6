"""Double exponential moving average, 2*EMA - EMA(EMA) (TA-Lib DEMA)."""

from __future__ import annotations

from engine.indicators.base import Indicator
from engine.indicators.ema import EMAState, ema_push, ema_push_valid
from engine.indicators.jit import row_kernel
from engine.indicators.registry import register


@row_kernel
def dema_rows(slots, gap, ts, highs, lows, closes, volumes, out, col, h):
    ema1, ema2 = h
    for r in range(len(slots)):
        if not gap[r]:
            e1 = ema_push(ema1, slots[r], closes[r])
            e2 = ema_push_valid(ema2, slots[r], e1)  # the second EMA starts with the first's values
            out[r, col] = 2.0 * e1 - e2


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

    def kernel(self):
        return dema_rows, (self.ema1.handle(), self.ema2.handle())
