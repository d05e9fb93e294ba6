"""Batch risk measures over numpy arrays of one market; every rolling output is aligned to its last bar.

Conventions: returns are natural-log returns; a rolling value at bar ``i`` uses only bars up to ``i``
and is NaN until its window is full (or while the window holds a NaN). Quantiles use numpy's default
"linear" rule (Hyndman & Fan type 7), so VaR interpolates between the two nearest order statistics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from engine import libm
from schemas.errors import ConfigError

PARKINSON_DENOM = 4.0 * math.log(2.0)


def check_window(window: int, minimum: int = 1, what: str = "window") -> int:
    """Validate a bar count and return it as an int."""
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < minimum:
        raise ConfigError(f"risk: {what} must be an integer >= {minimum}, got {window!r}")
    return int(window)


def check_level(level: float) -> float:
    """Validate a confidence level such as 0.95 (strictly between 0 and 1)."""
    if not isinstance(level, (int, float, np.floating)) or not 0.0 < float(level) < 1.0:
        raise ConfigError(f"risk: confidence level must be strictly between 0 and 1 (e.g. 0.95), got {level!r}")
    return float(level)


def _annual(bars_per_year: float | None) -> float:
    if bars_per_year is None:
        return 1.0
    if not np.isfinite(bars_per_year) or bars_per_year <= 0:
        raise ConfigError(f"risk: bars_per_year must be a positive number, got {bars_per_year!r}")
    return float(np.sqrt(bars_per_year))


def _rolling(x: np.ndarray, window: int, reduce) -> np.ndarray:
    """Apply ``reduce(windows) -> one value per window`` and align results to each window's last bar."""
    x = np.asarray(x, np.float64)
    out = np.full(len(x), np.nan)
    if len(x) < window:
        return out
    views = sliding_window_view(x, window)
    ok = ~np.isnan(views).any(axis=1)
    vals = np.full(len(views), np.nan)
    if ok.any():
        vals[ok] = reduce(views[ok])
    out[window - 1:] = vals
    return out


def log_returns(close: np.ndarray) -> np.ndarray:
    """ln(close[i] / close[i-1]); NaN at bar 0."""
    close = np.asarray(close, np.float64)
    out = np.full(len(close), np.nan)
    out[1:] = libm.log(close[1:] / close[:-1])
    return out


def volatility_of(windows: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Sample standard deviation (ddof=1) of each row, times ``scale``."""
    return np.std(windows, axis=1, ddof=1) * scale


def rolling_volatility(returns: np.ndarray, window: int, bars_per_year: float | None = None) -> np.ndarray:
    """Close-to-close volatility: stdev (ddof=1) of the last ``window`` returns, annualised if asked."""
    window = check_window(window, 2)
    scale = _annual(bars_per_year)
    return _rolling(returns, window, lambda w: volatility_of(w, scale))


def parkinson_term(high: np.ndarray, low: np.ndarray) -> np.ndarray:
    """ln(high/low)^2 per bar, the quantity Parkinson's estimator averages."""
    return libm.log(np.asarray(high, np.float64) / np.asarray(low, np.float64)) ** 2


def parkinson_of(windows: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """sqrt(mean(ln(H/L)^2) / (4 ln 2)) of each row of Parkinson terms, times ``scale``."""
    return np.sqrt(windows.mean(axis=1) / PARKINSON_DENOM) * scale


def parkinson_volatility(high: np.ndarray, low: np.ndarray, window: int,
                         bars_per_year: float | None = None) -> np.ndarray:
    """Rolling Parkinson (high/low range) volatility over ``window`` bars, annualised if asked."""
    window = check_window(window)
    scale = _annual(bars_per_year)
    return _rolling(parkinson_term(high, low), window, lambda w: parkinson_of(w, scale))


def true_range_from(high: np.ndarray, low: np.ndarray, prev_close: np.ndarray) -> np.ndarray:
    """max(H-L, |H-prev close|, |L-prev close|) elementwise."""
    return np.maximum(high - low, np.maximum(np.abs(high - prev_close), np.abs(low - prev_close)))


def true_range(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    """True range per bar; NaN at bar 0, which has no previous close."""
    high, low, close = (np.asarray(a, np.float64) for a in (high, low, close))
    out = np.full(len(close), np.nan)
    out[1:] = true_range_from(high[1:], low[1:], close[:-1])
    return out


def average_true_range(high: np.ndarray, low: np.ndarray, close: np.ndarray, window: int) -> np.ndarray:
    """Simple mean of the last ``window`` true ranges (not Wilder-smoothed, so it forgets exactly)."""
    window = check_window(window)
    return _rolling(true_range(high, low, close), window, lambda w: w.mean(axis=1))


def atr_stop_distance(atr: np.ndarray | float, k: float) -> np.ndarray:
    """Stop distance in price units: ``k`` times the ATR."""
    if not np.isfinite(k) or k <= 0:
        raise ConfigError(f"risk: ATR stop multiple k must be a positive number, got {k!r}")
    return np.asarray(atr, np.float64) * float(k)


def position_size(equity: float, risk_fraction: float, stop_distance: np.ndarray | float,
                  max_notional: float | None = None, price: np.ndarray | float | None = None) -> np.ndarray:
    """Units so a stop-out loses ``equity * risk_fraction``; capped at ``max_notional / price`` if given.

    NaN stop distances (warm-up) give NaN sizes.
    """
    if not np.isfinite(equity) or equity < 0:
        raise ConfigError(f"risk: equity must be a non-negative number, got {equity!r}")
    if not np.isfinite(risk_fraction) or not 0.0 < risk_fraction <= 1.0:
        raise ConfigError(f"risk: risk fraction must be in (0, 1], e.g. 0.01 for 1%, got {risk_fraction!r}")
    stop = np.asarray(stop_distance, np.float64)
    if np.any(stop <= 0):
        raise ConfigError("risk: stop distance must be positive; got a value <= 0")
    units = equity * risk_fraction / stop
    if max_notional is not None:
        if price is None:
            raise ConfigError("risk: max_notional needs the price to convert notional into units")
        if not np.isfinite(max_notional) or max_notional <= 0:
            raise ConfigError(f"risk: max_notional must be a positive number, got {max_notional!r}")
        units = np.minimum(units, max_notional / np.asarray(price, np.float64))
    return units


def var_cvar_of(windows: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Historical VaR and CVaR of each row of returns, both as positive losses.

    VaR = -quantile(returns, 1 - level) (linear rule); CVaR = -mean of returns at or below that quantile.
    """
    q = np.quantile(windows, 1.0 - level, axis=1)
    tail = windows <= q[:, None]
    cvar = -np.where(tail, windows, 0.0).sum(axis=1) / tail.sum(axis=1)
    return -q, cvar


def var_cvar(returns: np.ndarray, level: float) -> tuple[float, float]:
    """Historical VaR and CVaR of one sample of returns (NaNs dropped), as positive losses."""
    level = check_level(level)
    r = np.asarray(returns, np.float64)
    r = r[~np.isnan(r)]
    if not len(r):
        raise ConfigError("risk: VaR needs at least one non-NaN return")
    var, cvar = var_cvar_of(r[None, :], level)
    return float(var[0]), float(cvar[0])


def rolling_var_cvar(returns: np.ndarray, window: int, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Historical VaR and CVaR over the last ``window`` returns at each bar."""
    window = check_window(window)
    level = check_level(level)
    r = np.asarray(returns, np.float64)
    var = _rolling(r, window, lambda w: var_cvar_of(w, level)[0])
    cvar = _rolling(r, window, lambda w: var_cvar_of(w, level)[1])
    return var, cvar


@dataclass(frozen=True)
class Drawdown:
    """Largest peak-to-trough fall as a positive fraction of the peak, with where it happened."""

    depth: float
    peak: int
    trough: int


def drawdown_series(prices: np.ndarray) -> np.ndarray:
    """1 - price / running maximum at each bar (0 at a new high)."""
    p = np.asarray(prices, np.float64)
    return 1.0 - p / np.maximum.accumulate(p)


def max_drawdown(prices: np.ndarray) -> Drawdown:
    """Maximum drawdown of a price or equity series; peak is the high before the deepest trough."""
    p = np.asarray(prices, np.float64)
    if not len(p) or np.isnan(p).any():
        raise ConfigError("risk: max_drawdown needs a non-empty series without NaN")
    dd = drawdown_series(p)
    trough = int(np.argmax(dd))
    peak = int(np.argmax(p[: trough + 1]))
    return Drawdown(float(dd[trough]), peak, trough)


def drawdown_of(windows: np.ndarray) -> np.ndarray:
    """1 - last price / max price of each row."""
    return 1.0 - windows[:, -1] / windows.max(axis=1)


def rolling_drawdown(prices: np.ndarray, window: int) -> np.ndarray:
    """Drawdown of the current price from the highest price of the last ``window`` bars."""
    window = check_window(window)
    return _rolling(prices, window, drawdown_of)


def percentile_rank_of(windows: np.ndarray) -> np.ndarray:
    """Share of each row's values at or below its last value (1.0 = highest in the window)."""
    return (windows <= windows[:, -1:]).mean(axis=1)


def rolling_percentile_rank(x: np.ndarray, window: int) -> np.ndarray:
    """Percentile rank of each value among the last ``window`` values, itself included."""
    window = check_window(window)
    return _rolling(x, window, percentile_rank_of)


def aligned_returns(series: dict[str, tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Log returns of several markets on the bar times they all share: (ts, names, matrix rows=bars).

    Returns run between consecutive shared bar times, so a bar missing in one market is skipped by all.
    """
    if not series:
        raise ConfigError("risk: aligned_returns needs at least one market")
    names = list(series)
    common = None
    for ts, _ in series.values():
        common = np.asarray(ts, np.int64) if common is None else np.intersect1d(common, ts)
    cols = []
    for name in names:
        ts, close = (np.asarray(a) for a in series[name])
        idx = np.searchsorted(ts, common)
        cols.append(log_returns(np.asarray(close, np.float64)[idx]))
    return common[1:], names, np.column_stack(cols)[1:]


def correlation_matrix(returns: np.ndarray) -> np.ndarray:
    """Pearson correlation between columns (markets) over rows where every market has a return."""
    r = np.asarray(returns, np.float64)
    if r.ndim != 2:
        raise ConfigError(f"risk: correlation_matrix needs a 2-D array (bars x markets), got shape {r.shape}")
    r = r[~np.isnan(r).any(axis=1)]
    if len(r) < 2:
        raise ConfigError("risk: correlation needs at least two bars where every market has a return")
    return np.corrcoef(r, rowvar=False)
