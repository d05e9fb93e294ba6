"""Ultimate oscillator: buying pressure over true range on three horizons, weighted 4:2:1."""

from __future__ import annotations

import numpy as np

from engine.indicators.base import Indicator
from engine.indicators.jit import inlined, row_kernel
from engine.indicators.registry import register
from engine.indicators.scalar import minimum, true_range
from engine.indicators.windows import PrevBar, RollingSums, prev_bar_push, rolling_sums_push, rolling_sums_value


@inlined
def _average(h, slot):
    """Buying pressure over true range of one horizon."""
    # the range count tells a window without range exactly; TA-Lib tests |sum| < 1e-14 instead,
    # an absolute bound that a running sum's residue can miss
    if rolling_sums_value(h, slot, 2) > 0:
        return rolling_sums_value(h, slot, 0) / rolling_sums_value(h, slot, 1)
    return 0.0


@row_kernel
def ultosc_rows(slots, gap, ts, highs, lows, closes, volumes, out, col, h):
    prev, short, mid, long_ = h
    for r in range(len(slots)):
        if gap[r]:
            continue
        slot, high, low, close = slots[r], highs[r], lows[r], closes[r]
        _, _, prev_close = prev_bar_push(prev, slot, high, low, close)
        out[r, col] = np.nan
        if np.isnan(prev_close):
            continue
        tr = true_range(high, low, prev_close)
        x = (close - minimum(low, prev_close), tr, 1.0 if tr != 0 else 0.0)
        rolling_sums_push(short, slot, x)
        rolling_sums_push(mid, slot, x)
        if rolling_sums_push(long_, slot, x):  # the longest window is full
            a_short, a_mid, a_long = _average(short, slot), _average(mid, slot), _average(long_, slot)
            out[r, col] = 100.0 * ((4.0 * a_short + 2.0 * a_mid + a_long) / 7.0)


@register
class UltOsc(Indicator):
    """TA-Lib's ULTOSC; the periods are sorted so the shortest always weighs 4 and the longest 1."""

    name = "ultosc"
    defaults = (7, 14, 28)
    param_types = (int, int, int)

    def setup(self) -> None:
        self.prev = PrevBar()
        self.sums = [RollingSums(p, 3) for p in sorted(self.params)]
        self.children = [self.prev, *self.sums]

    @property
    def lookback(self) -> int:
        return max(self.params)

    def kernel(self):
        return ultosc_rows, (self.prev.handle(), *(s.handle() for s in self.sums))
