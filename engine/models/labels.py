"""Classification labels of each bar from the bars after it: the sign of the forward return over a
horizon, or the triple barrier of an ATR stop and target.

A label looks ``horizon`` bars ahead, so the last ``horizon`` rows of a series get none (NaN): a row is
labelled only when every bar its label could depend on exists. Labels are computed per market, never
across the end of one market's series into the next.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from schemas.errors import ConfigError

KINDS = ("sign", "triple-barrier")


@numba.njit(cache=True)
def _sign_kernel(close, horizon, out):
    n = len(close)
    for t in range(n - horizon):
        a, b = close[t], close[t + horizon]
        if a == a and b == b:  # not NaN
            out[t] = 1.0 if b > a else 0.0


@numba.njit(cache=True)
def _barrier_kernel(high, low, close, atr, horizon, k_up, k_dn, out):
    n = len(close)
    for t in range(n - horizon):
        c, a = close[t], atr[t]
        if not (c == c and a == a) or a <= 0.0:
            continue
        upper = c + k_up * a
        lower = c - k_dn * a
        label = -1.0
        for j in range(t + 1, t + horizon + 1):
            # the stop is checked first: a bar that touches both barriers counts as the stop (the broker's rule)
            if low[j] <= lower:
                label = 0.0
                break
            if high[j] >= upper:
                label = 1.0
                break
        if label < 0.0:
            last = close[t + horizon]
            if last != last:
                continue
            label = 1.0 if last > c else 0.0
        out[t] = label


def _check_horizon(horizon: int) -> int:
    if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)) or horizon < 1:
        raise ConfigError(f"label horizon must be a whole number of bars >= 1, got {horizon!r}")
    return int(horizon)


def sign_labels(close: np.ndarray, horizon: int) -> np.ndarray:
    """1.0 where close[t + horizon] > close[t], 0.0 where not, NaN for the last ``horizon`` rows (and
    where either close is NaN). One market's closes in time order."""
    h = _check_horizon(horizon)
    close = np.ascontiguousarray(close, np.float64)
    out = np.full(len(close), np.nan)
    _sign_kernel(close, h, out)
    return out


def triple_barrier_labels(high: np.ndarray, low: np.ndarray, close: np.ndarray, atr: np.ndarray, horizon: int,
                          k_up: float = 2.0, k_dn: float = 2.0) -> np.ndarray:
    """Triple-barrier labels of one market's bars in time order.

    Upper barrier close[t] + k_up*ATR[t], lower close[t] - k_dn*ATR[t], vertical barrier ``horizon`` bars on.
    1.0 if a later bar's high reaches the upper barrier before any low reaches the lower one; 0.0 if the
    lower is reached first, or in the same bar as the upper (the stop wins, as in the broker), or neither
    within the horizon and close[t + horizon] <= close[t]; 1.0 for neither with a positive return. NaN for the
    last ``horizon`` rows and where the close or ATR is NaN (ATR warm-up) or ATR is not positive.
    """
    h = _check_horizon(horizon)
    for name, k in (("k_up", k_up), ("k_dn", k_dn)):
        if not (isinstance(k, (int, float, np.floating)) and np.isfinite(k) and k > 0):
            raise ConfigError(f"triple-barrier {name} must be a positive number of ATRs, got {k!r}")
    arrays = [np.ascontiguousarray(a, np.float64) for a in (high, low, close, atr)]
    if len({len(a) for a in arrays}) != 1:
        raise ConfigError("triple-barrier high, low, close and atr must have the same length")
    out = np.full(len(arrays[2]), np.nan)
    _barrier_kernel(*arrays, h, float(k_up), float(k_dn), out)
    return out


def wilder_atr(high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int = 14) -> np.ndarray:
    """The engine's ATR(period) of one market's bars (TA-Lib's seeding), NaN in warm-up."""
    from engine.indicators.atr import ATR
    from engine.indicators.base import Bars
    h, lo, c = (np.asarray(a, np.float64) for a in (high, low, close))
    bars = Bars(np.arange(len(c), dtype=np.int64), c, h, lo, c, np.zeros(len(c)))
    return ATR(int(period)).batch(bars)[:, 0]


@dataclass(frozen=True)
class LabelSpec:
    """How labels are made: ``kind`` (sign | triple-barrier), horizon in bars, barrier widths in ATRs."""

    kind: str = "sign"
    horizon: int = 12
    k_up: float = 2.0
    k_dn: float = 2.0
    atr_period: int = 14

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"label kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        _check_horizon(self.horizon)

    def describe(self) -> dict:
        d = {"kind": self.kind, "horizon": self.horizon}
        if self.kind == "triple-barrier":
            d.update(k_up=self.k_up, k_dn=self.k_dn, atr_period=self.atr_period)
        return d


@dataclass(frozen=True)
class Labels:
    """Labels of a pooled frame's rows: ``y`` (1.0/0.0/NaN) and the close time of the last bar each label
    reads (``end_ts``, -1 where unlabelled) — what purging needs."""

    y: np.ndarray
    end_ts: np.ndarray

    @property
    def labelled(self) -> np.ndarray:
        return ~np.isnan(self.y)


def label_rows(key: np.ndarray, close_ts: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray,
               spec: LabelSpec) -> Labels:
    """Labels of every row of a frame holding one or more series (``key``: the series of each row, e.g. a
    market and timeframe code; series may interleave), each series labelled on its own bars in time order."""
    market = np.asarray(key)
    close_ts = np.asarray(close_ts, np.int64)
    y = np.full(len(market), np.nan)
    end_ts = np.full(len(market), -1, np.int64)
    h = spec.horizon
    for m in np.unique(market):
        rows = np.flatnonzero(market == m)
        rows = rows[np.argsort(close_ts[rows], kind="stable")]
        c = np.asarray(close, np.float64)[rows]
        if spec.kind == "sign":
            lab = sign_labels(c, h)
        else:
            hi, lo = np.asarray(high, np.float64)[rows], np.asarray(low, np.float64)[rows]
            lab = triple_barrier_labels(hi, lo, c, wilder_atr(hi, lo, c, spec.atr_period), h, spec.k_up, spec.k_dn)
        y[rows] = lab
        ends = np.full(len(rows), -1, np.int64)
        if len(rows) > h:
            ends[:-h] = close_ts[rows][h:]
        end_ts[rows] = np.where(np.isnan(lab), -1, ends)
    return Labels(y, end_ts)
