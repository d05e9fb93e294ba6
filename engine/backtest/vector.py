"""Vectorised signals: a simple rule strategy over whole arrays, per market, with the live operators' rules.

Applies to strategies whose conditions read indicator and candle columns only (no structure columns, no
higher-timeframe ``@`` columns). Each indicator runs its batch form over the market's whole series (the same
kernel the live operator runs, so values are identical), conditions are numpy over whole columns with the
previous bar's values for crosses, cool-downs are one pass over the hits, and — as live — no signal fires
before the risk operator's first score (``RiskOperator.ready_after`` real bars). The signals equal the
event-driven run's, so the broker makes the same trades.
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np

from engine.backtest.broker import Bars
from engine.config import PipelineConfig
from engine.indicators.base import Bars as IndicatorBars
from engine.indicators.registry import parse_spec
from engine.risk.operator import RiskOperator
from engine.signals.operator import CANDLE_FIELDS
from engine.signals.rules import Condition, Strategy
from schemas.batches import CandleBatch
from schemas.errors import ConfigError
from schemas.timeframes import parse_timeframe

_VECTOR_CANDLE_FIELDS = ("open", "high", "low", "close", "volume")


def indicator_columns(strategy: Strategy) -> dict[str, tuple]:
    """Column name -> (indicator, output index) for the strategy's indicators."""
    out = {}
    for spec in strategy.indicators:
        ind = parse_spec(spec)
        for k, name in enumerate(ind.column_names()):
            out[name] = (spec, k)
    return out


def check_vector(strategy: Strategy, extra: Iterable[str] = ()) -> None:
    """ConfigError unless the strategy reads only indicator, candle and ``extra`` columns."""
    known = set(indicator_columns(strategy)) | set(_VECTOR_CANDLE_FIELDS) | set(extra)
    other = sorted(c for c in strategy.columns() if c not in known)
    if other:
        raise ConfigError(f"--engine vector runs strategies over indicator and candle columns; "
                          f"{strategy.name!r} also reads {', '.join(other)}: use --engine event")


def _candles(inputs: list, tf: str) -> list[CandleBatch]:
    """Candle inputs as they are; trades aggregated once into candles of ``tf``."""
    from engine.candles import CandleAggregator

    out = [b for b in inputs if isinstance(b, CandleBatch)]
    trades = [b for b in inputs if not isinstance(b, CandleBatch)]
    if trades:
        from engine.sources.replay import Replay
        agg = CandleAggregator([tf], lateness=PipelineConfig().lateness_ns, gaps="skip")
        for batch in Replay(trades, batch_size=1 << 20):
            out.append(agg.update(batch))
        out.append(agg.flush())
    return [c for c in out if len(c)]


def vector_signals(inputs: list, strategy: Strategy, tf: str, progress: Callable[[int], None] | None = None,
                   keep_columns: Iterable[str] = (), risk_window: int = 100,
                   extra_columns: Callable[[dict], dict] | None = None):
    """Bars of every market and the strategy's signals over them (SignalArrays), and requested columns.

    ``extra_columns(bars)``: more columns for the rules, computed from one market's whole series (a dict of
    open_ts, open, high, low, close, volume arrays) — what a strategy file's own ``columns`` function does,
    and where look-ahead creeps in (``engine.backtest.check`` finds it)."""
    from engine.backtest.runner import SignalArrays

    if extra_columns is None:
        check_vector(strategy)
    tf_ns = parse_timeframe(tf)
    candles = _candles(inputs, tf)
    parts_of: dict[str, list] = {}  # market -> its live candles of this timeframe, batch by batch
    for c in candles:
        idx = np.flatnonzero(~c.gap & (c.tf == tf_ns))
        if not len(idx):
            continue
        by_market = idx[np.argsort(c.market[idx], kind="stable")]
        mk = c.market[by_market]
        bounds = np.flatnonzero(np.diff(mk)) + 1
        whole = len(bounds) == 0 and len(idx) == len(c)  # the batch is one market's live bars: keep it as it is
        for rows in np.split(by_market, bounds):
            parts_of.setdefault(c.markets[int(c.market[rows[0]])], []).append(c if whole else c.take(rows))
    markets = sorted(parts_of)
    ready_after = RiskOperator(window=risk_window).ready_after
    cols_of = indicator_columns(strategy)
    indicators = {spec: parse_spec(spec) for spec in strategy.indicators}
    bar_parts, sig_parts, features = [], [], {}
    keep = list(keep_columns)
    for k, name in enumerate(markets):
        parts = parts_of[name]
        mc = parts[0] if len(parts) == 1 else CandleBatch.concat(parts)
        if len(mc) > 1 and np.any(np.diff(mc.open_ts) < 0):
            mc = mc.take(np.argsort(mc.open_ts, kind="stable"))
        n = len(mc)
        ib = IndicatorBars(mc.open_ts, mc.open, mc.high, mc.low, mc.close, mc.volume)
        outputs = {spec: ind.batch(ib) for spec, ind in indicators.items()}
        col = {cname: outputs[spec][:, j] for cname, (spec, j) in cols_of.items()}
        for f in _VECTOR_CANDLE_FIELDS:
            col.setdefault(f, getattr(mc, f))
        if extra_columns is not None:
            series_arrays = {"open_ts": mc.open_ts, **{f: getattr(mc, f) for f in _VECTOR_CANDLE_FIELDS}}
            for cname, values in extra_columns(series_arrays).items():
                values = np.asarray(values, np.float64)
                if values.shape != (n,):
                    raise ConfigError(f"strategy columns: {cname!r} has shape {values.shape}, expected ({n},)")
                col[cname] = values
            check_vector(strategy, col)
        close_ts = mc.close_ts
        bar_parts.append((np.full(n, k, np.int64), mc.open_ts, close_ts, mc.open, mc.high, mc.low, mc.close,
                          mc.volume))
        sig_parts.append(_fire(strategy, col, mc.close, close_ts, k, ready_after))
        if keep:
            features[name] = {"close_ts": close_ts, **{c: col[c] for c in keep if c in col}}
        if progress:
            progress(n)
    if len(bar_parts) == 1:
        cols = list(bar_parts[0])
    elif bar_parts:
        cols = [np.concatenate([p[i] for p in bar_parts]) for i in range(8)]
    else:
        e = np.empty(0)
        cols = [np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64), e, e, e, e, e]
    bars = Bars(*cols, markets)
    sig = [p for p in sig_parts if len(p[0])]
    if sig:
        market, ts, kind, side, price, stop, target = (np.concatenate([p[i] for p in sig]) for i in range(7))
        order = np.lexsort((kind, market, ts))  # canonical: time, market (names are sorted), rule name
        arrays = SignalArrays(np.array(markets, dtype=object)[market[order]], ts[order], side[order], price[order], stop[order], target[order])
    else:
        arrays = SignalArrays(np.empty(0, object), np.empty(0, np.int64), np.empty(0, np.int8), np.empty(0),
                              np.empty(0), np.empty(0))
    return bars, arrays, features


def _cond(cond: Condition, col: dict, prev: dict) -> np.ndarray:
    a, pa = col[cond.left], prev[cond.left]
    if isinstance(cond.right, str):
        b, pb = col[cond.right], prev[cond.right]
    else:
        b = pb = np.float64(cond.right)
    with np.errstate(invalid="ignore"):
        if cond.op == ">":
            return a > b
        if cond.op == "<":
            return a < b
        if cond.op == ">=":
            return a >= b
        if cond.op == "<=":
            return a <= b
        if cond.op == "crosses_above":
            return (pa <= pb) & (a > b)
        return (pa >= pb) & (a < b)


def _fire(strategy: Strategy, col: dict, close: np.ndarray, close_ts: np.ndarray, market: int, ready_after: int):
    """The rules' signals over one market's whole series, as the signal operator fires them."""
    n = len(close)
    prev = {}
    used = {c for r in strategy.rules for cond in r.when for c in cond.columns()}
    for name, v in col.items():
        if name not in used:
            continue
        p = np.empty(n)
        if n:
            p[0] = np.nan
            p[1:] = v[:-1]
        prev[name] = p
    ready = np.arange(n) >= ready_after
    out_rows, out_rule = [], []
    for k, r in enumerate(strategy.rules):
        hit = ready.copy()
        for cond in r.when:
            hit &= _cond(cond, col, prev)
        rows = np.flatnonzero(hit)
        if r.cooldown_bars and len(rows):
            kept, last = [], -(2**62)
            for j in rows.tolist():
                if j - last > r.cooldown_bars:
                    kept.append(j)
                    last = j
            rows = np.array(kept, np.int64)
        out_rows.append(rows)
        out_rule.append(np.full(len(rows), k, np.int64))
    rows = np.concatenate(out_rows) if out_rows else np.empty(0, np.int64)
    rule = np.concatenate(out_rule) if out_rule else np.empty(0, np.int64)
    rules = strategy.rules
    sign = np.array([1.0 if r.side == "buy" else -1.0 for r in rules])[rule]
    price = close[rows]
    atr = np.array([np.nan] * len(rows))
    for k, r in enumerate(rules):
        mine = rule == k
        if r.atr in col and mine.any():
            atr[mine] = col[r.atr][rows[mine]]
    finite = np.isfinite(atr)
    stop_atr = np.array([r.stop_atr or np.nan for r in rules])[rule]
    stop = np.where(np.isfinite(stop_atr) & finite, price - sign * stop_atr * atr, np.nan)
    first_target = np.array([r.target_atr or np.nan for r in rules])[rule]
    target = price + (sign * first_target) * atr
    target[~finite] = np.nan
    kinds = np.array([r.name for r in rules] or [""], dtype=str)[rule]
    return (np.full(len(rows), market, np.int64), close_ts[rows].astype(np.int64), kinds,
            sign.astype(np.int8), price, stop, target)


__all__ = ["vector_signals", "check_vector", "CANDLE_FIELDS"]
