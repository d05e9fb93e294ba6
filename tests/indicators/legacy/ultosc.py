"""Ultimate oscillator: buying pressure over true range on three horizons, weighted 4:2:1."""

from __future__ import annotations

import numpy as np

from tests.indicators.legacy.base import Bars, Indicator, nan_out
from tests.indicators.legacy.registry import register
from tests.indicators.legacy.windows import PrevBar, RollingSums, running_sums, true_range


def _pressure(high, low, close, prev_close) -> np.ndarray:
    """Columns: buying pressure, true range, and whether the true range is non-zero."""
    tr = true_range(high, low, prev_close)
    return np.column_stack((close - np.minimum(low, prev_close), tr, tr != 0))


def _average(sums: np.ndarray) -> np.ndarray:
    # the range count tells a window without range exactly; TA-Lib tests |sum| < 1e-14 instead,
    # an absolute bound that a running sum's residue can miss
    moved = sums[:, 2] > 0
    return np.where(moved, sums[:, 0] / np.where(moved, sums[:, 1], 1.0), 0.0)


def _oscillator(a_short, a_mid, a_long) -> np.ndarray:
    return 100.0 * ((4.0 * a_short + 2.0 * a_mid + a_long) / 7.0)


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

    def step(self, slots: np.ndarray, bars: Bars) -> np.ndarray:
        _, _, prev_close = self.prev.push(slots, bars)
        seen = ~np.isnan(prev_close)
        x = _pressure(bars.high, bars.low, bars.close, prev_close)[seen]
        averages = []
        for window in self.sums:  # three horizons, each advancing every slot at once
            sums, full = window.push(slots[seen], x)
            averages.append(_average(sums))
        out = np.full((len(slots), 1), np.nan)
        rows = np.flatnonzero(seen)[full]  # ``full`` of the longest window
        out[rows, 0] = _oscillator(*averages)[full]
        return out

    def batch(self, bars: Bars) -> np.ndarray:
        longest = self.lookback
        out = nan_out(len(bars))
        if len(bars) <= longest:
            return out
        high, low, close, prev_close = bars.high[1:], bars.low[1:], bars.close[1:], bars.close[:-1]
        # the columns of ``_pressure`` as separate contiguous arrays (cumsums run faster on them)
        ranges = true_range(high, low, prev_close)
        pressure = close - np.minimum(low, prev_close)
        # bars with range so far (exact integers), shared by the three windows' counts
        moving = np.zeros(len(ranges) + 1, np.int64)
        np.cumsum(ranges != 0, out=moving[1:])
        averages = []
        tail = slice(longest - 1, None)
        for p in sorted(self.params):
            moved = moving[longest:] > moving[longest - p:len(moving) - p]
            sums = running_sums(ranges, p)[tail]
            ratio = running_sums(pressure, p)[tail]
            ratio /= np.where(moved, sums, 1.0)
            ratio[~moved] = 0.0
            averages.append(ratio)
        out[longest:, 0] = _oscillator(*averages)
        return out
