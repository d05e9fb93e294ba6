"""Plus directional indicator: Wilder's +DM sum as a percentage of the true-range sum."""

from __future__ import annotations

from engine.indicators.base import Indicator
from engine.indicators.jit import row_kernel
from engine.indicators.registry import register
from engine.indicators.windows import DirectionalSums, directional_indicators, directional_sums_push


@row_kernel
def directional_indicator_rows(slots, gap, ts, highs, lows, closes, volumes, out, col, h):
    dm, side = h
    for r in range(len(slots)):
        if not gap[r]:
            plus_dm, minus_dm, tr = directional_sums_push(dm, slots[r], highs[r], lows[r],
                                                          closes[r])
            out[r, col] = directional_indicators(plus_dm, minus_dm, tr)[side]


@register
class PlusDI(Indicator):
    """+DI as TA-Lib's PLUS_DI: 100 * sum(+DM) / sum(TR), Wilder sums over ``period`` bars."""

    name = "plus_di"
    side = 0  # which of directional_indicators' (+DI, -DI) this is
    defaults = (14,)
    param_types = (int,)

    def setup(self) -> None:
        self.dm = DirectionalSums(self.params[0])
        self.children = [self.dm]

    @property
    def lookback(self) -> int:
        return self.params[0]

    def kernel(self):
        return directional_indicator_rows, (self.dm.handle(), self.side)
