"""Warming a Ray pipeline before it is timed, without touching the markets it is timed on.

Each shard actor is a fresh process that loads the compiled kernels on its first batches (most of a
second). That start-up is not the throughput or latency being measured, so every pipeline first gets
trades of its own warm-up markets, from a day before the measured data, and is drained; their outputs
are removed before results are compared.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from engine.pipeline import RunResult, run_in_process
from engine.sources.synthetic import DEFAULT_START_NS, synthetic_trades
from schemas.batches import TradeBatch

PREFIX = "WARM:"
_DAY_NS = 86_400 * 10**9


def warmup_trades() -> TradeBatch:
    """16 markets (both shards of a 2-shard layout get some), ~330 one-minute bars each: enough for
    indicators, risk and structure to run every kernel."""
    trades = synthetic_trades(n_markets=16, n_trades=40_000, seed=3, start_ns=DEFAULT_START_NS - _DAY_NS,
                              mean_rate_per_s=2.0)
    trades.markets = [PREFIX + m for m in trades.markets]
    return trades


def batches(trades, size: int):
    for start in range(0, len(trades), size):
        yield trades.slice(start, start + size)


def warm_in_process(config) -> int:
    """Load the kernels in this process too, so the in-process figure carries no first-use cost either;
    returns the candles the warm-up markets make (what a warmed pipeline's count includes)."""
    return run_in_process(batches(warmup_trades(), config.batch_size), config).candles


def warm(pipe, size: int) -> None:
    """Send the warm-up trades and wait until every stage has processed them."""
    import ray

    for batch in batches(warmup_trades(), size):
        pipe.send(batch)
    time.sleep(pipe.config.linger_ms / 1e3)
    pipe.tick()  # what still lingers in the driver goes out
    # an actor runs calls in the order they were sent, so each layer's drain follows what reached it
    for layer in pipe.topology.layers:
        ray.get([actor.drain.remote() for actor in layer])


@dataclass
class Outcome:
    """What a run produced on the measured markets: what in-process and Ray results are compared by."""

    signal_ids: list[str]
    events: int
    candles: int


def outcome(result: RunResult, warm_candles: int = 0) -> Outcome:
    """``result`` without the warm-up markets' signals, events and candles."""
    signals, events = result.signal_batch, result.event_batch  # columns: counting needs no records
    mine = np.array([not m.startswith(PREFIX) for m in signals.markets] or [True])
    ids = signals.id[mine[signals.market]].astype(str).tolist() if len(signals) else []
    measured = np.array([not m.startswith(PREFIX) for m in events.markets] or [True])
    return Outcome(ids, int(measured[events.market].sum()) if len(events) else 0, result.candles - warm_candles)
