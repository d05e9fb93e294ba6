"""Replay loaded trades and candles in event-time order as micro-batches, paced and looped on demand.

Candles take part at their close time (when a live feed would publish them). Rows with equal times
keep input order, then file order. Trades and candles come out as separate batches.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from engine.sources.files import load_any
from engine.validation import Rejects
from schemas.batches import CandleBatch, TradeBatch
from schemas.errors import ConfigError, InputError

DEFAULT_BUCKET_NS = 60_000_000_000  # loop spacing for trade-only input


class Replay:
    """Iterator of TradeBatch / CandleBatch micro-batches of at most ``batch_size`` rows.

    ``speed`` paces output at that multiple of real time (None: as fast as possible); a paced batch
    holds the rows due so far, and ``max_idle_s`` caps the wait across quiet stretches. With
    ``loop`` the data repeats forever, each round shifted by its span plus one bucket (and trade ids
    by their span) so event time and ids keep increasing. ``offset`` counts rows yielded so far,
    the batch just yielded included; ``Replay(..., start=offset)`` resumes after a checkpoint.
    """

    def __init__(self, inputs: Iterable[TradeBatch | CandleBatch | str | Path] | TradeBatch | CandleBatch,
                 batch_size: int = 8192, speed: float | None = None, loop: bool = False, start: int = 0,
                 max_idle_s: float | None = None, clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        if batch_size < 1:
            raise ConfigError(f"replay: batch_size must be >= 1, got {batch_size}")
        if speed is not None and not speed > 0:
            raise ConfigError(f"replay: speed must be > 0 (or None for no pacing), got {speed}")
        if start < 0:
            raise ConfigError(f"replay: start offset must be >= 0, got {start}")
        self.batch_size, self.speed, self.loop, self.offset = batch_size, speed, loop, start
        self.max_idle_s = max_idle_s
        self._clock, self._sleep = clock, sleep
        self.rejects = Rejects()
        self._trades, self._candles, src_t, src_c = self._collect(inputs)
        times = np.concatenate((self._trades.ts, self._candles.close_ts))
        src = np.concatenate((src_t, src_c))
        order = np.lexsort((src, times))  # stable: file order within an input
        self._time = times[order]
        self._is_candle = order >= len(self._trades)
        self._row = np.where(self._is_candle, order - len(self._trades), order)
        self.rows_per_round = len(times)
        bucket = int(self._candles.tf.max()) if len(self._candles) else DEFAULT_BUCKET_NS
        span = int(times.max() - times.min()) if len(times) else 0
        self.round_shift = -(-(span + bucket) // bucket) * bucket  # whole buckets keep candles aligned
        ids = self._trades.trade_id[self._trades.trade_id >= 0]
        self.id_shift = int(ids.max() - ids.min() + 1) if len(ids) else 0
        # where a batch must end inside a round: wherever the kind of row changes
        self._kind_change = np.flatnonzero(self._is_candle[1:] != self._is_candle[:-1]) + 1

    def _collect(self, inputs):
        if isinstance(inputs, (TradeBatch, CandleBatch, str, Path)):
            inputs = [inputs]
        trades, candles, src_t, src_c = [], [], [], []
        for i, item in enumerate(inputs):
            if isinstance(item, (str, Path)):
                item, rejects = load_any(item)
                self.rejects.merge(rejects)
            if isinstance(item, TradeBatch):
                trades.append(item)
                src_t.append(np.full(len(item), i, np.int64))
            elif isinstance(item, CandleBatch):
                candles.append(item)
                src_c.append(np.full(len(item), i, np.int64))
            else:
                raise InputError(f"replay: input {i} is a {type(item).__name__}; give TradeBatch, CandleBatch "
                                 "or a file path")
        return TradeBatch.concat(trades), CandleBatch.concat(candles), _cat(src_t), _cat(src_c)

    def __iter__(self) -> Iterator[TradeBatch | CandleBatch]:
        n = self.rows_per_round
        if not n:
            return
        wall0 = ev0 = None
        while self.loop or self.offset < n:
            rnd, lo = divmod(self.offset, n)
            nxt = self._kind_change[np.searchsorted(self._kind_change, lo, side="right"):][:1]
            hi = min(lo + self.batch_size, int(nxt[0]) if len(nxt) else n)
            if self.speed is not None:
                # live pacing: wait for the next row's time, then send what is due (never hold rows back
                # to fill a batch); idle stretches longer than max_idle_s are skipped
                first = int(self._time[lo]) + rnd * self.round_shift
                if wall0 is None:
                    wall0, ev0 = self._clock(), first
                delay = wall0 + (first - ev0) / 1e9 / self.speed - self._clock()
                if self.max_idle_s is not None and delay > self.max_idle_s:
                    wall0 -= delay - self.max_idle_s
                    delay = self.max_idle_s
                if delay > 0:
                    self._sleep(delay)
                now_ev = ev0 + (self._clock() - wall0) * self.speed * 1e9 - rnd * self.round_shift
                due = int(np.searchsorted(self._time, now_ev, side="right"))
                hi = max(lo + 1, min(hi, due))
            batch = self._make(lo, hi, rnd)
            self.offset += hi - lo
            batch.ts_init = time.time_ns()
            yield batch

    def _make(self, lo: int, hi: int, rnd: int) -> TradeBatch | CandleBatch:
        rows = self._row[lo:hi]
        if self._is_candle[lo]:
            batch = self._candles.take(rows)
            if rnd:
                batch.open_ts = batch.open_ts + rnd * self.round_shift
            return batch
        batch = self._trades.take(rows)
        if rnd:
            batch.ts = batch.ts + rnd * self.round_shift
            batch.trade_id = np.where(batch.trade_id >= 0, batch.trade_id + rnd * self.id_shift, -1)
        return batch


def _cat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.empty(0, np.int64)
