"""Money flow index: the share of up-moving money flow over ``period`` bars, 0 to 100."""

from __future__ import annotations

import numpy as np

from engine.indicators.base import Indicator
from engine.indicators.jit import row_kernel
from engine.indicators.registry import register
from engine.indicators.scalar import near_zero
from engine.indicators.windows import PrevBar, RollingSums, prev_bar_push, rolling_sums_push, rolling_sums_value


@row_kernel
def mfi_rows(slots, gap, ts, highs, lows, closes, volumes, out, col, h):
    prev, sums = h
    for r in range(len(slots)):
        if gap[r]:
            continue
        slot = slots[r]
        high, low, close, volume = highs[r], lows[r], closes[r], volumes[r]
        prev_high, prev_low, prev_close = prev_bar_push(prev, slot, high, low, close)
        out[r, col] = np.nan
        if np.isnan(prev_close):
            continue
        tp = (high + low + close) / 3.0
        prev_tp = (prev_high + prev_low + prev_close) / 3.0
        diff = tp - prev_tp
        # equal typical prices summed from different highs/lows/closes can differ in the last bits
        flow = 0.0 if near_zero(diff, abs(tp) + abs(prev_tp)) else tp * volume
        up = flow if diff > 0 else 0.0
        down = flow if diff < 0 else 0.0
        # whether each flow is non-zero: a running sum of flows that all left the window keeps a
        # rounding residue, the counts say it is 0
        if rolling_sums_push(sums, slot, (up, down, 1.0 if up != 0 else 0.0, 1.0 if down != 0 else 0.0)):
            pos = rolling_sums_value(sums, slot, 0) if rolling_sums_value(sums, slot, 2) > 0 else 0.0
            neg = rolling_sums_value(sums, slot, 1) if rolling_sums_value(sums, slot, 3) > 0 else 0.0
            total = pos + neg
            # no money flowed in the window: 0, as TA-Lib
            out[r, col] = 100.0 * (pos / total) if total != 0 else 0.0


@register
class MFI(Indicator):
    """MFI as TA-Lib: typical-price money flow, up or down against the previous bar or neither.

    Typical prices within TA-Lib's dead zone (1e-14 of their size) count as unchanged.
    """

    name = "mfi"
    defaults = (14,)
    param_types = (int,)

    def setup(self) -> None:
        self.prev = PrevBar()
        self.sums = RollingSums(self.params[0], 4)
        self.children = [self.prev, self.sums]

    @property
    def lookback(self) -> int:
        return self.params[0]

    def kernel(self):
        return mfi_rows, (self.prev.handle(), self.sums.handle())
