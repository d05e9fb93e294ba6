"""Wilder's RSI, its averages seeded by the mean of the first ``period`` moves (TA-Lib RSI)."""

from __future__ import annotations

import numpy as np

from tests.indicators.legacy.base import Bars, Indicator, StateSpec, nan_out
from tests.indicators.legacy.ema import EMAState
from tests.indicators.legacy.registry import register
from tests.indicators.legacy.windows import push_where


def rsi_from_averages(gain: np.ndarray, loss: np.ndarray) -> np.ndarray:
    """100 * gain / (gain + loss); 0 for a history without any move, as TA-Lib answers."""
    total = gain + loss
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total != 0.0, 100.0 * (gain / total), 0.0)


@register
class RSI(Indicator):
    """Wilder's RSI of closes."""

    name = "rsi"
    defaults = (14,)
    param_types = (int,)

    def setup(self) -> None:
        n = self.params[0]
        # Wilder smoothing is the EMA recursion with alpha 1/n, seeded by the simple mean
        self.gain, self.loss = EMAState(n, alpha=1.0 / n), EMAState(n, alpha=1.0 / n)
        self.children = [self.gain, self.loss]

    def state_spec(self) -> StateSpec:
        return {"prev": ((), np.float64, np.nan)}  # previous close, NaN before the first bar

    @property
    def lookback(self) -> int:
        return self.params[0]

    def step(self, slots: np.ndarray, bars: Bars) -> np.ndarray:
        prev = self.s["prev"][slots]
        self.s["prev"][slots] = bars.close
        change = bars.close - prev
        moved = ~np.isnan(prev)
        gain = push_where(self.gain, slots, np.maximum(change, 0.0), moved)
        loss = push_where(self.loss, slots, np.maximum(-change, 0.0), moved)
        return np.where(np.isnan(gain), np.nan, rsi_from_averages(gain, loss))[:, None]

    def batch(self, bars: Bars) -> np.ndarray:
        out = nan_out(len(bars))
        change = np.diff(bars.close)
        gain = self.gain.series(np.maximum(change, 0.0))
        np.negative(change, out=change)
        loss = self.loss.series(np.maximum(change, 0.0, out=change))
        # ``rsi_from_averages`` in place: warm-up NaNs stay NaN (their total is NaN, not 0)
        total = loss
        total += gain
        rsi = out[1:, 0]
        with np.errstate(divide="ignore", invalid="ignore"):
            np.divide(gain, total, out=rsi)
        rsi *= 100.0
        rsi[total == 0.0] = 0.0
        return out
