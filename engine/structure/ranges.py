"""Reference price levels per (market, timeframe): the premium/discount of the dealing range, the
previous completed UTC day's and week's high/low, and the open, high and low of UTC trading sessions.

All values use only bars already closed. A day is a UTC calendar day; a week starts Monday 00:00 UTC.
``prev_*`` is the high/low of the latest *completed* period that had real (non-gap) bars, never the
current one. A bar belongs to the period and the session that contain its open time; sessions are
half-open ``[start, end)`` in UTC and may wrap midnight (start after end).

The dealing-range position and zone (``RANGE_COLUMNS``) read the latest swing high and low: the position of
the close in [low, high] (0 low, 1 high), not clipped (a close above the range reads > 1), NaN until both ends
are known or when the range is empty; the zone is +1 premium (above 0.5), -1 discount (below), 0 at
equilibrium or unknown. Columns per session: its open (kept after it ends, until the next one begins), an
in-session flag, and its running high and low (NaN outside it). The values are computed bar by bar in
``engine.structure.liquidity_kernel``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from schemas.errors import ConfigError

MINUTE = 60 * 1_000_000_000
DAY = 24 * 60 * MINUTE
WEEK = 7 * DAY
MONDAY_OFFSET = 4 * DAY  # 1970-01-01 was a Thursday; 1970-01-05 the first Monday
PERIOD_COLUMNS = ["prev_day_high", "prev_day_low", "prev_week_high", "prev_week_low"]
RANGE_COLUMNS = ["range_high", "range_low", "range_position", "zone"]


@dataclass(frozen=True)
class Session:
    """A named daily UTC session ``[start, end)``, given as ``"HH:MM"``."""

    name: str
    start: str
    end: str

    def minutes(self) -> tuple[int, int]:
        """Start and end as minutes after 00:00 UTC."""
        out = []
        for text in (self.start, self.end):
            try:
                h, m = (int(p) for p in text.split(":"))
            except ValueError as e:
                raise ConfigError(f"session {self.name!r}: time {text!r} is not HH:MM") from e
            if not (0 <= h < 24 and 0 <= m < 60):
                raise ConfigError(f"session {self.name!r}: time {text!r} is not HH:MM within a day")
            out.append(h * 60 + m)
        if out[0] == out[1]:
            raise ConfigError(f"session {self.name!r}: start and end are both {self.start}")
        return out[0], out[1]


DEFAULT_SESSIONS = (Session("asia", "00:00", "08:00"), Session("london", "07:00", "16:00"),
                    Session("new_york", "13:00", "22:00"))


def session_columns(sessions: tuple[Session, ...]) -> list[str]:
    """Four columns per session: its open, an in-session flag, and its running high and low."""
    return [f"{kind}_{s.name}" for s in sessions
            for kind in ("session_open", "in_session", "session_high", "session_low")]


def period_spec(n_sessions: int) -> dict:
    """State arrays (shape tail, dtype, fill) of the day, week and session levels; index 0 is the day, 1 the
    week. ``p_id`` / ``ss_start`` identify the period / session instance seen last (int64 min: none yet)."""
    lo = np.iinfo(np.int64).min
    return {"p_id": ((2,), np.int64, lo), "p_hi": ((2,), np.float64, np.nan), "p_lo": ((2,), np.float64, np.nan),
            "p_prev_hi": ((2,), np.float64, np.nan), "p_prev_lo": ((2,), np.float64, np.nan),
            "ss_start": ((n_sessions,), np.int64, lo), "ss_open": ((n_sessions,), np.float64, np.nan),
            "ss_hi": ((n_sessions,), np.float64, np.nan), "ss_lo": ((n_sessions,), np.float64, np.nan)}
