"""Normalised average true range: ATR as a percentage of the close."""

from __future__ import annotations

from engine.indicators.atr import ATR, atr_push
from engine.indicators.base import Indicator
from engine.indicators.jit import row_kernel
from engine.indicators.registry import register


@row_kernel
def natr_rows(slots, gap, ts, highs, lows, closes, volumes, out, col, h):
    for r in range(len(slots)):
        if not gap[r]:
            close = closes[r]
            atr = atr_push(h, slots[r], highs[r], lows[r], close)
            # TA-Lib gives 0 for a zero close; atr * 0.0 keeps the warm-up NaN
            out[r, col] = (atr / close) * 100.0 if close != 0 else atr * 0.0


@register
class NATR(Indicator):
    """100 * ATR / close (TA-Lib's NATR)."""

    name = "natr"
    defaults = (14,)
    param_types = (int,)

    def setup(self) -> None:
        self.atr = ATR(self.params[0])
        self.children = [self.atr]

    @property
    def lookback(self) -> int:
        return self.atr.lookback

    def kernel(self):
        return natr_rows, self.atr.handle()
