"""Performance metrics of an equity curve and a list of trades, for the portfolio and per market.

Returns are simple per-bar returns of equity; annualised figures use 365 days a year (crypto trades every
day) and the bar length. Sharpe and Sortino assume a zero risk-free rate. Drawdown durations are in days.
"""

from __future__ import annotations

import math

import numpy as np

YEAR_NS = 365 * 86_400 * 10**9
DAY_NS = 86_400 * 10**9


def _finite(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


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
    r = e[1:] / e[:-1] - 1.0
    per_year = YEAR_NS / bar_ns
    sd = float(np.std(r, ddof=1)) if len(r) > 1 else float("nan")
    mean = float(np.mean(r))
    downside = r[r < 0]
    dd_sd = float(np.sqrt(np.mean(np.square(np.minimum(r, 0.0))))) if len(r) else float("nan")
    peak = np.maximum.accumulate(e)
    dd = e / peak - 1.0
    max_dd = float(dd.min())
    # longest stretch below a previous peak, in days: from the peak to the last bar still below it
    at_peak = np.where(e >= peak, np.arange(len(e)), 0)
    peak_at = np.maximum.accumulate(at_peak)
    below = dd < 0
    longest = int(np.max(ts[below] - ts[peak_at[below]])) if below.any() else 0
    out.update(start_equity=float(e[0]), end_equity=float(e[-1]), total_return=float(total),
               annual_return=_finite(annual), volatility=_finite(sd * math.sqrt(per_year)),
               sharpe=_finite(mean / sd * math.sqrt(per_year)) if sd > 0 else None,
               sortino=_finite(mean / dd_sd * math.sqrt(per_year)) if len(downside) and dd_sd > 0 else None,
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


def benchmark_curve(ledger, bars, cash: float) -> np.ndarray:
    return buy_and_hold(ledger.equity["ts"], bars.market, bars.close_ts, bars.close, len(bars.markets), cash)
