"""On-balance volume: running total of volume signed by the close's direction."""

from __future__ import annotations

import numpy as np

from tests.indicators.legacy.base import Bars, Indicator, StateSpec
from tests.indicators.legacy.registry import register
from tests.indicators.legacy.windows import PrevBar


def _signed_volume(close: np.ndarray, prev_close: np.ndarray, volume: np.ndarray) -> np.ndarray:
    return np.sign(close - prev_close) * volume


@register
class OBV(Indicator):
    """OBV as TA-Lib: starts at the first bar's volume; an unchanged close adds nothing."""

    name = "obv"

    def setup(self) -> None:
        self.prev = PrevBar()
        self.children = [self.prev]

    def state_spec(self) -> StateSpec:
        return {"obv": ((), np.float64, 0.0)}

    @property
    def lookback(self) -> int:
        return 0

    def step(self, slots: np.ndarray, bars: Bars) -> np.ndarray:
        _, _, prev_close = self.prev.push(slots, bars)
        obv = np.where(np.isnan(prev_close), bars.volume,
                       self.s["obv"][slots] + _signed_volume(bars.close, prev_close, bars.volume))
        self.s["obv"][slots] = obv
        return obv[:, None]

    def batch(self, bars: Bars) -> np.ndarray:
        steps = np.empty(len(bars))
        steps[:1] = bars.volume[:1]
        steps[1:] = _signed_volume(bars.close[1:], bars.close[:-1], bars.volume[1:])
        return np.cumsum(steps)[:, None]  # sequential, so the same additions as streaming
