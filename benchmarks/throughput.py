"""Pipeline throughput in trades/s: in-process, and through Ray with 1 and 2 shards per stage.

100 markets of synthetic trades, batches of 8192, 1m candles, the default strategy.
"""

from __future__ import annotations

import os
import time

from engine.candles import CandleAggregator
from engine.config import PipelineConfig
from engine.pipeline import run_in_process
from engine.sources.synthetic import synthetic_trades

N_TRADES = int(os.environ.get("BENCH_TRADES", 8_000_000))
TARGET = 2_000_000


def _batches(trades, size: int):
    for start in range(0, len(trades), size):
        yield trades.slice(start, start + size)


def _timed_ray_run(trades, config):
    """Trades/s from first send to the last stage's flush; actor start-up is not part of it."""
    from actors.pipeline import RayPipeline

    pipe = RayPipeline(config)
    try:
        t0 = time.perf_counter()
        for batch in _batches(trades, 8192):
            pipe.send(batch)
        result = pipe.finish()
        return len(trades) / (time.perf_counter() - t0), result
    finally:
        pipe.shutdown()


def _workload(trades, config, label: str) -> None:
    """In-process, then Ray with 1 and 2 shards per stage, staged and fused, on one set of trades."""
    t0 = time.perf_counter()
    ref = run_in_process(_batches(trades, 8192), config)
    base = len(trades) / (time.perf_counter() - t0)
    print(f"{label}: {ref.candles:,} candles, {len(ref.signals):,} signals")
    print(f"  in-process           {base:>12,.0f} trades/s")
    for shards in (1, 2):
        for fused in (False, True):
            cfg = config.with_shards(shards).model_copy(update={"fused": fused})
            rate, res = _timed_ray_run(trades, cfg)
            same = "identical" if [s.id for s in res.signals] == [s.id for s in ref.signals] else "DIFFERENT"
            layout = "fused" if fused else "staged"
            print(f"  ray {shards} shard(s) {layout:<7}{rate:>12,.0f} trades/s   ratio to in-process "
                  f"{rate / base:.2f}  target {TARGET:,} {'met' if rate >= TARGET else 'NOT met'}  signals {same}")


def main() -> None:
    from actors.runtime import start_ray, stop_ray

    t0 = time.perf_counter()
    busy = synthetic_trades(n_markets=100, n_trades=N_TRADES, seed=7, mean_rate_per_s=2000)
    print(f"synthetic source: {len(busy) / (time.perf_counter() - t0):,.0f} trades/s generated")
    agg = CandleAggregator(["1m", "5m", "15m", "1h", "4h", "1d"])
    t0 = time.perf_counter()
    for batch in _batches(busy, 8192):
        agg.update(batch)
    print(f"candle aggregator alone (6 timeframes): {len(busy) / (time.perf_counter() - t0):,.0f} trades/s")
    # replay settings: full micro-batches per hop, waiting up to 50 ms for one to fill
    config = PipelineConfig(timeframes=("1m",), batch_size=8192, linger_ms=50.0)
    print(f"{len(busy):,} synthetic trades per workload, 100 markets, batch 8192 (linger 50 ms), 1m candles, "
          "strategy default, all analyses")
    start_ray(dashboard=False)
    try:
        # warm-up: the object store and worker processes are slow on their first few hundred batches
        _timed_ray_run(busy.slice(0, 1_000_000), config)
        # the cost per trade depends on how many bars the trades make: both ends of the range
        _workload(busy, config, "busy markets (2,000 trades/s in all, ~1,200 trades per bar; ~67 bars "
                                "per market, inside the risk warm-up, so no signals)")
        quiet = synthetic_trades(n_markets=100, n_trades=N_TRADES, seed=7, mean_rate_per_s=200)
        _workload(quiet, config, "quiet markets (200 trades/s in all, ~120 trades per bar; ~670 bars per market)")
        rate, _ = _timed_ray_run(quiet, config.model_copy(update={"analyses": ()}))
        print(f"  quiet, ray 1 shard staged, swings and breaks only (--analyses none): {rate:,.0f} trades/s")
    finally:
        stop_ray()
