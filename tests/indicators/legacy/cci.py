"""Commodity channel index: typical price's distance from its mean in units of mean deviation."""

from __future__ import annotations

import numpy as np

from tests.indicators.legacy.base import Bars, Indicator, nan_out
from tests.indicators.legacy.registry import register
from tests.indicators.legacy.windows import RollingWindow, near_zero


def typical_price(bars: Bars) -> np.ndarray:
    """(high + low + close) / 3."""
    return (bars.high + bars.low + bars.close) / 3.0


def _cci(tp: np.ndarray, mean: np.ndarray, dev: np.ndarray) -> np.ndarray:
    """CCI from typical price, window mean and mean deviation; 0 when either is a rounding residue."""
    diff = tp - mean
    # a rounded mean can miss an equal price by an ulp: treat such residues as 0 (TA-Lib's dead
    # zone, scaled to the prices), so a flat window gives 0 rather than a ratio of residues
    scale = np.abs(mean)
    zero = near_zero(diff, scale + np.abs(tp)) | near_zero(dev, scale)
    return np.where(zero, 0.0, diff / (0.015 * np.where(zero, 1.0, dev)))


def _row_stats(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and mean absolute deviation of each row (oldest first), summed sequentially."""
    n = rows.shape[1]
    mean = np.cumsum(rows, axis=1)[:, -1] / n
    return mean, np.cumsum(np.abs(rows - mean[:, None]), axis=1)[:, -1] / n


def _window_stats(x: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Batch twin of _row_stats over every full window: the same sequential sums, one window
    position at a time across all windows (a loop over ``n`` offsets, not over time)."""
    m = len(x) - n + 1
    total = x[:m].copy()
    for j in range(1, n):
        total += x[j:j + m]
    mean = total / n
    dev = np.abs(x[:m] - mean)
    for j in range(1, n):
        dev += np.abs(x[j:j + m] - mean)
    return mean, dev / n


@register
class CCI(Indicator):
    """(TP - SMA(TP)) / (0.015 * mean |TP - SMA(TP)|) over ``period`` bars (TA-Lib's CCI)."""

    name = "cci"
    defaults = (20,)
    param_types = (int,)

    def setup(self) -> None:
        self.tp = RollingWindow(self.params[0])
        self.children = [self.tp]

    @property
    def lookback(self) -> int:
        return self.params[0] - 1

    def step(self, slots: np.ndarray, bars: Bars) -> np.ndarray:
        tp = typical_price(bars)
        windows, full = self.tp.push(slots, tp)
        out = np.full((len(slots), 1), np.nan)
        out[full, 0] = _cci(tp[full], *_row_stats(windows[full]))
        return out

    def batch(self, bars: Bars) -> np.ndarray:
        n = self.params[0]
        out = nan_out(len(bars))
        if len(bars) >= n:
            tp = typical_price(bars)
            out[n - 1:, 0] = _cci(tp[n - 1:], *_window_stats(tp, n))
        return out
