"""Kaufman adaptive moving average, fast 2 / slow 30 smoothing (TA-Lib KAMA)."""

from __future__ import annotations

import numpy as np

from schemas.errors import IndicatorSpecError
from tests.indicators.legacy.base import Bars, Indicator, StateSpec, nan_out
from tests.indicators.legacy.registry import register
from tests.indicators.legacy.windows import (
    RollingSums,
    RollingWindow,
    rolling_sum,
    varying_linear_recursion,
    window_counts,
)

FAST = 2.0 / (2 + 1)
SLOW = 2.0 / (30 + 1)


def smoothing_constant(change: np.ndarray, path: np.ndarray, moves: np.ndarray) -> np.ndarray:
    """(ER * (fast - slow) + slow)^2, efficiency ratio ER = |net change| / path; 1 without moves."""
    # ER is 1 for a window without any move (``moves`` counts non-zero steps exactly, where a
    # running ``path`` may keep a rounding residue) and where rounding leaves path <= change, as TA-Lib.
    with np.errstate(divide="ignore", invalid="ignore"):
        sc = np.abs(change / path)
    sc[(moves == 0) | (path <= change)] = 1.0
    sc *= FAST - SLOW
    sc += SLOW
    return sc * sc


def _moves(move: np.ndarray) -> np.ndarray:
    """Columns summed over the window: |close move| and whether it moved at all."""
    return np.column_stack((move, (move != 0.0).astype(np.float64)))


@register
class KAMA(Indicator):
    """Adaptive EMA whose smoothing follows the efficiency of the last ``period`` moves."""

    name = "kama"
    defaults = (30,)
    param_types = (int,)

    def validate(self) -> None:
        super().validate()
        # over one bar the efficiency ratio is always 1 (TA-Lib special-cases period 1 as a copy)
        if self.params[0] < 2:
            raise IndicatorSpecError(f"{self.name}: period must be >= 2, got {self.params[0]}")

    def setup(self) -> None:
        n = self.params[0]
        self.closes = RollingWindow(n + 1)  # oldest entry: the close n bars ago
        self.path = RollingSums(n, 2)
        self.children = [self.closes, self.path]

    def state_spec(self) -> StateSpec:
        return {"prev": ((), np.float64, np.nan), "kama": ((), np.float64, np.nan)}

    @property
    def lookback(self) -> int:
        return self.params[0]

    def step(self, slots: np.ndarray, bars: Bars) -> np.ndarray:
        x = bars.close
        prev = self.s["prev"][slots]
        self.s["prev"][slots] = x
        # the first bar has no move; its 0 leaves the window before the first output, as in batch
        move = np.where(np.isnan(prev), 0.0, np.abs(x - prev))
        rows, ready = self.closes.push(slots, x)
        sums, _ = self.path.push(slots, _moves(move))
        sc = smoothing_constant(x - rows[:, 0], sums[:, 0], sums[:, 1])
        kama = self.s["kama"][slots]
        # seeded with the close just before the first output (TA-Lib), then the adaptive recursion
        seeding = np.isnan(kama) & ~np.isnan(rows[:, 1])
        kama = np.where(seeding, x, (x - kama) * sc + kama)
        self.s["kama"][slots] = kama
        return np.where(ready, kama, np.nan)[:, None]

    def batch(self, bars: Bars) -> np.ndarray:
        n = self.params[0]
        x = bars.close
        out = nan_out(len(x))
        if len(x) <= n:
            return out
        move = np.abs(np.diff(x))
        # nothing downstream cancels, so the cheap cumsum window sum does (the flat test is exact)
        path = rolling_sum(move, n)
        moves = window_counts(move != 0.0, n)[n - 1:]
        sc = smoothing_constant(x[n:] - x[:-n], path, moves)
        # linear in KAMA with coefficients that vary per bar: solved blockwise, not bar by bar
        out[n:, 0] = varying_linear_recursion(1.0 - sc, sc * x[n:], x[n - 1])
        return out
