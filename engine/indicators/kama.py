"""Kaufman adaptive moving average, fast 2 / slow 30 smoothing (TA-Lib KAMA)."""

from __future__ import annotations

import numpy as np

from engine.indicators.base import Bars, Indicator, StateSpec, nan_out
from engine.indicators.jit import inlined, row_kernel
from engine.indicators.numpy_batch import rolling_sum, varying_linear_recursion, window_counts
from engine.indicators.registry import register
from engine.indicators.windows import RollingSums, RollingWindow, rolling_sums_push, rolling_sums_value, window_push
from schemas.errors import IndicatorSpecError

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


@inlined
def _smoothing_constant(change, path, moves):
    """``smoothing_constant`` of one bar."""
    sc = abs(change / path)
    if moves == 0 or path <= change:
        sc = 1.0
    sc = sc * (FAST - SLOW) + SLOW
    return sc * sc


@row_kernel
def kama_rows(slots, gap, ts, highs, lows, closes, volumes, out, col, h):
    window_h, path, prev, kama = h
    closes_ago = window_h[0]
    for r in range(len(slots)):
        if gap[r]:
            continue
        slot, x = slots[r], closes[r]
        p = prev[slot]
        prev[slot] = x
        # the first bar has no move; its 0 leaves the window before the first output
        move = 0.0 if np.isnan(p) else abs(x - p)
        start, ready = window_push(window_h, slot, x)  # oldest entry: the close n bars ago
        rolling_sums_push(path, slot, (move, 1.0 if move != 0.0 else 0.0))
        sc = _smoothing_constant(x - closes_ago[slot, start], rolling_sums_value(path, slot, 0),
                                 rolling_sums_value(path, slot, 1))
        k = kama[slot]
        # seeded with the close just before the first output (TA-Lib), then the adaptive recursion
        k = x if np.isnan(k) and not np.isnan(closes_ago[slot, start + 1]) else (x - k) * sc + k
        kama[slot] = k
        out[r, col] = k if ready else np.nan


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
        self.closes = RollingWindow(n + 1)
        self.path = RollingSums(n, 2)  # |close move| and whether it moved at all
        self.children = [self.closes, self.path]

    def state_spec(self) -> StateSpec:
        return {"prev": ((), np.float64, np.nan), "kama": ((), np.float64, np.nan)}

    @property
    def lookback(self) -> int:
        return self.params[0]

    def kernel(self):
        return kama_rows, (self.closes.handle(), self.path.handle(), self.s["prev"], self.s["kama"])

    def batch(self, bars: Bars) -> np.ndarray:
        """The numpy form (see ``engine.indicators.numpy_batch``); within 1e-12 of the kernel."""
        n = self.params[0]
        x = bars.close
        out = nan_out(len(x))
        if len(x) <= n:
            return out
        move = np.abs(np.diff(x))
        path = rolling_sum(move, n)
        moves = window_counts(move != 0.0, n)[n - 1:]
        sc = smoothing_constant(x[n:] - x[:-n], path, moves)
        # linear in KAMA with coefficients that vary per bar: solved blockwise, not bar by bar
        out[n:, 0] = varying_linear_recursion(1.0 - sc, sc * x[n:], x[n - 1])
        return out
