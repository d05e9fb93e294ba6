"""Parabolic SAR (Wilder's stop and reverse), with TA-Lib's start and bounds."""

from __future__ import annotations

from array import array

import numpy as np

from tests.indicators.legacy.base import Bars, Indicator, StateSpec, nan_out
from tests.indicators.legacy.registry import register


@register
class SAR(Indicator):
    """Parabolic SAR as TA-Lib: output from bar 1, the first two bars pick the trend (short if -DM > 0).

    The stop starts at the first bar's low (long) or high (short) and is kept outside the current
    and previous bar's range; on a reversal it restarts at the extreme point of the ended trend.
    """

    name = "sar"
    defaults = (0.02, 0.2)
    param_types = (float, float)

    def state_spec(self) -> StateSpec:
        return {"long": ((), np.bool_, False), "sar": ((), np.float64, np.nan),
                "ep": ((), np.float64, np.nan), "af": ((), np.float64, np.nan),
                "prev_high": ((), np.float64, np.nan), "prev_low": ((), np.float64, np.nan),
                "count": ((), np.int64, 0)}

    @property
    def lookback(self) -> int:
        return 1

    def _steps(self) -> tuple[float, float]:
        step, limit = self.params
        return min(step, limit), limit  # TA-Lib caps the acceleration at the maximum

    def step(self, slots: np.ndarray, bars: Bars) -> np.ndarray:
        acc, limit = self._steps()
        s = self.s
        high, low = bars.high, bars.low
        count = s["count"][slots]
        prev_high, prev_low = s["prev_high"][slots], s["prev_low"][slots]
        # second bar: pick the trend from the first two bars; that bar is then compared with itself
        start = count == 1
        short_start = (prev_low - low > 0) & (high - prev_high < prev_low - low)
        is_long = np.where(start, ~short_start, s["long"][slots])
        sar = np.where(start, np.where(short_start, prev_high, prev_low), s["sar"][slots])
        ep = np.where(start, np.where(short_start, low, high), s["ep"][slots])
        af = np.where(start, acc, s["af"][slots])
        prev_high = np.where(start, high, prev_high)
        prev_low = np.where(start, low, prev_low)

        to_short = is_long & (low <= sar)
        to_long = ~is_long & (high >= sar)
        flipped = to_short | to_long
        out = np.where(to_short, np.maximum(np.maximum(ep, prev_high), high),
                       np.where(to_long, np.minimum(np.minimum(ep, prev_low), low), sar))
        new_long = np.where(flipped, to_long, is_long)
        extends = ~flipped & np.where(is_long, high > ep, low < ep)
        ep = np.where(flipped | extends, np.where(new_long, high, low), ep)
        af = np.where(flipped, acc, np.where(extends, np.minimum(af + acc, limit), af))
        nxt = out + af * (ep - out)
        nxt = np.where(new_long, np.minimum(np.minimum(nxt, prev_low), low),
                       np.maximum(np.maximum(nxt, prev_high), high))

        s["long"][slots] = new_long
        s["sar"][slots] = nxt
        s["ep"][slots] = ep
        s["af"][slots] = af
        s["prev_high"][slots] = high
        s["prev_low"][slots] = low
        s["count"][slots] = count + 1
        return np.where(count >= 1, out, np.nan)[:, None]

    def batch(self, bars: Bars) -> np.ndarray:
        acc, limit = self._steps()
        out = nan_out(len(bars))
        if len(bars) < 2:
            return out
        # memoryviews yield Python floats one at a time (no full lists of float objects)
        high = memoryview(np.ascontiguousarray(bars.high, np.float64))
        low = memoryview(np.ascontiguousarray(bars.low, np.float64))
        short_start = low[0] - low[1] > 0 and high[1] - high[0] < low[0] - low[1]
        is_long = not short_start
        sar, ep = (high[0], low[1]) if short_start else (low[0], high[1])
        af = acc
        prev_high, prev_low = high[1], low[1]
        res = array("d")  # unboxed results, read back without a copy
        emit = res.append
        # the stop depends on its own clipped past and on reversals: a loop over time, not a filter.
        # Python floats throughout; in-place updates and comparisons instead of min()/max() calls
        # on the per-bar path (the same values: the acceleration is capped, the stop clipped).
        for h, lo in zip(high[1:], low[1:]):
            if is_long:
                if lo <= sar:  # reverse to short at the extreme point, outside both bars' highs
                    is_long = False
                    sar = max(ep, prev_high, h)
                    af, ep = acc, lo
                elif h > ep:
                    ep = h
                    af += acc
                    if af > limit:
                        af = limit
            elif h >= sar:  # reverse to long
                is_long = True
                sar = min(ep, prev_low, lo)
                af, ep = acc, h
            elif lo < ep:
                ep = lo
                af += acc
                if af > limit:
                    af = limit
            emit(sar)
            sar += af * (ep - sar)
            if is_long:  # never above the two bars' lows
                if sar > prev_low:
                    sar = prev_low
                if sar > lo:
                    sar = lo
            else:
                if sar < prev_high:
                    sar = prev_high
                if sar < h:
                    sar = h
            prev_high = h
            prev_low = lo
        out[1:, 0] = np.frombuffer(res, np.float64)
        return out
