"""Tick → signal latency over the 4 hops (candles → indicators → structure → signals) at a paced 10k trades/s
with small batches through Ray, staged (one actor per stage) and fused (one actor for all four).

Each batch is stamped with the wall-clock time it was due to be sent (so a sender that falls behind
counts its delay too, instead of hiding it); a sample is taken per batch that closes candles, when the
signal stage hands its output on (and, separately, when that output reached the sink).
Candles of 1s close every second, so every second exercises the whole chain.

Sizes: BENCH_LATENCY_SECONDS (default 30; ~8 batches a second close candles) of paced trades per layout.
"""

from __future__ import annotations

import os
import time

import numpy as np

from benchmarks import warmup
from engine.config import PipelineConfig
from engine.sources.synthetic import synthetic_trades

RATE = 10_000
BATCH = 100  # trades per send: one every 10 ms
SECONDS = float(os.environ.get("BENCH_LATENCY_SECONDS", "30"))
TARGET_P99_MS = {False: 10.0, True: 3.0}  # staged, fused


def _paced(pipe, trades) -> float:
    """Send ``BATCH`` trades every ``BATCH / RATE`` s; returns how far (ms) the sender fell behind at worst."""
    t0 = time.perf_counter()
    wall0 = time.time_ns()
    behind = 0.0
    for i, start in enumerate(range(0, len(trades), BATCH)):
        due = i * BATCH / RATE
        delay = t0 + due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        behind = max(behind, -delay)
        batch = trades.slice(start, start + BATCH)
        batch.ts_init = wall0 + int(due * 1e9)
        pipe.send(batch)
    return behind * 1e3


def main() -> None:
    import ray

    from actors.pipeline import RayPipeline
    from actors.runtime import start_ray, stop_ray

    n = int(RATE * SECONDS)
    trades = synthetic_trades(n_markets=100, n_trades=n, seed=11, mean_rate_per_s=RATE)
    print(f"{n:,} trades paced at {RATE:,}/s in batches of {BATCH} (one send every {BATCH / RATE * 1e3:.0f} ms), "
          "100 markets, timeframe 1s, strategy default, all analyses; each pipeline warmed on separate markets first")
    start_ray(dashboard=False)
    try:
        for fused in (False, True):
            cfg = PipelineConfig(timeframes=("1s",), batch_size=BATCH, linger_ms=0, fused=fused)
            pipe = RayPipeline(cfg)
            try:
                warmup.warm(pipe, BATCH)
                skip = len(ray.get(pipe.topology.sink.latencies.remote())["decision"])
                t0 = time.perf_counter()
                behind = _paced(pipe, trades)
                sent_rate = n / (time.perf_counter() - t0)
                pipe.finish()
                lat = ray.get(pipe.topology.sink.latencies.remote())
            finally:
                pipe.shutdown()
            decision, delivery = np.array(lat["decision"][skip:]), np.array(lat["delivery"][skip:])
            p50, p99 = np.percentile(decision, [50, 99])
            d50, d99 = np.percentile(delivery, [50, 99])
            target = TARGET_P99_MS[fused]
            layout = "fused (1 actor/shard)" if fused else "staged (4 actors)"
            print(f"  {layout:<22} tick->signal p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  max {decision.max():6.1f} ms  "
                  f"(-> sink p50 {d50:.2f} p99 {d99:.2f} ms)  over {len(decision):,} batches; sent at "
                  f"{sent_rate:,.0f} trades/s, at worst {behind:.1f} ms behind schedule  "
                  f"target p99 <= {target:g} ms {'met' if p99 <= target else 'NOT met'}")
    finally:
        stop_ray()
