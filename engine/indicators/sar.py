"""Parabolic SAR (Wilder's stop and reverse), with TA-Lib's start and bounds."""

from __future__ import annotations

import numpy as np

from engine.indicators.base import Indicator, StateSpec
from engine.indicators.jit import row_kernel
from engine.indicators.registry import register
from engine.indicators.scalar import maximum, minimum


@row_kernel
def sar_rows(slots, gap, ts, highs, lows, closes, volumes, out, col, h):
    long_, sar, ep, af, prev_high, prev_low, count, acc, limit = h
    for r in range(len(slots)):
        if gap[r]:
            continue
        slot, high, low = slots[r], highs[r], lows[r]
        c = count[slot]
        count[slot] = c + 1
        if c == 0:  # the first bar only supplies the previous high and low
            prev_high[slot], prev_low[slot] = high, low
            out[r, col] = np.nan
            continue
        ph, pl = prev_high[slot], prev_low[slot]
        is_long, stop, point, step = long_[slot], sar[slot], ep[slot], af[slot]
        if c == 1:  # the second bar: pick the trend from the first two bars (short if -DM > 0 wins)
            short_start = pl - low > 0 and high - ph < pl - low
            is_long = not short_start
            stop, point = (ph, low) if short_start else (pl, high)
            step = acc
            ph, pl = high, low  # that bar is then compared with itself
        to_short = is_long and low <= stop
        to_long = not is_long and high >= stop
        if to_short:  # reverse at the extreme point, outside the two bars' range
            value = maximum(maximum(point, ph), high)
        elif to_long:
            value = minimum(minimum(point, pl), low)
        else:
            value = stop
        flipped = to_short or to_long
        new_long = to_long if flipped else is_long
        extends = not flipped and (high > point if is_long else low < point)
        if flipped or extends:
            point = high if new_long else low
        if flipped:
            step = acc
        elif extends:
            step = minimum(step + acc, limit)
        nxt = value + step * (point - value)
        # never inside the two bars' range
        nxt = minimum(minimum(nxt, pl), low) if new_long else maximum(maximum(nxt, ph), high)
        long_[slot], sar[slot], ep[slot], af[slot] = new_long, nxt, point, step
        prev_high[slot], prev_low[slot] = high, low
        out[r, col] = value


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

    def kernel(self):
        step, limit = self.params
        s = self.s
        # TA-Lib caps the acceleration at the maximum
        return sar_rows, (s["long"], s["sar"], s["ep"], s["af"], s["prev_high"], s["prev_low"], s["count"],
                          float(min(step, limit)), float(limit))
