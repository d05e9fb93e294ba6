"""Structure (swings, BOS/CHoCH) + fair value gaps + order blocks streaming, against smartmoneyconcepts'
batch functions on the same real bars, in the same run.

One operator chain (the engine's structure stage with those analyses) runs over the interleaved candles of
many markets, as one shard sees them: 9 real 5m series, and shifted copies of them up to 90 markets per
shard. Targets: <= 1 µs per bar per market, >= 50x faster than smc.

Sizes: BENCH_STRUCTURE_COPIES (default 10: 9 x 10 = 90 markets per shard).
"""

from __future__ import annotations

import os
import time

import numpy as np
import pandas as pd

from engine.config import PipelineConfig
from engine.pipeline import build_operators
from schemas.batches import CandleBatch, FeatureBatch
from tests.indicators.series import DATA, load_bars

TARGET_RATIO = 50.0
TARGET_US = 1.0
COPIES = int(os.environ.get("BENCH_STRUCTURE_COPIES", "10"))  # markets per shard = 9 real series x copies
# swings with BOS/CHoCH (5 bars each side, as smc's swing_length=5), then the two analyses smc also has
CONFIG = PipelineConfig(swing_left=5, swing_right=5, analyses=("fvg", "order_blocks"))


def _series():
    return [(p.stem.split("-")[0], load_bars(p)) for p in sorted((DATA / "candles").glob("*_BTC-5m.feather"))]


def _interleaved(series, copies: int) -> CandleBatch:
    """All markets' bars in time order, as a shard receives them; copies are shifted real series."""
    parts = []
    for k in range(copies):
        for name, b in series:
            n = len(b)
            parts.append(CandleBatch([f"{name}#{k}"], np.zeros(n, np.int32), np.full(n, 300_000_000_000), b.ts,
                                     b.open, b.high, b.low, b.close, b.volume, np.zeros(n), np.zeros(n), b.close,
                                     np.ones(n, np.int64), np.zeros(n, bool)))
    c = CandleBatch.concat(parts)
    return c.take(np.lexsort((c.market, c.open_ts)))


def _operators() -> list:
    return build_operators("structure", CONFIG)


def _warm_up(candles: CandleBatch) -> None:
    """Load (on a first run: compile) our compiled kernels outside the timing, as smc's numba is warmed."""
    _ours(candles.take(slice(0, 2000)), 10)


def _ours(candles: CandleBatch, step: int) -> float:
    ops = _operators()
    t0 = time.perf_counter()
    for start in range(0, len(candles), step):
        c = candles.take(slice(start, start + step))
        f = FeatureBatch(c, [], np.empty((len(c), 0)))
        for op in ops:
            f = op.update(f)
    return time.perf_counter() - t0


def _smc(series) -> float:
    from smartmoneyconcepts import smc

    frames = [pd.DataFrame({"open": b.open, "high": b.high, "low": b.low, "close": b.close, "volume": b.volume})
              for _, b in series]
    smc.fvg(frames[0].iloc[:200])  # compile its numba kernels outside the timing
    sw = smc.swing_highs_lows(frames[0].iloc[:200], swing_length=5)
    smc.bos_choch(frames[0].iloc[:200], sw)
    smc.ob(frames[0].iloc[:200], sw)
    t0 = time.perf_counter()
    for df in frames:
        sw = smc.swing_highs_lows(df, swing_length=5)
        smc.bos_choch(df, sw)
        smc.ob(df, sw)
        smc.fvg(df)
    return time.perf_counter() - t0


def main() -> None:
    series = _series()
    n_bars = sum(len(b) for _, b in series)
    names = "+".join(op.name for op in _operators())
    print(f"{len(series)} real 5m series, {n_bars:,} bars; ours: {names} (swings with BOS/CHoCH, FVG, order "
          "blocks), streaming, one chain per shard")
    theirs = _smc(series)
    print(f"  smartmoneyconcepts (batch, look-ahead): {theirs:.2f}s = {theirs / n_bars * 1e6:.1f} µs/bar")
    _warm_up(_interleaved(series, 1))
    for copies in sorted({1, COPIES}):
        candles = _interleaved(series, copies)
        bars = len(candles)
        for step, label in ((len(series) * copies, "one bar per market per call"), (8192, "batches of 8192")):
            t = _ours(candles, step)
            us = t / bars * 1e6
            ratio = (theirs / n_bars) / (t / bars)
            print(f"  ours, {len(series) * copies:>4} markets/shard, {label:<28} {us:6.2f} µs/bar/market  "
                  f"{ratio:6.1f}x smc  (targets <= {TARGET_US} µs: {'met' if us <= TARGET_US else 'NOT met'}, "
                  f">= {TARGET_RATIO:.0f}x: {'met' if ratio >= TARGET_RATIO else 'NOT met'})")
