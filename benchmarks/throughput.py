"""Pipeline throughput in trades/s and market-bars/s (candles closed per second): in-process, and through Ray
with 1 and 2 shards per stage, staged and fused; then NautilusTrader on the same quiet trades.

Two workloads of 100 synthetic markets, at both ends of the trades-per-bar range: the cost per trade
depends on how many bars the trades make. Chunks of 65,536 trades (BENCH_BATCH), 1m candles, the default strategy, all analyses.

Sizes: BENCH_TRADES (both workloads, default 5,000,000), or BENCH_QUIET_TRADES / BENCH_BUSY_TRADES;
BENCH_NAUTILUS_TRADES (default: all the quiet trades); BENCH_WARMUP_TRADES (object-store warm-up, 1,000,000).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from benchmarks import nautilus_reference, warmup
from benchmarks.warmup import Outcome, batches
from engine.candles import CandleAggregator
from engine.config import PipelineConfig
from engine.pipeline import run_in_process
from engine.sources.synthetic import synthetic_trades


def _env(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


N_MARKETS = 100
BATCH = int(os.environ.get("BENCH_BATCH", 65536))  # trades per columnar chunk read by the driver
QUIET_TRADES = _env("BENCH_QUIET_TRADES", _env("BENCH_TRADES", 5_000_000))
BUSY_TRADES = _env("BENCH_BUSY_TRADES", _env("BENCH_TRADES", 5_000_000))
NAUTILUS_TRADES = _env("BENCH_NAUTILUS_TRADES", QUIET_TRADES)
WARMUP_TRADES = _env("BENCH_WARMUP_TRADES", 1_000_000)
QUIET_RATE = 20.0  # trades/s of all markets together: ~12 trades per 1m bar per market
BUSY_RATE = 2000.0  # ~1,200 trades per bar

TARGETS = {"quiet": {"trades": 3_000_000, "bars": 250_000}, "busy": {"trades": 5_000_000}}
TARGET_SPEEDUP = 1.3  # Ray with 2 shards over in-process
TARGET_VS_NAUTILUS = 10.0
LAYOUTS = [(shards, fused) for shards in (1, 2) for fused in (False, True)]


@dataclass
class Run:
    seconds: float
    trades: int
    result: Outcome

    @property
    def trades_per_s(self) -> float:
        return self.trades / self.seconds

    @property
    def bars_per_s(self) -> float:
        return self.result.candles / self.seconds


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def _label(shards: int, fused: bool) -> str:
    return f"ray {shards} shard{'s' if shards > 1 else ''} {'fused' if fused else 'staged'}"


def _in_process(trades, config) -> Run:
    t0 = time.perf_counter()
    result = run_in_process(batches(trades, BATCH), config)
    return Run(time.perf_counter() - t0, len(trades), warmup.outcome(result))


def _ray(trades, config, warm_candles: int) -> Run:
    """From the first send to the last stage's flush; actor start-up and kernel loading are not part of it."""
    from actors.pipeline import RayPipeline

    pipe = RayPipeline(config)
    try:
        warmup.warm(pipe, BATCH)
        t0 = time.perf_counter()
        for batch in batches(trades, BATCH):
            pipe.send(batch)
        result = pipe.finish()
        seconds = time.perf_counter() - t0
        return Run(seconds, len(trades), warmup.outcome(result, warm_candles))
    finally:
        pipe.shutdown()


def _compare(got: Outcome, ref: Outcome) -> str:
    diffs = []
    if got.signal_ids != ref.signal_ids:
        diffs.append(f"signal ids ({len(got.signal_ids):,} signals vs {len(ref.signal_ids):,})")
    if got.events != ref.events:
        diffs.append(f"events {got.events:,} vs {ref.events:,}")
    if got.candles != ref.candles:
        diffs.append(f"candles {got.candles:,} vs {ref.candles:,}")
    return "identical" if not diffs else "DIFFERENT: " + "; ".join(diffs)


def _describe(name: str, trades, rate: float, ref: Outcome) -> None:
    span_s = (int(trades.ts[-1]) - int(trades.ts[0])) / 1e9
    per_minute = len(trades) / (N_MARKETS * span_s / 60)
    print(f"{name} markets: {len(trades):,} trades, {N_MARKETS} markets, {rate:,.0f} trades/s in all over "
          f"{span_s / 60:,.0f} min of market time; measured {per_minute:,.1f} trades per market-minute, "
          f"{len(trades) / max(ref.candles, 1):,.1f} per closed 1m bar; {ref.candles:,} candles, "
          f"{len(ref.signal_ids):,} signals, {ref.events:,} structure events")


def _workload(name: str, trades, rate: float, config, warm_candles: int) -> dict[str, Run]:
    """In-process, then every Ray layout on the same trades; rows, identity against in-process, targets."""
    runs = {"in-process": _in_process(trades, config)}
    base = runs["in-process"]
    _describe(name, trades, rate, base.result)
    print(f"  {'layout':<20}{'trades/s':>14}{'market-bars/s':>16}  {'vs in-process':>13}  outputs vs in-process")
    print(f"  {'in-process':<20}{base.trades_per_s:>14,.0f}{base.bars_per_s:>16,.0f}  {1:>12.2f}x  (reference)")
    for shards, fused in LAYOUTS:
        cfg = config.with_shards(shards).model_copy(update={"fused": fused})
        run = runs[_label(shards, fused)] = _ray(trades, cfg, warm_candles)
        print(f"  {_label(shards, fused):<20}{run.trades_per_s:>14,.0f}{run.bars_per_s:>16,.0f}  "
              f"{run.trades_per_s / base.trades_per_s:>12.2f}x  {_compare(run.result, base.result)}")
    target = TARGETS[name]
    for fused in (False, True):
        run = runs[_label(2, fused)]
        checks = [f">= {target['trades']:,} trades/s {_verdict(run.trades_per_s >= target['trades'])}"]
        if "bars" in target:
            checks.append(f">= {target['bars']:,} market-bars/s {_verdict(run.bars_per_s >= target['bars'])}")
        speedup = run.trades_per_s / base.trades_per_s
        checks.append(f">= {TARGET_SPEEDUP}x in-process {_verdict(speedup >= TARGET_SPEEDUP)} ({speedup:.2f}x)")
        print(f"  targets, {_label(2, fused)}: " + "; ".join(checks))
    return runs


def _nautilus(quiet, runs: dict[str, Run]) -> None:
    print("NautilusTrader reference on the quiet trades (1-MINUTE-LAST-INTERNAL bars from trade ticks, "
          "EMA(20) + RSI(14) per instrument):")
    if not nautilus_reference.available():
        print("  skipped: nautilus_trader not installed (pip install -e '.[bench]')")
        return
    trades = quiet if NAUTILUS_TRADES >= len(quiet) else quiet.slice(0, NAUTILUS_TRADES)
    ref = nautilus_reference.run(trades)
    ours = f"; ours made {runs['in-process'].result.candles:,} candles" if len(trades) == len(quiet) else ""
    print(f"  nautilus_trader {ref['version']}, {len(trades):,} trades: BacktestEngine.run() "
          f"{ref['trades_per_s']:,.0f} trades/s ({ref['run_s']:.1f} s, {ref['bars']:,} bars{ours}; "
          f"conversion to TradeTick objects {ref['convert_s']:.1f} s, not counted)")
    for label in ("in-process", _label(2, False), _label(2, True)):
        ratio = runs[label].trades_per_s / ref["trades_per_s"]
        print(f"  {label:<20}{ratio:>8.1f}x nautilus  target >= {TARGET_VS_NAUTILUS:.0f}x "
              f"{_verdict(ratio >= TARGET_VS_NAUTILUS)}")


def main() -> None:
    from actors.runtime import start_ray, stop_ray

    t0 = time.perf_counter()
    busy = synthetic_trades(n_markets=N_MARKETS, n_trades=BUSY_TRADES, seed=7, mean_rate_per_s=BUSY_RATE)
    print(f"synthetic source: {len(busy) / (time.perf_counter() - t0):,.0f} trades/s generated")
    agg = CandleAggregator(["1m", "5m", "15m", "1h", "4h", "1d"])
    t0 = time.perf_counter()
    for batch in batches(busy, BATCH):
        agg.update(batch)
    print(f"candle aggregator alone (6 timeframes): {len(busy) / (time.perf_counter() - t0):,.0f} trades/s")
    # replay settings: full micro-batches per hop, waiting up to 50 ms for one to fill
    config = PipelineConfig(timeframes=("1m",), batch_size=BATCH, linger_ms=50.0)
    print(f"batches of {BATCH} (linger 50 ms), 1m candles, strategy default, analyses {', '.join(config.analyses)}; "
          "Ray figures exclude actor start-up (each pipeline is warmed on separate markets first)")
    warm_candles = warmup.warm_in_process(config)
    start_ray(dashboard=False)
    try:
        # the object store is slow on its first few hundred batches, whichever pipeline sends them
        _ray(busy.slice(0, min(WARMUP_TRADES, len(busy))), config, warm_candles)
        _workload("busy", busy, BUSY_RATE, config, warm_candles)
        del busy
        quiet = synthetic_trades(n_markets=N_MARKETS, n_trades=QUIET_TRADES, seed=7, mean_rate_per_s=QUIET_RATE)
        runs = _workload("quiet", quiet, QUIET_RATE, config, warm_candles)
        bare = config.model_copy(update={"analyses": ()})
        run = _ray(quiet, bare, warm_candles)
        print(f"  quiet, ray 1 shard staged, swings and breaks only (--analyses none): {run.trades_per_s:,.0f} "
              f"trades/s, {run.bars_per_s:,.0f} market-bars/s")
    finally:
        stop_ray()
    _nautilus(quiet, runs)
