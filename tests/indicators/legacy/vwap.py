"""Session-anchored VWAP of the typical price, restarting at each session (UTC midnight by default)."""

from __future__ import annotations

import numpy as np

from schemas.errors import IndicatorSpecError
from tests.indicators.legacy.base import Bars, Indicator, StateSpec, nan_out
from tests.indicators.legacy.registry import register

_DAY_MINUTES = 1440
_NS_PER_MINUTE = 60_000_000_000
_NO_SESSION = np.iinfo(np.int64).min


@register
class VWAP(Indicator):
    """sum(TP * volume) / sum(volume) since the session of the bar's open time began; NaN before volume.

    Sessions are ``session`` minutes long and counted from the Unix epoch, so a length dividing a day
    starts one at every UTC midnight; lengths of whole days count from 1970-01-01 (a Thursday).
    """

    name = "vwap"
    defaults = (_DAY_MINUTES,)
    param_types = (int,)

    def validate(self) -> None:
        super().validate()
        minutes = self.params[0]
        if _DAY_MINUTES % minutes and minutes % _DAY_MINUTES:
            raise IndicatorSpecError(
                f"vwap: session of {minutes} minutes neither divides nor is a multiple of a day (1440)")

    def state_spec(self) -> StateSpec:
        return {"session": ((), np.int64, _NO_SESSION), "pv": ((), np.float64, 0.0),
                "volume": ((), np.float64, 0.0)}

    @property
    def lookback(self) -> int:
        return 0

    def _session(self, ts: np.ndarray) -> np.ndarray:
        return np.asarray(ts, np.int64) // (self.params[0] * _NS_PER_MINUTE)

    def step(self, slots: np.ndarray, bars: Bars) -> np.ndarray:
        s = self.s
        session = self._session(bars.ts)
        new = session != s["session"][slots]
        tp = (bars.high + bars.low + bars.close) / 3.0
        pv = np.where(new, 0.0, s["pv"][slots]) + tp * bars.volume
        volume = np.where(new, 0.0, s["volume"][slots]) + bars.volume
        s["session"][slots] = session
        s["pv"][slots] = pv
        s["volume"][slots] = volume
        traded = volume != 0
        return np.where(traded, pv / np.where(traded, volume, 1.0), np.nan)[:, None]

    def batch(self, bars: Bars) -> np.ndarray:
        out = nan_out(len(bars))
        if not len(bars):
            return out
        session = self._session(bars.ts)
        tp = (bars.high + bars.low + bars.close) / 3.0
        # lay sessions out as rows of a zero-padded matrix so one cumsum along the rows restarts at
        # every session and adds in the same order as the streaming form
        starts = np.concatenate(([True], session[1:] != session[:-1]))
        row = np.cumsum(starts) - 1
        col = np.arange(len(bars)) - np.flatnonzero(starts)[row]
        padded = np.zeros((row[-1] + 1, col.max() + 1, 2))
        padded[row, col, 0] = tp * bars.volume
        padded[row, col, 1] = bars.volume
        sums = np.cumsum(padded, axis=1)[row, col]
        traded = sums[:, 1] != 0
        out[traded, 0] = sums[traded, 0] / sums[traded, 1]
        return out
