"""Look-ahead and recursion analysis of a strategy over real history.

Look-ahead: the strategy runs on the whole history, then on histories cut at several points, and on the
whole history with every bar after the cut perturbed. Nothing at or before a cut may change: a column,
signal or closed trade that differs there was computed from bars that did not exist yet, and is reported
with the column (or signal/trade) that leaked.

Recursion: every indicator of the strategy is computed on the whole series and again on the series with
its first bars dropped; an indicator whose values keep depending on how much history precedes them for
longer than its lookback (exponential smoothing: EMA, RSI, ATR, ADX...) is reported with the warm-up after
which the two agree to ``rtol``.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from engine.backtest.runner import SignalArrays, run_backtest
from engine.backtest.settings import BacktestSettings
from engine.indicators.base import Bars as IndicatorBars
from engine.indicators.registry import parse_spec
from engine.signals.rules import Strategy, load_strategy
from schemas.batches import CandleBatch, TradeBatch
from schemas.errors import ConfigError


def truncate(inputs: list, cut: int) -> list:
    """Rows known by time ``cut``: candles closed by then, trades before it."""
    out = []
    for b in inputs:
        keep = b.close_ts <= cut if isinstance(b, CandleBatch) else b.ts < cut
        out.append(b.take(np.flatnonzero(keep)))
    return out


def perturb(inputs: list, cut: int, seed: int = 0) -> list:
    """The same history with every price after ``cut`` scaled by a random factor per row (within +-5%)."""
    rng = np.random.default_rng(seed)
    out = []
    for b in inputs:
        if isinstance(b, CandleBatch):
            after = b.close_ts > cut
            f = np.where(after, 1.0 + rng.uniform(-0.05, 0.05, len(b)), 1.0)
            out.append(CandleBatch(b.markets, b.market, b.tf, b.open_ts, b.open * f, b.high * f, b.low * f,
                                   b.close * f, b.volume, b.buy_volume, b.sell_volume, b.vwap * f, b.trade_count,
                                   b.gap, b.ts_init, b.degraded))
        elif isinstance(b, TradeBatch):
            f = np.where(b.ts >= cut, 1.0 + rng.uniform(-0.05, 0.05, len(b)), 1.0)
            out.append(TradeBatch(b.markets, b.market, b.ts, b.price * f, b.size, b.side, b.trade_id, b.ts_init))
        else:
            out.append(b)
    return out


def _cut_points(inputs: list, tf_ns: int, n: int) -> list[int]:
    lo = min(int(b.open_ts.min()) if isinstance(b, CandleBatch) else int(b.ts.min()) for b in inputs if len(b))
    hi = max(int(b.close_ts.max()) if isinstance(b, CandleBatch) else int(b.ts.max()) for b in inputs if len(b))
    fracs = np.linspace(0.5, 0.9, n) if n > 1 else np.array([0.7])
    # on bar boundaries, so a cut never splits a bar built from trades
    return [int((lo + f * (hi - lo)) // tf_ns * tf_ns) for f in fracs]


def _signal_rows(sig: SignalArrays, upto: int) -> set:
    keep = sig.ts <= upto
    return set(zip(sig.market[keep].tolist(), sig.ts[keep].tolist(), sig.side[keep].tolist(),
                   np.round(sig.price[keep], 12).tolist()))


def _trade_rows(result, upto: int) -> set:
    t = result.ledger.trades
    names = result.bars.markets
    keep = (t["exit_ts"] < upto) & (t["exit_reason"] != 4)  # positions closed by the data's end are not facts
    return set(zip([names[m] for m in t["market"][keep]], t["side"][keep].tolist(), t["entry_ts"][keep].tolist(),
                   t["entry_price"][keep].tolist(), t["exit_ts"][keep].tolist(), t["exit_price"][keep].tolist()))


def _column_leaks(full: dict, other: dict, upto: int) -> list[dict]:
    leaks = []
    for market, cols in full.items():
        mine = other.get(market, {})
        ts = cols["close_ts"]
        keep = ts <= upto
        for name, values in cols.items():
            if name == "close_ts" or name not in mine:
                continue
            o_ts = mine["close_ts"]
            o_keep = o_ts <= upto
            a, b = values[keep], mine[name][o_keep]
            if len(a) != len(b):
                leaks.append({"column": name, "market": market, "ts": int(upto), "detail": "bar count differs"})
                continue
            same = (a == b) | (np.isnan(a) & np.isnan(b))
            if not same.all():
                j = int(np.flatnonzero(~same)[0])
                leaks.append({"column": name, "market": market, "ts": int(ts[keep][j]),
                              "full": float(a[j]), "known_then": float(b[j])})
    return leaks


def lookahead(inputs: list, strategy: str | Strategy, params: dict | None = None,
              settings: BacktestSettings | None = None, timeframe: str | None = None, engine: str = "event",
              cuts: int = 3, extra_columns: Callable[[dict], dict] | None = None,
              progress: Callable[[str], None] | None = None) -> dict:
    """Runs the strategy whole, cut and perturbed; returns {"leaks": [...], "cuts": [...], ...}."""
    from schemas.timeframes import parse_timeframe

    strat = strategy if isinstance(strategy, Strategy) else load_strategy(strategy, params)
    columns = sorted(strat.columns())
    kw = dict(params=params, settings=settings, timeframe=timeframe, engine=engine, keep_columns=columns,
              extra_columns=extra_columns)
    full = run_backtest(inputs, strategy, **kw)
    tf_ns = parse_timeframe(full.timeframe)
    full_sig = SignalArrays.of(full.signals)
    leaks: list[dict] = []
    points = _cut_points(inputs, tf_ns, cuts)
    for i, cut in enumerate(points):
        for how, data in (("truncated", truncate(inputs, cut)), ("future perturbed", perturb(inputs, cut, seed=i))):
            if progress:
                progress(f"{how} at {cut}")
            other = run_backtest(data, strategy, **kw)
            for leak in _column_leaks(full.features, other.features, cut):
                leaks.append({"kind": "column", "test": how, "cut": cut, **leak})
            other_sig = SignalArrays.of(other.signals)
            changed = _signal_rows(full_sig, cut) ^ _signal_rows(other_sig, cut)
            if changed:
                first = min(changed, key=lambda r: r[1])
                leaks.append({"kind": "signal", "test": how, "cut": cut, "market": first[0], "ts": int(first[1]),
                              "count": len(changed)})
            t_changed = _trade_rows(full, cut) ^ _trade_rows(other, cut)
            if t_changed:
                first = min(t_changed, key=lambda r: r[2])
                leaks.append({"kind": "trade", "test": how, "cut": cut, "market": first[0], "ts": int(first[2]),
                              "count": len(t_changed)})
    leaked_columns = sorted({x["column"] for x in leaks if x["kind"] == "column"})
    return {"strategy": strat.name, "engine": engine, "cuts": points, "columns_checked": columns,
            "leaks": leaks, "leaked_columns": leaked_columns, "ok": not leaks}


def warmup(bars: IndicatorBars, spec: str, offsets: tuple[int, ...] = (250, 1000), rtol: float = 1e-9) -> dict:
    """Bars after a later start before ``spec`` agrees with the whole-history values (the worst over
    ``offsets``); None when it never does within the series."""
    ind = parse_spec(spec)
    whole = ind.batch(bars)
    needed = 0
    for s in offsets:
        if s >= len(bars) - 1:
            continue
        part = ind.batch(bars.take(slice(s, None)))
        ref = whole[s:]
        with np.errstate(invalid="ignore"):
            close = np.isclose(part, ref, rtol=rtol, atol=0.0) | (np.isnan(part) & np.isnan(ref))
        bad = np.flatnonzero(~close.all(axis=1))
        if not len(bad):
            continue
        last_bad = int(bad[-1])
        if last_bad >= len(part) - 1:
            return {"indicator": spec, "lookback": ind.lookback, "warmup_bars": None, "recursive": True}
        needed = max(needed, last_bad + 1)
    return {"indicator": spec, "lookback": ind.lookback, "warmup_bars": needed, "recursive": needed > ind.lookback + 1}


def recursion(bars_by_market: dict[str, IndicatorBars], strategy: Strategy) -> list[dict]:
    """Per indicator of the strategy: its lookback and the warm-up its values need (worst market)."""
    out = []
    for spec in strategy.indicators:
        worst = None
        for bars in bars_by_market.values():
            r = warmup(bars, spec)
            if worst is None or r["warmup_bars"] is None or (worst["warmup_bars"] is not None
                                                              and r["warmup_bars"] > worst["warmup_bars"]):
                worst = r
            if worst["warmup_bars"] is None:
                break
        if worst is not None:
            out.append(worst)
    return out


def bars_by_market(result) -> dict[str, IndicatorBars]:
    b = result.bars
    out = {}
    for k, name in enumerate(b.markets):
        mine = np.flatnonzero(b.market == k)
        if len(mine):
            out[name] = IndicatorBars(b.open_ts[mine], b.open[mine], b.high[mine], b.low[mine], b.close[mine],
                                      b.volume[mine])
    if not out:
        raise ConfigError("no bars to analyse")
    return out
