"""Tick → signal-stage latency at a paced 10k trades/s with small batches, through Ray.

Latency is measured per batch that closes candles, from the moment the driver hands it to Ray
to the moment the signal stage has decided on the bars it closed (and, separately, until that
output reached the sink).
Candles of 1s close every second, so every second exercises the whole chain.
"""

from __future__ import annotations

import os
import time

import numpy as np

from engine.config import PipelineConfig
from engine.sources.synthetic import synthetic_trades

RATE = 10_000
BATCH = 100  # trades per send: one every 10 ms
SECONDS = float(os.environ.get("BENCH_LATENCY_SECONDS", 10))
TARGET_P99_MS = 10.0


def _paced(pipe, trades) -> None:
    t0 = time.perf_counter()
    for i, start in enumerate(range(0, len(trades), BATCH)):
        due = t0 + i * BATCH / RATE
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        pipe.send(trades.slice(start, start + BATCH))


def main() -> None:
    import ray

    from actors.pipeline import RayPipeline
    from actors.runtime import start_ray, stop_ray

    n = int(RATE * SECONDS)
    trades = synthetic_trades(n_markets=100, n_trades=n, seed=11, mean_rate_per_s=RATE)
    print(f"{n:,} trades paced at {RATE:,}/s in batches of {BATCH}, 100 markets, timeframe 1s")
    start_ray(dashboard=False)
    try:
        for fused in (True, False):
            cfg = PipelineConfig(timeframes=("1s",), batch_size=BATCH, linger_ms=0, fused=fused)
            pipe = RayPipeline(cfg)
            try:
                _paced(pipe, trades)
                pipe.finish()
                lat = ray.get(pipe.topology.sink.latencies.remote())
            finally:
                pipe.shutdown()
            p50, p99 = np.percentile(lat["decision"], [50, 99])
            d50, d99 = np.percentile(lat["delivery"], [50, 99])
            layout = "fused (1 actor/shard)" if fused else "staged (4 actors)"
            print(f"  {layout:<22} tick->signal p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  "
                  f"(-> sink p50 {d50:.2f} p99 {d99:.2f})  over {len(lat['decision']):,} batches  "
                  f"target p99 <= {TARGET_P99_MS} ms {'met' if p99 <= TARGET_P99_MS else 'NOT met'}")
    finally:
        stop_ray()
