"""Commodity channel index: typical price's distance from its mean in units of mean deviation."""

from __future__ import annotations

import numpy as np

from engine.indicators.base import Indicator
from engine.indicators.jit import inlined, row_kernel
from engine.indicators.registry import register
from engine.indicators.scalar import near_zero
from engine.indicators.windows import RollingWindow, window_push


@inlined
def _cci(tp, mean, dev):
    """CCI from typical price, window mean and mean deviation; 0 when either is a rounding residue."""
    diff = tp - mean
    # a rounded mean can miss an equal price by an ulp: treat such residues as 0 (TA-Lib's dead
    # zone, scaled to the prices), so a flat window gives 0 rather than a ratio of residues
    scale = abs(mean)
    if near_zero(diff, scale + abs(tp)) or near_zero(dev, scale):
        return 0.0
    return diff / (0.015 * dev)


@row_kernel
def cci_rows(slots, gap, ts, highs, lows, closes, volumes, out, col, h):
    buf, n = h[0], h[0].shape[1] // 2
    for r in range(len(slots)):
        if gap[r]:
            continue
        slot = slots[r]
        tp = (highs[r] + lows[r] + closes[r]) / 3.0
        start, full = window_push(h, slot, tp)
        if full:
            # mean and mean absolute deviation, each summed in window order
            total = buf[slot, start]
            for j in range(start + 1, start + n):
                total += buf[slot, j]
            mean = total / n
            dev = abs(buf[slot, start] - mean)
            for j in range(start + 1, start + n):
                dev += abs(buf[slot, j] - mean)
            out[r, col] = _cci(tp, mean, dev / n)
        else:
            out[r, col] = np.nan


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

    def kernel(self):
        return cci_rows, self.tp.handle()
