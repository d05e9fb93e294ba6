"""Plus directional indicator: Wilder's +DM sum as a percentage of the true-range sum."""

from __future__ import annotations

import numpy as np

from tests.indicators.legacy.base import Bars, Indicator
from tests.indicators.legacy.registry import register
from tests.indicators.legacy.windows import DirectionalSums, directional_indicators


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

    def step(self, slots: np.ndarray, bars: Bars) -> np.ndarray:
        return directional_indicators(self.dm.push(slots, bars))[self.side][:, None]

    def batch(self, bars: Bars) -> np.ndarray:
        return directional_indicators(self.dm.batch(bars))[self.side][:, None]
