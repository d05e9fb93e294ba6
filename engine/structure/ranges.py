"""Reference price levels per (market, timeframe): the premium/discount of the dealing range, the
previous completed UTC day's and week's high/low, and the open, high and low of UTC trading sessions.

All values use only bars already closed. A day is a UTC calendar day; a week starts Monday 00:00 UTC.
``prev_*`` is the high/low of the latest *completed* period that had real (non-gap) bars, never the
current one. A bar belongs to the period and the session that contain its open time; sessions are
half-open ``[start, end)`` in UTC and may wrap midnight (start after end).
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


def dealing_range(range_high: np.ndarray, range_low: np.ndarray, close: np.ndarray) -> np.ndarray:
    """Columns ``RANGE_COLUMNS``: position of the close in [low, high] (0 low, 1 high) and its zone.

    Position is not clipped (a close above the range reads > 1); it is NaN until both ends are known or
    when the range is empty. Zone is +1 premium (above 0.5), -1 discount (below), 0 at equilibrium or unknown.
    """
    width = range_high - range_low
    with np.errstate(invalid="ignore", divide="ignore"):
        pos = np.where(width > 0, (close - range_low) / width, np.nan)
        zone = np.where(pos > 0.5, 1.0, np.where(pos < 0.5, -1.0, 0.0))
    return np.stack([range_high, range_low, pos, zone], axis=1)


def period_spec(n_sessions: int) -> dict:
    """State arrays (shape tail, dtype, fill) for ``advance_periods``; index 0 is the day, 1 the week."""
    lo = np.iinfo(np.int64).min
    return {"p_id": ((2,), np.int64, lo), "p_hi": ((2,), np.float64, np.nan), "p_lo": ((2,), np.float64, np.nan),
            "p_prev_hi": ((2,), np.float64, np.nan), "p_prev_lo": ((2,), np.float64, np.nan),
            "ss_start": ((n_sessions,), np.int64, lo), "ss_open": ((n_sessions,), np.float64, np.nan),
            "ss_hi": ((n_sessions,), np.float64, np.nan), "ss_lo": ((n_sessions,), np.float64, np.nan)}


def advance_periods(s: dict, slots: np.ndarray, open_ts: np.ndarray, o: np.ndarray, high: np.ndarray,
                    low: np.ndarray, real: np.ndarray, sessions: list[tuple[int, int]]) -> np.ndarray:
    """Advance day/week/session state by one bar per slot; return PERIOD_COLUMNS then session columns."""
    ids = np.stack([open_ts // DAY, (open_ts - MONDAY_OFFSET) // WEEK], axis=1)
    pid, hi, lo = s["p_id"][slots], s["p_hi"][slots], s["p_lo"][slots]
    # a period closes when a bar of a later one arrives; one without real bars keeps the older values
    rolled = (ids != pid) & (pid != np.iinfo(np.int64).min)
    done = rolled & ~np.isnan(hi)
    prev_hi = np.where(done, hi, s["p_prev_hi"][slots])
    prev_lo = np.where(done, lo, s["p_prev_lo"][slots])
    fresh = ids != pid
    hi, lo = np.where(fresh, np.nan, hi), np.where(fresh, np.nan, lo)
    r = real[:, None]
    hi = np.where(r, np.fmax(hi, high[:, None]), hi)
    lo = np.where(r, np.fmin(lo, low[:, None]), lo)
    s["p_id"][slots], s["p_hi"][slots], s["p_lo"][slots] = ids, hi, lo
    s["p_prev_hi"][slots], s["p_prev_lo"][slots] = prev_hi, prev_lo
    out = [prev_hi[:, 0], prev_lo[:, 0], prev_hi[:, 1], prev_lo[:, 1]]
    minute = (open_ts % DAY) // MINUTE
    day_start = open_ts - open_ts % DAY
    for k, (start, end) in enumerate(sessions):
        inside = (minute >= start) & (minute < end) if start < end else (minute >= start) | (minute < end)
        # the instance's start time tells one day's session from the next
        begun = np.where(minute >= start, day_start + start * MINUTE, day_start - DAY + start * MINUTE)
        new = inside & (begun != s["ss_start"][slots, k])
        s_open = np.where(new, np.nan, s["ss_open"][slots, k])
        s_hi = np.where(new, np.nan, s["ss_hi"][slots, k])
        s_lo = np.where(new, np.nan, s["ss_lo"][slots, k])
        take = inside & real
        s_open = np.where(take & np.isnan(s_open), o, s_open)
        s_hi = np.where(take, np.fmax(s_hi, high), s_hi)
        s_lo = np.where(take, np.fmin(s_lo, low), s_lo)
        s["ss_start"][slots, k] = np.where(inside, begun, s["ss_start"][slots, k])
        s["ss_open"][slots, k], s["ss_hi"][slots, k], s["ss_lo"][slots, k] = s_open, s_hi, s_lo
        # the open of the latest session that began is kept after it ends; high/low only while inside
        out += [s_open, inside.astype(np.float64), np.where(inside, s_hi, np.nan), np.where(inside, s_lo, np.nan)]
    return np.stack(out, axis=1)
