"""Session-anchored VWAP of the typical price, restarting at each session (UTC midnight by default)."""

from __future__ import annotations

import numpy as np

from engine.indicators.base import Indicator, StateSpec
from engine.indicators.jit import row_kernel
from engine.indicators.registry import register
from schemas.errors import IndicatorSpecError

_DAY_MINUTES = 1440
_NS_PER_MINUTE = 60_000_000_000
_NO_SESSION = np.iinfo(np.int64).min


@row_kernel
def vwap_rows(slots, gap, ts, highs, lows, closes, volumes, out, col, h):
    session_s, pv_s, volume_s, session_ns = h
    for r in range(len(slots)):
        if gap[r]:
            continue
        slot, volume = slots[r], volumes[r]
        session = ts[r] // session_ns
        new = session != session_s[slot]
        tp = (highs[r] + lows[r] + closes[r]) / 3.0
        pv = (0.0 if new else pv_s[slot]) + tp * volume
        traded = (0.0 if new else volume_s[slot]) + volume
        session_s[slot], pv_s[slot], volume_s[slot] = session, pv, traded
        out[r, col] = pv / traded if traded != 0 else np.nan


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

    def kernel(self):
        s = self.s
        return vwap_rows, (s["session"], s["pv"], s["volume"], self.params[0] * _NS_PER_MINUTE)
