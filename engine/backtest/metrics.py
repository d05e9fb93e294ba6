"""Performance metrics of an equity curve and a list of trades, for the portfolio and per market.

Returns are simple per-bar returns of equity; annualised figures use 365 days a year (crypto trades every
day) and the bar length. Sharpe and Sortino assume a zero risk-free rate. Drawdown durations are in days.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

YEAR_NS = 365 * 86_400 * 10**9
DAY_NS = 86_400 * 10**9


def _finite(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


@njit(cache=True)
def _curve(ts, e):
    """One pass over an equity curve: mean and sample deviation of the bar returns (two-pass for accuracy),
    downside deviation, losing bars, max drawdown, and the longest time from a peak to the last bar below it."""
    n = len(e) - 1
    total = 0.0
    for i in range(n):
        total += e[i + 1] / e[i] - 1.0
    mean = total / n
    sq = 0.0
    down = 0.0
    n_down = 0
    for i in range(n):
        r = e[i + 1] / e[i] - 1.0
        sq += (r - mean) ** 2
        if r < 0:
            down += r * r
            n_down += 1
    sd = np.sqrt(sq / (n - 1)) if n > 1 else np.nan
    dd_sd = np.sqrt(down / n)
    peak, peak_at, max_dd, longest = e[0], 0, 0.0, 0
    for i in range(len(e)):
        if e[i] >= peak:
            peak, peak_at = e[i], i
        else:
            dd = e[i] / peak - 1.0
            if dd < max_dd:
                max_dd = dd
            if ts[i] - ts[peak_at] > longest:
                longest = ts[i] - ts[peak_at]
    return mean, sd, dd_sd, n_down, max_dd, longest


def curve_metrics(ts: np.ndarray, equity: np.ndarray, bar_ns: int) -> dict:
    """Return, risk and drawdown figures of one equity curve (ts ascending)."""
    out: dict = {"start_equity": None, "end_equity": None, "total_return": None, "annual_return": None,
                 "volatility": None, "sharpe": None, "sortino": None, "max_drawdown": None,
                 "max_drawdown_days": None, "calmar": None}
    if len(equity) < 2 or not equity[0] > 0:
        return out
    e = np.asarray(equity, np.float64)
    total = e[-1] / e[0] - 1.0
    years = (int(ts[-1]) - int(ts[0]) + bar_ns) / YEAR_NS
    annual = math.exp(math.log(e[-1] / e[0]) / years) - 1.0 if e[-1] > 0 and years > 0 else -1.0
    per_year = YEAR_NS / bar_ns
    mean, sd, dd_sd, n_down, max_dd, longest = _curve(np.ascontiguousarray(ts, np.int64), e)
    out.update(start_equity=float(e[0]), end_equity=float(e[-1]), total_return=float(total),
               annual_return=_finite(annual), volatility=_finite(sd * math.sqrt(per_year)),
               sharpe=_finite(mean / sd * math.sqrt(per_year)) if sd > 0 else None,
               sortino=_finite(mean / dd_sd * math.sqrt(per_year)) if n_down and dd_sd > 0 else None,
               max_drawdown=max_dd, max_drawdown_days=longest / DAY_NS,
               calmar=_finite(annual / -max_dd) if max_dd < 0 else None)
    return out


def trade_metrics(trades: dict, fills: dict | None = None) -> dict:
    """Win rate, profit factor, expectancy and friends of a set of closed trades."""
    pnl = np.asarray(trades["pnl"], np.float64)
    ret = np.asarray(trades["return"], np.float64)
    wins, losses = pnl[pnl > 0], pnl[pnl < 0]
    gross_loss = float(-losses.sum())
    out = {"trades": int(len(pnl)), "win_rate": float(len(wins) / len(pnl)) if len(pnl) else None,
           "profit_factor": _finite(float(wins.sum()) / gross_loss) if gross_loss > 0 else None,
           "expectancy": float(pnl.mean()) if len(pnl) else None,
           "average_trade_return": float(ret.mean()) if len(ret) else None,
           "best_trade_return": float(ret.max()) if len(ret) else None,
           "worst_trade_return": float(ret.min()) if len(ret) else None,
           "net_pnl": float(pnl.sum()), "fees": float(np.sum(trades["fees"])),
           "funding": float(np.sum(trades["funding"]))}
    if len(pnl):
        held = np.asarray(trades["exit_ts"], np.int64) - np.asarray(trades["entry_ts"], np.int64)
        out["average_holding_days"] = float(held.mean() / DAY_NS)
    return out


def buy_and_hold(ts_grid: np.ndarray, bar_market: np.ndarray, bar_close_ts: np.ndarray, bar_close: np.ndarray,
                 n_markets: int, cash: float) -> np.ndarray:
    """Equity of ``cash`` split equally across the markets at each one's first close and held, on ``ts_grid``."""
    value = np.zeros(len(ts_grid))
    markets = [k for k in range(n_markets) if np.any(bar_market == k)]
    if not markets:
        return np.full(len(ts_grid), cash)
    share = cash / len(markets)
    for k in markets:
        mine = bar_market == k
        t, c = bar_close_ts[mine], bar_close[mine]
        idx = np.searchsorted(t, ts_grid, side="right") - 1
        held = np.where(idx >= 0, c[np.maximum(idx, 0)] / c[0], 1.0)
        value += share * held
    return value


def summarize(ledger, bars, bar_ns: int, cash: float) -> dict:
    """Portfolio, benchmark and per-market metrics of a finished run."""
    eq = ledger.equity
    ts = eq["ts"]
    portfolio = curve_metrics(ts, eq["equity"], bar_ns)
    portfolio.update(trade_metrics(ledger.trades))
    notional = np.asarray(ledger.fills["qty"]) * np.asarray(ledger.fills["price"])
    is_fill = np.asarray(ledger.fills["kind"]) == 0
    mean_eq = float(np.mean(eq["equity"])) if len(ts) else cash
    portfolio["turnover"] = float(notional[is_fill].sum() / mean_eq) if mean_eq > 0 else None
    portfolio["exposure"] = float(np.mean(np.asarray(eq["exposure"]) > 0)) if len(ts) else None
    portfolio["average_gross_exposure"] = float(np.nanmean(eq["exposure"])) if len(ts) else None
    bench_curve = buy_and_hold(ts, bars.market, bars.close_ts, bars.close, len(bars.markets), cash)
    benchmark = curve_metrics(ts, bench_curve, bar_ns)
    benchmark["curve"] = bench_curve  # taken out by the runner: the benchmark's equity on the same times
    per_market = {}
    trades = ledger.trades
    for k, name in enumerate(bars.markets):
        mine = trades["market"] == k
        sub = {f: np.asarray(v)[mine] for f, v in trades.items()}
        m = trade_metrics(sub)
        bar_mine = bars.market == k
        span = bars.close_ts[bar_mine]
        if len(span):
            held = float(np.sum(sub["exit_ts"] - sub["entry_ts"]))
            m["exposure"] = held / float(span[-1] - span[0] + bar_ns)
            closes = bars.close[bar_mine]
            m["buy_and_hold_return"] = float(closes[-1] / closes[0] - 1.0)
        m["return_on_cash"] = m["net_pnl"] / cash
        per_market[name] = m
    return {"portfolio": portfolio, "benchmark": benchmark, "markets": per_market}


