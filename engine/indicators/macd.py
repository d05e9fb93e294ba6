"""MACD: fast EMA - slow EMA, its signal EMA and the histogram (TA-Lib MACD alignment)."""

from __future__ import annotations

import numpy as np

from engine.indicators.base import Indicator, StateSpec
from engine.indicators.ema import EMAState, ema_push, ema_push_valid
from engine.indicators.jit import row_kernel
from engine.indicators.registry import register
from schemas.errors import IndicatorSpecError


@row_kernel
def macd_rows(slots, gap, ts, highs, lows, closes, volumes, out, col, h):
    fast, slow, signal, count, fast_skip = h
    for r in range(len(slots)):
        if gap[r]:
            continue
        slot, x = slots[r], closes[r]
        c = count[slot] + 1
        count[slot] = c
        s = ema_push(slow, slot, x)
        f = ema_push(fast, slot, x) if c > fast_skip else np.nan
        line = f - s
        sig = ema_push_valid(signal, slot, line)
        if np.isnan(sig):  # like TA-Lib, nothing until the signal exists
            out[r, col], out[r, col + 1], out[r, col + 2] = np.nan, np.nan, np.nan
        else:
            out[r, col], out[r, col + 1], out[r, col + 2] = line, sig, line - sig


@register
class MACD(Indicator):
    """Moving average convergence/divergence; outputs the line, ``signal`` and ``hist``."""

    name = "macd"
    outputs = ("", "signal", "hist")
    defaults = (12, 26, 9)
    param_types = (int, int, int)

    def validate(self) -> None:
        super().validate()
        fast, slow, _signal = self.params
        if fast >= slow:
            raise IndicatorSpecError(f"{self.name}: fast period must be below slow, got {fast} >= {slow}")

    def setup(self) -> None:
        fast, slow, signal = self.params
        self.fast, self.slow, self.signal = EMAState(fast), EMAState(slow), EMAState(signal)
        self.children = [self.fast, self.slow, self.signal]
        # TA-Lib seeds the fast EMA on the ``fast`` closes ending where the slow seed ends, so
        # both EMAs start on the same bar: the fast one skips the first slow-fast closes.
        self.fast_skip = slow - fast

    def state_spec(self) -> StateSpec:
        return {"count": ((), np.int64, 0)}

    @property
    def lookback(self) -> int:
        return self.params[1] - 1 + self.params[2] - 1

    def kernel(self):
        return macd_rows, (self.fast.handle(), self.slow.handle(), self.signal.handle(), self.s["count"],
                           self.fast_skip)
