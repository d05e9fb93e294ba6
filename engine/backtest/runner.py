"""Backtest runner: the live operators and strategy rules over history, then the simulated broker.

``engine="event"`` streams the history through the same operator chain the live pipeline runs (candles,
indicators, structure, risk, signals) in micro-batches, so its signals are the live signals; ``"vector"``
computes a simple rule strategy over whole arrays (``engine.backtest.vector``). Both hand the signals to
one broker (``engine.backtest.broker``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np

from engine.backtest.broker import Bars, Funding, Ledger, Orders, order_bars, simulate
from engine.backtest.metrics import summarize
from engine.backtest.settings import BacktestSettings
from engine.config import STAGES, PipelineConfig
from engine.pipeline import build_chain
from engine.signals.rules import Strategy, load_strategy
from engine.sources.replay import Replay
from engine.structure.gaps import FVG_COLUMNS
from engine.structure.liquidity import LIQUIDITY_COLUMNS
from engine.structure.order_blocks import OB_COLUMNS
from engine.structure.ranges import PERIOD_COLUMNS, RANGE_COLUMNS
from schemas.batches import CandleBatch, SignalBatch
from schemas.errors import ConfigError
from schemas.timeframes import format_timeframe, parse_timeframe

ENGINES = ("event", "vector")
_ANALYSIS_COLUMNS = {"fvg": set(FVG_COLUMNS), "order_blocks": set(OB_COLUMNS),
                     "liquidity": set(LIQUIDITY_COLUMNS) | set(PERIOD_COLUMNS) | set(RANGE_COLUMNS)}


@dataclass
class BacktestResult:
    strategy: Strategy
    settings: BacktestSettings
    timeframe: str
    engine: str
    bars: Bars  # in broker order
    signals: SignalBatch | list  # every signal of the run (acted on or not), canonical order
    ledger: Ledger
    metrics: dict
    benchmark: np.ndarray  # buy-and-hold equity on ledger.equity["ts"]
    window: tuple[int | None, int | None] = (None, None)
    features: dict = field(default_factory=dict)  # market -> {column: array on that market's bars}, on request


def analyses_for(strategy: Strategy) -> tuple[str, ...]:
    """The structure analyses whose columns the strategy reads (swings and breaks always run)."""
    cols = strategy.columns()
    return tuple(name for name in ("fvg", "order_blocks", "liquidity") if cols & _ANALYSIS_COLUMNS[name])


def input_timeframe(inputs: list, timeframe: str | None) -> str:
    """The bar length of the run: the candles' own (``--timeframe`` must agree), or ``timeframe`` (default
    1m) for trades."""
    tfs = {int(t) for b in inputs if isinstance(b, CandleBatch) and len(b) for t in {b.tf.min(), b.tf.max()}}
    if len(tfs) > 1:
        raise ConfigError("candle inputs of several timeframes ("
                          + ", ".join(format_timeframe(t) for t in sorted(tfs)) + "): backtest one timeframe")
    if tfs:
        own = format_timeframe(tfs.pop())
        if timeframe is not None and parse_timeframe(timeframe) != parse_timeframe(own):
            raise ConfigError(f"--timeframe {timeframe}: the input candles are {own}; give trades to build "
                              f"other timeframes")
        return own
    return timeframe or "1m"


@dataclass
class SignalArrays:
    """What the broker needs of each signal, in canonical order (ts, market, kind)."""

    market: np.ndarray  # object: market names
    ts: np.ndarray  # int64 close time of the firing bar
    side: np.ndarray  # int8 +1 buy / -1 sell
    price: np.ndarray
    stop: np.ndarray  # NaN: none
    target: np.ndarray  # NaN: none

    def __len__(self) -> int:
        return len(self.ts)

    @classmethod
    def of(cls, signals) -> "SignalArrays":
        """From a SignalBatch, Signal records (e.g. read back from a live run's output) or SignalArrays."""
        if isinstance(signals, SignalArrays):
            return signals
        if isinstance(signals, SignalBatch):
            n = len(signals)
            target = signals.targets[:, 0] if signals.targets.ndim == 2 and signals.targets.shape[1] else \
                np.full(n, np.nan)
            sides = np.array([1 if r.side == "buy" else -1 for r in signals.rules] or [0], np.int8)
            return cls(np.array(signals.markets, dtype=object)[signals.market] if n else np.empty(0, object),
                       signals.ts.astype(np.int64), sides[signals.rule] if n else np.empty(0, np.int8),
                       signals.price.astype(np.float64), signals.stop.astype(np.float64), target.astype(np.float64))
        signals = list(signals)
        return cls(np.array([s.market for s in signals], dtype=object), np.array([s.ts for s in signals], np.int64),
                   np.array([1 if getattr(s.side, "value", s.side) == "buy" else -1 for s in signals], np.int8),
                   np.array([s.price for s in signals], np.float64),
                   np.array([np.nan if s.stop is None else s.stop for s in signals], np.float64),
                   np.array([np.nan if s.target is None else s.target for s in signals], np.float64))


def orders_for(bars: Bars, signals, start: int | None = None, end: int | None = None) -> Orders:
    """The signal each bar acts on: the first in canonical order of its market at its close time.

    ``signals``: a SignalBatch, Signal records or SignalArrays, in canonical order."""
    orders = Orders.none(len(bars))
    sig = SignalArrays.of(signals)
    if not len(sig) or not len(bars):
        return orders
    index = {m: i for i, m in enumerate(bars.markets)}
    market = np.array([index.get(m, -1) for m in sig.market], np.int64)
    keep = market >= 0
    if start is not None:
        keep &= sig.ts >= start
    if end is not None:
        keep &= sig.ts <= end
    pos = _locate(bars, sig.ts, market)
    keep &= pos >= 0
    rows = np.flatnonzero(keep)
    bar_rows, first = np.unique(pos[rows], return_index=True)  # the first signal of each bar wins
    j = rows[first]
    orders.side[bar_rows], orders.price[bar_rows] = sig.side[j], sig.price[j]
    orders.stop[bar_rows], orders.target[bar_rows] = sig.stop[j], sig.target[j]
    return orders


def _locate(bars: Bars, ts: np.ndarray, market: np.ndarray) -> np.ndarray:
    """Row of each (close ts, market) in ``bars``; -1 when there is no such bar."""
    by_market = np.arange(len(bars)) if len(bars.markets) == 1 else np.lexsort((bars.close_ts, bars.market))
    mk, cts = bars.market[by_market], bars.close_ts[by_market]
    starts = np.searchsorted(mk, np.arange(len(bars.markets) + 1))
    out = np.full(len(ts), -1, np.int64)
    for k in range(len(bars.markets)):
        mine = np.flatnonzero(market == k)
        if not len(mine):
            continue
        seg = cts[starts[k]:starts[k + 1]]
        p = np.searchsorted(seg, ts[mine])
        ok = p < len(seg)
        ok[ok] = seg[p[ok]] == ts[mine][ok]
        out[mine[ok]] = by_market[starts[k] + p[ok]]
    return out


def _bars_of(candles: list[CandleBatch], markets: list[str]) -> Bars:
    """Non-gap candles of every batch as broker bars, market names mapped onto ``markets``."""
    index = {m: i for i, m in enumerate(markets)}
    parts = []
    for c in candles:
        live = ~c.gap
        if not live.any():
            continue
        remap = np.array([index[m] for m in c.markets], np.int64)
        parts.append((remap[c.market[live]], c.open_ts[live], c.close_ts[live], c.open[live], c.high[live],
                      c.low[live], c.close[live], c.volume[live]))
    if not parts:
        e = np.empty(0)
        return Bars(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64), e, e, e, e, e, markets)
    cols = [np.concatenate([p[i] for p in parts]) for i in range(8)]
    return Bars(*cols, markets)


def _window(bars: Bars, start: int | None, end: int | None) -> Bars:
    if start is None and end is None:
        return bars
    keep = np.ones(len(bars), bool)
    if start is not None:
        keep &= bars.open_ts >= start
    if end is not None:
        keep &= bars.close_ts <= end
    return Bars(*(getattr(bars, f)[keep] for f in ("market", "open_ts", "close_ts", "open", "high", "low", "close",
                                                     "volume")), bars.markets)


def run_event(inputs: list, strategy: Strategy, config: PipelineConfig,
              progress: Callable[[int], None] | None = None,
              keep_columns: Iterable[str] = ()) -> tuple[list[CandleBatch], SignalBatch | list, dict]:
    """The live chain over the inputs in micro-batches: the candles it closed, its signals and (on request)
    feature columns per market."""
    from engine.pipeline import RunResult, collect

    chain = build_chain(list(STAGES), config)
    result = RunResult()
    candles: list[CandleBatch] = []
    keep = list(keep_columns)
    feats: list = []

    def take(emitted) -> None:
        collect(result, emitted)
        if emitted.features is not None and len(emitted.features):
            f = emitted.features
            candles.append(f.candles)
            if keep:
                feats.append((f.candles, {c: f.column(c) for c in keep if c in f.names}))

    for batch in Replay(inputs, batch_size=config.batch_size):
        take(chain.update(batch))
        if progress:
            progress(len(batch))
    take(chain.flush())
    result.finish()
    columns: dict = {}
    for c, cols in feats:
        names = np.array(c.markets, dtype=object)[c.market]
        for name in np.unique(names):
            mine = (names == name) & ~c.gap
            d = columns.setdefault(str(name), {"close_ts": [], **{k: [] for k in cols}})
            d["close_ts"].append(c.close_ts[mine])
            for k, v in cols.items():
                d[k].append(v[mine])
    features = {m: {k: np.concatenate(v) for k, v in d.items()} for m, d in columns.items()}
    return candles, result.signal_batch, features


def run_backtest(inputs: list, strategy: str | Strategy = "default", params: dict | None = None,
                 settings: BacktestSettings | None = None, timeframe: str | None = None, engine: str = "event",
                 funding: dict[str, tuple[np.ndarray, np.ndarray]] | None = None, start: int | None = None,
                 end: int | None = None, batch_size: int = 8192, progress: Callable[[int], None] | None = None,
                 keep_columns: Iterable[str] = (), config_overrides: dict | None = None,
                 extra_columns: Callable[[dict], dict] | None = None) -> BacktestResult:
    """One backtest of ``strategy`` over ``inputs`` (TradeBatch/CandleBatch, e.g. from ``load_inputs``).

    ``start``/``end`` (ns) bound the bars that trade (history before ``start`` still warms the operators);
    ``funding`` maps a market to (ts, rate) arrays. ``strategy`` may be a Strategy object (vector engine) and
    ``extra_columns`` a function of one market's series giving more columns for its rules (vector engine).
    """
    settings = settings or BacktestSettings()
    if engine not in ENGINES:
        raise ConfigError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    strat = strategy if isinstance(strategy, Strategy) else load_strategy(strategy, params)
    tf = input_timeframe(inputs, timeframe)
    if engine == "vector":
        from engine.backtest.vector import vector_signals
        bars_all, signals, features = vector_signals(inputs, strat, tf, progress=progress,
                                                     keep_columns=keep_columns, extra_columns=extra_columns)
    else:
        if not isinstance(strategy, str) or extra_columns is not None:
            raise ConfigError(f"strategy {strat.name!r} computes its own columns: run it with --engine vector")
        config = PipelineConfig(timeframes=(tf,), strategy=strategy, strategy_params=dict(params or {}),
                                analyses=analyses_for(strat), batch_size=batch_size, **(config_overrides or {}))
        candles, signals, features = run_event(inputs, strat, config, progress, keep_columns)
        markets = sorted({m for c in candles for m in c.markets})
        bars_all = _bars_of(candles, markets)
    bars, _ = order_bars(bars_all)
    bars = _window(bars, start, end)
    orders = orders_for(bars, signals, start, end)
    fund = _funding(funding, bars)
    ledger = simulate(bars, orders, settings, fund)
    bar_ns = parse_timeframe(tf)
    metrics = summarize(ledger, bars, bar_ns, settings.cash)
    metrics["counters"] = ledger.counters
    curve = metrics["benchmark"].pop("curve")
    return BacktestResult(strat, settings, tf, engine, bars, signals, ledger, metrics, curve, (start, end), features)


def _funding(funding: dict | None, bars: Bars) -> Funding:
    if not funding:
        return Funding.none()
    index = {m: i for i, m in enumerate(bars.markets)}
    ts, mk, rate = [], [], []
    for market, (t, r) in funding.items():
        if market not in index:
            continue
        ts.append(np.asarray(t, np.int64))
        rate.append(np.asarray(r, np.float64))
        mk.append(np.full(len(t), index[market], np.int64))
    if not ts:
        return Funding.none()
    t, m, r = np.concatenate(ts), np.concatenate(mk), np.concatenate(rate)
    order = np.lexsort((m, t))
    return Funding(t[order], m[order], r[order])
