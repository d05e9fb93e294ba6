"""Supertrend: a trailing stop at hl2 +/- multiplier * ATR that flips with the close."""

from __future__ import annotations

import numpy as np

from engine.indicators.atr import ATR, atr_push
from engine.indicators.base import Indicator, StateSpec
from engine.indicators.jit import row_kernel
from engine.indicators.registry import register


@row_kernel
def supertrend_rows(slots, gap, ts, highs, lows, closes, volumes, out, col, h):
    atr_h, upper_s, lower_s, direction_s, close_s, multiplier = h
    for r in range(len(slots)):
        if gap[r]:
            continue
        slot, high, low, close = slots[r], highs[r], lows[r], closes[r]
        atr = atr_push(atr_h, slot, high, low, close)
        prev_close = close_s[slot]
        close_s[slot] = close
        if np.isnan(atr):
            out[r, col], out[r, col + 1] = np.nan, np.nan
            continue
        mid = (high + low) / 2.0
        width = multiplier * atr
        basic_upper, basic_lower = mid + width, mid - width
        prev_upper, prev_lower, prev_dir = upper_s[slot], lower_s[slot], direction_s[slot]
        if prev_dir == 0:  # the first valid bar: a downtrend unless the close is above the upper band
            upper, lower = basic_upper, basic_lower
            direction = -1.0 if close <= upper else 1.0
        else:
            # bands only tighten while the previous close stays inside them
            upper = basic_upper if basic_upper < prev_upper or prev_close > prev_upper else prev_upper
            lower = basic_lower if basic_lower > prev_lower or prev_close < prev_lower else prev_lower
            if prev_dir < 0:
                direction = 1.0 if close > upper else -1.0
            else:
                direction = -1.0 if close < lower else 1.0
        upper_s[slot], lower_s[slot], direction_s[slot] = upper, lower, direction
        out[r, col], out[r, col + 1] = lower if direction > 0 else upper, direction


@register
class Supertrend(Indicator):
    """The line and the trend direction (+1 up: line is the lower band; -1 down: the upper band).

    Bands only tighten while the previous close stays inside them. The first valid bar is a
    downtrend unless the close is above the upper band. ATR is TA-Lib's: the line starts at bar ``period``.
    """

    name = "supertrend"
    outputs = ("", "direction")
    defaults = (10, 3.0)
    param_types = (int, float)

    def setup(self) -> None:
        self.atr = ATR(self.params[0])
        self.children = [self.atr]

    def state_spec(self) -> StateSpec:
        # direction 0 means not started
        return {"upper": ((), np.float64, np.nan), "lower": ((), np.float64, np.nan),
                "direction": ((), np.float64, 0.0), "close": ((), np.float64, np.nan)}

    @property
    def lookback(self) -> int:
        return self.atr.lookback

    def kernel(self):
        s = self.s
        return supertrend_rows, (self.atr.handle(), s["upper"], s["lower"], s["direction"], s["close"],
                                 float(self.params[1]))
