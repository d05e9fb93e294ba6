"""A backtest's report: one self-contained HTML file (charts as inline SVG drawn by matplotlib, no scripts, no
network), readable offline and in a mail attachment."""

from __future__ import annotations

import datetime as dt
import html
import io
import re

import numpy as np

MAX_CURVE_POINTS = 2000
MAX_PRICE_BARS = 3000
MAX_MARKERS = 500
MAX_PRICE_CHARTS = 6


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    plt.rcParams.update({"svg.hashsalt": "crypto-intel", "svg.fonttype": "none", "font.size": 9,
                         "axes.spines.top": False, "axes.spines.right": False})
    return plt


def _svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    _plt().close(fig)
    text = buf.getvalue()
    text = text[text.index("<svg"):]  # drop the XML prolog and doctype: the SVG sits inside HTML
    return re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.S)  # RDF namespaces, not content


def _dates(ns: np.ndarray) -> np.ndarray:
    return np.asarray(ns, "datetime64[ns]")


def _thin(n: int, most: int) -> np.ndarray:
    return np.arange(n) if n <= most else np.unique(np.linspace(0, n - 1, most).astype(np.int64))


def _equity_chart(ts, equity, bench) -> str:
    plt = _plt()
    idx = _thin(len(ts), MAX_CURVE_POINTS)
    fig, ax = plt.subplots(figsize=(10, 3.4))
    ax.plot(_dates(ts[idx]), equity[idx], label="strategy", color="#1f6feb", lw=1.3)
    ax.plot(_dates(ts[idx]), bench[idx], label="buy and hold", color="#8b949e", lw=1.0, ls="--")
    ax.set_ylabel("equity")
    ax.legend(loc="upper left", frameon=False)
    ax.grid(alpha=0.3)
    return _svg(fig)


def _drawdown_chart(ts, equity) -> str:
    plt = _plt()
    idx = _thin(len(ts), MAX_CURVE_POINTS)
    dd = equity / np.maximum.accumulate(equity) - 1.0
    fig, ax = plt.subplots(figsize=(10, 2.2))
    ax.fill_between(_dates(ts[idx]), dd[idx] * 100, 0, color="#cf222e", alpha=0.35, lw=0)
    ax.plot(_dates(ts[idx]), dd[idx] * 100, color="#cf222e", lw=0.8)
    ax.set_ylabel("drawdown %")
    ax.grid(alpha=0.3)
    return _svg(fig)


def _price_chart(bars, k: int, trades: dict) -> str:
    plt = _plt()
    mine = np.flatnonzero(bars.market == k)
    idx = mine[_thin(len(mine), MAX_PRICE_BARS)]
    fig, ax = plt.subplots(figsize=(10, 3.0))
    ax.plot(_dates(bars.close_ts[idx]), bars.close[idx], color="#57606a", lw=0.8, label="close")
    t = np.flatnonzero(trades["market"] == k)[:MAX_MARKERS]
    for side, color, name in ((1, "#1a7f37", "long"), (-1, "#cf222e", "short")):
        sel = t[trades["side"][t] == side]
        if len(sel):
            ax.scatter(_dates(trades["entry_ts"][sel]), trades["entry_price"][sel], marker="^" if side > 0 else "v",
                       s=18, color=color, label=f"{name} entry", zorder=3)
            ax.scatter(_dates(trades["exit_ts"][sel]), trades["exit_price"][sel], marker="x", s=14, color=color,
                       label=f"{name} exit", zorder=3, alpha=0.7)
    ax.set_title(bars.markets[k], loc="left", fontsize=10)
    ax.legend(loc="upper left", frameon=False, ncol=5, fontsize=7)
    ax.grid(alpha=0.3)
    return _svg(fig)


def monthly_returns(ts: np.ndarray, equity: np.ndarray) -> tuple[list[int], np.ndarray]:
    """Years and a (years, 12) matrix of monthly returns of the equity curve (NaN: no data that month)."""
    months = _dates(ts).astype("datetime64[M]")
    uniq, last = np.unique(months[::-1], return_index=True)
    last = len(months) - 1 - last  # the last point of each month
    ends = equity[last]
    starts = np.r_[equity[0], ends[:-1]]
    rets = ends / starts - 1.0
    years = sorted({int(str(m)[:4]) for m in uniq})
    table = np.full((len(years), 12), np.nan)
    for m, r in zip(uniq, rets):
        y, mo = int(str(m)[:4]), int(str(m)[5:7])
        table[years.index(y), mo - 1] = r
    return years, table


def _monthly_chart(ts, equity) -> str:
    plt = _plt()
    years, table = monthly_returns(ts, equity)
    fig, ax = plt.subplots(figsize=(10, 0.6 + 0.45 * len(years)))
    lim = np.nanmax(np.abs(table)) if np.isfinite(table).any() else 0.01
    im = ax.imshow(table * 100, cmap="RdYlGn", vmin=-lim * 100, vmax=lim * 100, aspect="auto")
    ax.set_xticks(range(12), ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"])
    ax.set_yticks(range(len(years)), [str(y) for y in years])
    for i in range(len(years)):
        for j in range(12):
            if np.isfinite(table[i, j]):
                ax.text(j, i, f"{table[i, j] * 100:.1f}", ha="center", va="center", fontsize=7)
    fig.colorbar(im, ax=ax, label="%", fraction=0.02)
    return _svg(fig)


def _returns_chart(returns: np.ndarray) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(10, 2.6))
    r = returns[np.isfinite(returns)] * 100
    ax.hist(r, bins=min(60, max(10, len(r) // 5)), color="#1f6feb", alpha=0.75)
    ax.axvline(0, color="#57606a", lw=0.8)
    ax.set_xlabel("trade return %")
    ax.set_ylabel("trades")
    ax.grid(alpha=0.3)
    return _svg(fig)


def _fmt(key: str, v) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "–"
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    pct = ("return", "drawdown", "volatility", "win_rate", "exposure")
    if any(p in key for p in pct) and "days" not in key:
        return f"{v * 100:.2f}%"
    return f"{v:,.4g}" if abs(v) < 1e6 else f"{v:,.0f}"


_ROWS = ("total_return", "annual_return", "volatility", "sharpe", "sortino", "calmar", "max_drawdown",
         "max_drawdown_days", "trades", "win_rate", "profit_factor", "expectancy", "average_trade_return",
         "exposure", "turnover", "fees", "funding")


def _metrics_table(metrics: dict) -> str:
    p, b = metrics["portfolio"], metrics["benchmark"]
    rows = "".join(f"<tr><th>{html.escape(k.replace('_', ' '))}</th><td>{_fmt(k, p.get(k))}</td>"
                   f"<td>{_fmt(k, b.get(k))}</td></tr>" for k in _ROWS if k in p or k in b)
    head = "<tr><th></th><th>strategy</th><th>buy and hold</th></tr>"
    market_keys = ("trades", "win_rate", "profit_factor", "net_pnl", "fees", "exposure", "buy_and_hold_return")
    mrows = "".join(
        f"<tr><th>{html.escape(name)}</th>" + "".join(f"<td>{_fmt(k, m.get(k))}</td>" for k in market_keys) + "</tr>"
        for name, m in metrics["markets"].items())
    mhead = "<tr><th>market</th>" + "".join(f"<th>{html.escape(k.replace('_', ' '))}</th>" for k in market_keys)
    return (f"<table id='metrics'>{head}{rows}</table><h3>Per market</h3>"
            f"<table id='markets'>{mhead}</tr>{mrows}</table>")


def _strategy_block(result) -> str:
    s = result.strategy
    rules = []
    for r in s.rules:
        exits = []
        if r.stop_atr:
            exits.append(f"stop {r.stop_atr:g} × {r.atr}")
        if r.target_atr:
            exits.append(f"target {r.target_atr:g} × {r.atr}")
        if r.cooldown_bars:
            exits.append(f"cool-down {r.cooldown_bars} bars")
        rules.append(f"<li><b>{html.escape(r.name)}</b> ({r.side}): {html.escape(' and '.join(map(str, r.when)))}"
                     + (f" — {html.escape(', '.join(exits))}" if exits else "") + "</li>")
    params = ", ".join(f"{k}={v}" for k, v in s.params.items()) or "none"
    settings = {**result.settings.describe(), "timeframe": result.timeframe, "engine": result.engine,
                "markets": ", ".join(result.bars.markets)}
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in settings.items())
    counters = "".join(f"<tr><th>{html.escape(k.replace('_', ' '))}</th><td>{v:,}</td></tr>"
                       for k, v in result.ledger.counters.items())
    return (f"<p><b>{html.escape(s.name)}</b> (version {html.escape(s.version)}): {html.escape(s.description)}</p>"
            f"<p>parameters: {html.escape(params)}; indicators: {html.escape(', '.join(s.indicators) or 'none')}</p>"
            f"<ul>{''.join(rules)}</ul><table id='settings'>{rows}</table>"
            f"<h3>What the broker did</h3><table id='counters'>{counters}</table>")


_CSS = ("body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1100px;color:#1f2328}"
        "h1{font-size:22px}h2{font-size:17px;margin-top:28px}table{border-collapse:collapse;margin:8px 0}"
        "th,td{padding:3px 10px;border-bottom:1px solid #d0d7de;text-align:right}th{text-align:left;font-weight:600}"
        ".chart svg{width:100%;height:auto}.note{color:#57606a}")


def render_report(result) -> str:
    """The report of a finished backtest (``engine.backtest.runner.BacktestResult``) as one HTML document."""
    eq = result.ledger.equity
    ts, equity = np.asarray(eq["ts"]), np.asarray(eq["equity"], float)
    trades = result.ledger.trades
    n_trades = len(trades["pnl"])
    p = result.metrics["portfolio"]
    span = ""
    if len(ts):
        first, last = (dt.datetime.fromtimestamp(int(t) / 1e9, dt.timezone.utc).strftime("%Y-%m-%d %H:%M")
                       for t in (ts[0], ts[-1]))
        span = f"{first} → {last} UTC"
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Backtest "
             f"{html.escape(result.strategy.name)}</title><style>{_CSS}</style></head><body>",
             f"<h1>Backtest: {html.escape(result.strategy.name)}</h1>",
             f"<p class='note'>{len(result.bars):,} bars of {len(result.bars.markets)} market(s), "
             f"{html.escape(result.timeframe)}, {html.escape(span)}; {n_trades:,} trades; total return "
             f"{_fmt('total_return', p.get('total_return'))} against buy and hold "
             f"{_fmt('total_return', result.metrics['benchmark'].get('total_return'))}</p>"]
    if len(ts) >= 2:
        parts += ["<h2>Equity</h2>", f"<div class='chart' id='chart-equity'>"
                  f"{_equity_chart(ts, equity, np.asarray(result.benchmark, float))}</div>",
                  "<h2>Drawdown</h2>", f"<div class='chart' id='chart-drawdown'>{_drawdown_chart(ts, equity)}</div>",
                  "<h2>Monthly returns</h2>", f"<div class='chart' id='chart-monthly'>{_monthly_chart(ts, equity)}</div>"]
    else:
        parts.append("<p class='note'>Too few bars for an equity curve.</p>")
    parts.append("<h2>Trades on the price chart</h2>")
    if n_trades:
        counts = np.bincount(trades["market"], minlength=len(result.bars.markets))
        for i, k in enumerate(np.argsort(-counts, kind="stable")[:MAX_PRICE_CHARTS]):
            if counts[k]:
                parts.append(f"<div class='chart' id='chart-trades-{i}'>{_price_chart(result.bars, int(k), trades)}</div>")
        parts += ["<h2>Trade returns</h2>",
                  f"<div class='chart' id='chart-returns'>{_returns_chart(np.asarray(trades['return'], float))}</div>"]
    else:
        parts.append("<p class='note' id='no-trades'>No trades: the strategy never entered a position.</p>")
    parts += ["<h2>Metrics</h2>", _metrics_table(result.metrics), "<h2>Strategy and settings</h2>",
              _strategy_block(result), "</body></html>"]
    return "\n".join(parts)
