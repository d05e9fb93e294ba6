"""Normalised average true range: ATR as a percentage of the close."""

from __future__ import annotations

import numpy as np

from tests.indicators.legacy.atr import ATR
from tests.indicators.legacy.base import Bars, Indicator
from tests.indicators.legacy.registry import register


def _percent_of_close(atr: np.ndarray, close: np.ndarray) -> np.ndarray:
    # TA-Lib gives 0 for a zero close; atr * 0.0 keeps the warm-up NaN
    nonzero = close != 0
    return np.where(nonzero, (atr / np.where(nonzero, close, 1.0)) * 100.0, atr * 0.0)


@register
class NATR(Indicator):
    """100 * ATR / close (TA-Lib's NATR)."""

    name = "natr"
    defaults = (14,)
    param_types = (int,)

    def setup(self) -> None:
        self.atr = ATR(self.params[0])
        self.children = [self.atr]

    @property
    def lookback(self) -> int:
        return self.atr.lookback

    def step(self, slots: np.ndarray, bars: Bars) -> np.ndarray:
        return _percent_of_close(self.atr.push(slots, bars), bars.close)[:, None]

    def batch(self, bars: Bars) -> np.ndarray:
        return _percent_of_close(self.atr.series(bars), bars.close)[:, None]
