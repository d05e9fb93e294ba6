"""MACD: fast EMA - slow EMA, its signal EMA and the histogram (TA-Lib MACD alignment)."""

from __future__ import annotations

import numpy as np

from schemas.errors import IndicatorSpecError
from tests.indicators.legacy.base import Bars, Indicator, StateSpec, nan_out
from tests.indicators.legacy.ema import EMAState
from tests.indicators.legacy.registry import register
from tests.indicators.legacy.windows import push_where, series_after_nan


@register
class MACD(Indicator):
    """Moving average convergence/divergence; outputs the line, ``signal`` and ``hist``."""

    name = "macd"
    outputs = ("", "signal", "hist")
    defaults = (12, 26, 9)
    param_types = (int, int, int)

    def validate(self) -> None:
        super().validate()
        fast, slow, _signal = self.params
        if fast >= slow:
            raise IndicatorSpecError(f"{self.name}: fast period must be below slow, got {fast} >= {slow}")

    def setup(self) -> None:
        fast, slow, signal = self.params
        self.fast, self.slow, self.signal = EMAState(fast), EMAState(slow), EMAState(signal)
        self.children = [self.fast, self.slow, self.signal]
        # TA-Lib seeds the fast EMA on the ``fast`` closes ending where the slow seed ends, so
        # both EMAs start on the same bar: the fast one skips the first slow-fast closes.
        self.fast_skip = slow - fast

    def state_spec(self) -> StateSpec:
        return {"count": ((), np.int64, 0)}

    @property
    def lookback(self) -> int:
        return self.params[1] - 1 + self.params[2] - 1

    @staticmethod
    def _outputs(line: np.ndarray, signal: np.ndarray) -> np.ndarray:
        out = np.column_stack([line, signal, line - signal])
        out[np.isnan(signal)] = np.nan  # like TA-Lib, nothing until the signal exists
        return out

    def step(self, slots: np.ndarray, bars: Bars) -> np.ndarray:
        count = self.s["count"][slots] + 1
        self.s["count"][slots] = count
        slow = self.slow.push(slots, bars.close)
        fast = push_where(self.fast, slots, bars.close, count > self.fast_skip)
        line = fast - slow
        signal = push_where(self.signal, slots, line, ~np.isnan(line))
        return self._outputs(line, signal)

    def batch(self, bars: Bars) -> np.ndarray:
        close = bars.close
        if len(close) <= self.fast_skip:
            return nan_out(len(close), 3)
        skip = self.fast_skip
        # fast - slow built in the slow EMA's array (NaN where the fast EMA has not started)
        line = self.slow.series(close)
        line[:skip] = np.nan
        np.subtract(self.fast.series(close[skip:]), line[skip:], out=line[skip:])
        signal = series_after_nan(self.signal, line)
        # ``_outputs`` written straight into the result
        out = np.empty((len(close), 3))
        out[:, 0] = line
        out[:, 1] = signal
        np.subtract(line, signal, out=out[:, 2])
        out[np.isnan(signal)] = np.nan
        return out
