"""Supertrend: a trailing stop at hl2 +/- multiplier * ATR that flips with the close."""

from __future__ import annotations

import numpy as np

from tests.indicators.legacy.atr import ATR
from tests.indicators.legacy.base import Bars, Indicator, StateSpec, nan_out
from tests.indicators.legacy.registry import register


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

    def step(self, slots: np.ndarray, bars: Bars) -> np.ndarray:
        s = self.s
        atr = self.atr.push(slots, bars)
        mid = (bars.high + bars.low) / 2.0
        width = self.params[1] * atr
        basic_upper, basic_lower = mid + width, mid - width
        close, prev_close = bars.close, s["close"][slots]
        prev_upper, prev_lower = s["upper"][slots], s["lower"][slots]
        prev_dir = s["direction"][slots]
        started = prev_dir != 0
        upper = np.where(~started | (basic_upper < prev_upper) | (prev_close > prev_upper),
                         basic_upper, prev_upper)
        lower = np.where(~started | (basic_lower > prev_lower) | (prev_close < prev_lower),
                         basic_lower, prev_lower)
        direction = np.where(prev_dir < 0, np.where(close > upper, 1.0, -1.0),
                             np.where(close < lower, -1.0, 1.0))
        direction = np.where(started, direction, np.where(close <= upper, -1.0, 1.0))
        ready = ~np.isnan(atr)
        s["upper"][slots] = np.where(ready, upper, prev_upper)
        s["lower"][slots] = np.where(ready, lower, prev_lower)
        s["direction"][slots] = np.where(ready, direction, prev_dir)
        s["close"][slots] = close
        out = np.column_stack((np.where(direction > 0, lower, upper), direction))
        out[~ready] = np.nan
        return out

    def batch(self, bars: Bars) -> np.ndarray:
        out = nan_out(len(bars), 2)
        start = self.lookback
        if len(bars) <= start:
            return out
        atr = self.atr.series(bars)
        mid = (bars.high + bars.low) / 2.0
        width = self.params[1] * atr
        basic_upper, basic_lower = (mid + width).tolist(), (mid - width).tolist()
        close = bars.close.tolist()
        upper, lower = basic_upper[start], basic_lower[start]
        direction = -1.0 if close[start] <= upper else 1.0
        line, trend = [lower if direction > 0 else upper], [direction]
        # each band depends on its own previous value and the trend on both: a loop over time
        for i in range(start + 1, len(close)):
            bu, bl, c, pc = basic_upper[i], basic_lower[i], close[i], close[i - 1]
            if bu < upper or pc > upper:
                upper = bu
            if bl > lower or pc < lower:
                lower = bl
            if direction < 0:
                direction = 1.0 if c > upper else -1.0
            else:
                direction = -1.0 if c < lower else 1.0
            line.append(lower if direction > 0 else upper)
            trend.append(direction)
        out[start:, 0] = line
        out[start:, 1] = trend
        return out
