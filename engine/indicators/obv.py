"""On-balance volume: running total of volume signed by the close's direction."""

from __future__ import annotations

import numpy as np

from engine.indicators.base import Indicator, StateSpec
from engine.indicators.jit import row_kernel
from engine.indicators.registry import register
from engine.indicators.windows import PrevBar, prev_bar_push


@row_kernel
def obv_rows(slots, gap, ts, highs, lows, closes, volumes, out, col, h):
    prev, obv = h
    for r in range(len(slots)):
        if gap[r]:
            continue
        slot = slots[r]
        close, volume = closes[r], volumes[r]
        _, _, prev_close = prev_bar_push(prev, slot, highs[r], lows[r], close)
        if np.isnan(prev_close):
            value = volume
        else:
            value = obv[slot] + np.sign(close - prev_close) * volume
        obv[slot] = value
        out[r, col] = value


@register
class OBV(Indicator):
    """OBV as TA-Lib: starts at the first bar's volume; an unchanged close adds nothing."""

    name = "obv"

    def setup(self) -> None:
        self.prev = PrevBar()
        self.children = [self.prev]

    def state_spec(self) -> StateSpec:
        return {"obv": ((), np.float64, 0.0)}

    @property
    def lookback(self) -> int:
        return 0

    def kernel(self):
        return obv_rows, (self.prev.handle(), self.s["obv"])
