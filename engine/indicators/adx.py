"""Average directional index: Wilder's smoothing of DX, computed as TA-Lib computes it."""

from __future__ import annotations

import numpy as np

from engine.indicators.base import Indicator, StateSpec
from engine.indicators.jit import inlined, row_kernel
from engine.indicators.registry import register
from engine.indicators.windows import DirectionalSums, directional_indicators, directional_sums_push


@inlined
def directional_index(plus_dm, minus_dm, tr):
    """(DX, defined) from DirectionalSums; DX is undefined without range or movement."""
    plus, minus = directional_indicators(plus_dm, minus_dm, tr)
    total = minus + plus
    defined = tr != 0 and total != 0
    return 100.0 * (abs(minus - plus) / (total if defined else 1.0)), defined


@row_kernel
def adx_rows(slots, gap, ts, highs, lows, closes, volumes, out, col, h):
    dm, adx, count, n = h
    alpha = 1.0 / n
    for r in range(len(slots)):
        if gap[r]:
            continue
        slot = slots[r]
        plus_dm, minus_dm, tr = directional_sums_push(dm, slot, highs[r], lows[r], closes[r])
        dx, defined = directional_index(plus_dm, minus_dm, tr)
        value, c = adx[slot], count[slot]
        if not np.isnan(plus_dm):
            c += 1  # DX values seen
            if c <= n:  # the seed: the mean of the first n DX values, undefined ones counting 0
                value = value + (dx if defined else 0.0)
                if c == n:
                    value = value / n
            elif defined:  # then Wilder's smoothing, holding the value over undefined bars
                # alpha*x + (1-alpha)*y, the update the vectorised form performed
                value = alpha * dx + (1.0 - alpha) * value
        adx[slot], count[slot] = value, c
        out[r, col] = value if c >= n else np.nan


@register
class ADX(Indicator):
    """ADX: the mean of the first ``period`` DX values, then Wilder-smoothed DX.

    As in TA-Lib, a bar whose DX is undefined counts as 0 in the seed and leaves ADX unchanged after.
    """

    name = "adx"
    defaults = (14,)
    param_types = (int,)

    def setup(self) -> None:
        self.dm = DirectionalSums(self.params[0])
        self.children = [self.dm]

    def state_spec(self) -> StateSpec:
        return {"adx": ((), np.float64, 0.0), "count": ((), np.int64, 0)}

    @property
    def lookback(self) -> int:
        return 2 * self.params[0] - 1

    def kernel(self):
        return adx_rows, (self.dm.handle(), self.s["adx"], self.s["count"], self.params[0])
