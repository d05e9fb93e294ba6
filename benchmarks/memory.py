"""Resident memory of a 1,000-market replay through the default chain in-process, and the state it keeps
per market: snapshot bytes of every operator, and the bytes of the numpy arrays each one holds.

Outputs are counted, not kept, so the growth in resident memory is the operators' state plus the
allocator's working set, not the signals and events a caller might hold on to.

Sizes: BENCH_MEMORY_MARKETS (default 1,000), BENCH_MEMORY_TRADES (default 2,000,000: at 20 trades/s in
all, ~1,700 minutes, so every market is past its indicator, risk and structure warm-ups).
"""

from __future__ import annotations

import os
import resource
import time
from collections import deque

import numpy as np

from benchmarks.warmup import batches, warm_in_process
from engine.config import STAGES, PipelineConfig
from engine.pipeline import build_chain
from engine.sources.synthetic import synthetic_trades

N_MARKETS = int(os.environ.get("BENCH_MEMORY_MARKETS", "1000"))
N_TRADES = int(os.environ.get("BENCH_MEMORY_TRADES", "2000000"))
RATE = 20.0
BATCH = 8192
TARGET_PER_MARKET = 64 * 1024


def _rss() -> int:
    """Resident set size of this process in bytes."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import psutil
    return psutil.Process().memory_info().rss


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


def array_bytes(obj, max_depth: int = 8) -> int:
    """Bytes of the distinct numpy buffers reachable from ``obj`` through attributes and containers
    (views count once, by the array that owns the memory); code objects and classes are not followed."""
    owners: dict[int, int] = {}
    seen: set[int] = set()
    stack = [(obj, 0)]
    while stack:
        x, depth = stack.pop()
        if id(x) in seen or depth > max_depth:
            continue
        seen.add(id(x))
        if isinstance(x, np.ndarray):
            owner = x
            while isinstance(owner.base, np.ndarray):
                owner = owner.base
            owners[id(owner)] = owner.nbytes
        elif isinstance(x, dict):
            stack += [(v, depth + 1) for v in x.values()]
        elif isinstance(x, (list, tuple, set, frozenset, deque)):
            stack += [(v, depth + 1) for v in x]
        elif hasattr(x, "__dict__") and not isinstance(x, type) and not callable(x):
            stack.append((vars(x), depth + 1))
            stack += [(getattr(x, s), depth + 1) for s in getattr(type(x), "__slots__", ()) if hasattr(x, s)]
        elif hasattr(type(x), "__slots__") and not callable(x):
            stack += [(getattr(x, s), depth + 1) for s in type(x).__slots__ if hasattr(x, s)]
    return sum(owners.values())


def _verdict(per_market: float) -> str:
    return f"target <= {TARGET_PER_MARKET // 1024} KB {'met' if per_market <= TARGET_PER_MARKET else 'NOT met'}"


def main() -> None:
    config = PipelineConfig()
    rss0 = _rss()
    warm_in_process(config)  # compiled kernels and their runtime are loaded once per process, not per market
    rss_kernels = _rss()
    trades = synthetic_trades(n_markets=N_MARKETS, n_trades=N_TRADES, seed=7, mean_rate_per_s=RATE)
    markets = len(np.unique(trades.market))
    span_min = (int(trades.ts[-1]) - int(trades.ts[0])) / 60e9
    trade_bytes = sum(a.nbytes for a in (trades.market, trades.ts, trades.price, trades.size, trades.side,
                                         trades.trade_id))
    rss1 = _rss()
    chain = build_chain(list(STAGES), config)
    candles = signals = events = 0
    t0 = time.perf_counter()
    for batch in batches(trades, BATCH):
        out = chain.update(batch)
        signals += len(out.value or [])
        if out.features is not None:
            candles += len(out.features)
            events += len(out.features.events)
    seconds = time.perf_counter() - t0
    rss2 = _rss()
    print(f"{len(trades):,} synthetic trades, {markets:,} markets with trades, {RATE:g} trades/s in all over "
          f"{span_min:,.0f} min of market time; default chain ({', '.join(STAGES)}; timeframes "
          f"{', '.join(config.timeframes)}; analyses {', '.join(config.analyses)}), batches of {BATCH}")
    print(f"  replay: {candles:,} candles ({candles / markets:,.0f} per market), {signals:,} signals, "
          f"{events:,} structure events in {seconds:.1f} s ({len(trades) / seconds:,.0f} trades/s)")
    print(f"  resident memory: {rss0 / 2**20:,.0f} MiB at start, {rss_kernels / 2**20:,.0f} MiB with the kernels "
          f"loaded (a small warm-up run), {rss1 / 2**20:,.0f} MiB with the trades generated "
          f"({trade_bytes / 2**20:,.0f} MiB of arrays), {rss2 / 2**20:,.0f} MiB after the replay "
          f"(+{(rss2 - rss1) / 2**20:,.0f} MiB = {(rss2 - rss1) / markets / 1024:,.1f} KB per market); "
          f"peak {_peak_rss() / 2**20:,.0f} MiB")
    # state as it stands mid-stream: open candles and every key's indicator, risk and structure state
    snaps = chain.snapshot()
    print(f"  {'operator':<14}{'snapshot bytes':>16}{'per market':>12}{'array bytes':>14}{'per market':>12}")
    total_snap = total_arrays = 0
    for op, snap in zip(chain.operators, snaps):
        arrays = array_bytes(op)
        total_snap += len(snap)
        total_arrays += arrays
        print(f"  {getattr(op, 'name', type(op).__name__):<14}{len(snap):>16,}{len(snap) / markets:>12,.0f}"
              f"{arrays:>14,}{arrays / markets:>12,.0f}")
    per_snap, per_arrays = total_snap / markets, total_arrays / markets
    print(f"  {'all':<14}{total_snap:>16,}{per_snap:>12,.0f}{total_arrays:>14,}{per_arrays:>12,.0f}")
    print(f"  per-market state (snapshot): {per_snap / 1024:,.2f} KB  {_verdict(per_snap)}")
    print(f"  per-market state arrays held (with spare capacity and scratch buffers): {per_arrays / 1024:,.2f} KB  "
          f"{_verdict(per_arrays)}")
