"""Money flow index: the share of up-moving money flow over ``period`` bars, 0 to 100."""

from __future__ import annotations

import numpy as np

from tests.indicators.legacy.base import Bars, Indicator, nan_out
from tests.indicators.legacy.registry import register
from tests.indicators.legacy.windows import (
    PrevBar,
    RollingSums,
    near_zero,
    running_sums,
    window_counts,
)


def _flows(tp: np.ndarray, prev_tp: np.ndarray, volume: np.ndarray) -> tuple[np.ndarray, ...]:
    """Up flow, down flow, and whether each is non-zero (to know an empty window's sum exactly)."""
    diff = tp - prev_tp
    # equal typical prices summed from different highs/lows/closes can differ in the last bits
    flow = np.where(near_zero(diff, np.abs(tp) + np.abs(prev_tp)), 0.0, tp * volume)
    up = np.where(diff > 0, flow, 0.0)
    down = np.where(diff < 0, flow, 0.0)
    return up, down, up != 0, down != 0


def _mfi(sums: np.ndarray) -> np.ndarray:
    # a running sum of flows that all left the window keeps a rounding residue; counts say it is 0
    pos = np.where(sums[:, 2] > 0, sums[:, 0], 0.0)
    neg = np.where(sums[:, 3] > 0, sums[:, 1], 0.0)
    total = pos + neg
    # no money flowed in the window: 0, as TA-Lib
    return np.where(total != 0, 100.0 * (pos / np.where(total != 0, total, 1.0)), 0.0)


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

    def step(self, slots: np.ndarray, bars: Bars) -> np.ndarray:
        prev_high, prev_low, prev_close = self.prev.push(slots, bars)
        seen = ~np.isnan(prev_close)
        tp = (bars.high + bars.low + bars.close) / 3.0
        prev_tp = (prev_high + prev_low + prev_close) / 3.0
        x = np.column_stack(_flows(tp, prev_tp, bars.volume))[seen]
        sums, full = self.sums.push(slots[seen], x)
        out = np.full((len(slots), 1), np.nan)
        rows = np.flatnonzero(seen)[full]
        out[rows, 0] = _mfi(sums[full])
        return out

    def batch(self, bars: Bars) -> np.ndarray:
        n = self.params[0]
        out = nan_out(len(bars))
        if len(bars) <= n:
            return out
        tp = bars.high + bars.low
        tp += bars.close
        tp /= 3.0
        cur, prev = tp[1:], tp[:-1]
        # ``_flows`` without its temporaries: the same values, built in place
        diff = cur - prev
        scale = np.abs(cur)
        scale += np.abs(prev)
        scale *= 1e-14
        flow = cur * bars.volume[1:]
        flow[np.abs(diff) <= scale] = 0.0  # near_zero
        # flows are finite and non-negative, so multiplying by the 0/1 direction selects them
        # (no data-dependent branches, unlike np.where on an unpredictable mask)
        up = flow * (diff > 0)
        down = flow
        down *= diff < 0
        tail = slice(n - 1, None)
        # ``_mfi`` on separate columns: a window with no flows counted sums to exactly 0
        pos = running_sums(up, n)[tail]
        pos[window_counts(up != 0, n)[tail] == 0] = 0.0
        neg = running_sums(down, n)[tail]
        neg[window_counts(down != 0, n)[tail] == 0] = 0.0
        total = pos + neg
        empty = total == 0
        total[empty] = 1.0
        pos /= total
        pos *= 100.0
        pos[empty] = 0.0
        out[n:, 0] = pos
        return out
