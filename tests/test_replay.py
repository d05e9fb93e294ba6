"""Replay: event-time merge of several inputs, bounded micro-batches, offsets, looping and pacing."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from engine.sources.files import load_any
from engine.sources.replay import Replay
from engine.sources.sample import sample_paths
from schemas.batches import CandleBatch, TradeBatch
from schemas.errors import ConfigError, InputError

S = 1_000_000_000
M = 60 * S


def trades(market: str, ts, ids=None) -> TradeBatch:
    n = len(ts)
    return TradeBatch.for_market(market, ts, np.arange(1.0, n + 1), np.ones(n), None,
                                 ids if ids is not None else np.arange(n))


def candles(market: str, open_ts) -> CandleBatch:
    n = len(open_ts)
    f = np.ones(n)
    return CandleBatch([market], np.zeros(n, np.int32), np.full(n, M), np.asarray(open_ts, np.int64), f, f, f, f,
                       f, f, f, f, np.ones(n, np.int64), np.zeros(n, bool))


def flatten(batches) -> list[tuple]:
    """(event time, market, kind) per row, in yield order."""
    out = []
    for b in batches:
        if isinstance(b, TradeBatch):
            out += [(int(t), b.markets[m], "t") for t, m in zip(b.ts, b.market)]
        else:
            out += [(int(t), b.markets[m], "c") for t, m in zip(b.close_ts, b.market)]
    return out


def test_merges_inputs_by_event_time_stably():
    a = trades("A", [1 * S, 5 * S, 5 * S, 9 * S])
    b = trades("B", [2 * S, 5 * S, 7 * S])
    c = candles("C", [-M + 5 * S])  # closes at 5 s
    got = flatten(Replay([a, b, c], batch_size=2))
    assert [t for t, *_ in got] == sorted(t for t, *_ in got)
    at5 = [(m, k) for t, m, k in got if t == 5 * S]
    assert at5 == [("A", "t"), ("A", "t"), ("B", "t"), ("C", "c")]  # ties: input order, then file order


def test_batches_bounded_and_of_one_kind():
    a = trades("A", np.arange(0, 100) * S)
    c = candles("C", np.arange(0, 3) * M - M + 50 * S)
    batches = list(Replay([a, c], batch_size=16))
    assert all(0 < len(b) <= 16 for b in batches)
    assert sum(len(b) for b in batches) == 103
    assert {type(b) for b in batches} == {TradeBatch, CandleBatch}


def test_offset_counts_rows_and_resumes():
    a = trades("A", np.arange(50) * S)
    replay = Replay(a, batch_size=8)
    it = iter(replay)
    first = [next(it) for _ in range(3)]
    assert replay.offset == 24
    rest = list(Replay(a, batch_size=8, start=replay.offset))
    assert flatten(first + rest) == flatten([a])


def test_loop_keeps_event_time_and_ids_increasing():
    a = trades("A", [0, 10 * S, 30 * S], ids=[100, 101, 102])
    replay = Replay(a, batch_size=2, loop=True)
    batches = list(itertools.islice(iter(replay), 6))  # three rounds of two batches
    ts = np.concatenate([b.ts for b in batches])
    ids = np.concatenate([b.trade_id for b in batches])
    assert (np.diff(ts) > 0).all() and (np.diff(ids) > 0).all()
    assert replay.round_shift == 2 * M  # span 30 s plus one bucket (1 min), rounded up to whole buckets
    assert ts[3] == 2 * M and ids[3] == 103 and replay.offset == 9


def test_loop_shifts_candles_by_whole_buckets():
    c = candles("C", [0, 5 * M])
    rounds = list(itertools.islice(iter(Replay(c, batch_size=10, loop=True)), 3))
    opens = np.concatenate([b.open_ts for b in rounds])
    assert opens.tolist() == [0, 5 * M, 6 * M, 11 * M, 12 * M, 17 * M]


def test_pacing_sleeps_by_event_time_over_speed():
    now = [100.0]
    slept = []

    def sleep(dt: float) -> None:
        slept.append(dt)
        now[0] += dt

    a = trades("A", [0, 2 * S, 4 * S, 10 * S])
    list(Replay(a, batch_size=1, speed=2.0, clock=lambda: now[0], sleep=sleep))
    assert slept == pytest.approx([1.0, 1.0, 3.0])  # gaps of 2, 2 and 6 s at double speed


def test_paced_batches_hold_only_rows_already_due():
    """Live pacing never holds a due row back to fill a batch; idle stretches are capped."""
    now = [0.0]
    slept = []

    def sleep(dt: float) -> None:
        slept.append(dt)
        now[0] += dt

    a = trades("A", [0, 0, S, 2 * S, 2 * S, 500 * S])
    out = list(Replay(a, batch_size=100, speed=1.0, max_idle_s=1.0, clock=lambda: now[0], sleep=sleep))
    assert [len(b) for b in out] == [2, 1, 2, 1]
    assert slept == pytest.approx([1.0, 1.0, 1.0])  # the 498 s gap is skipped down to 1 s


def test_paths_load_and_empty_input():
    replay = Replay(sample_paths(), batch_size=4096)
    batches = list(replay)
    assert replay.offset == sum(len(load_any(p)[0]) for p in sample_paths())
    times = [t for t, *_ in flatten(batches)]
    assert times == sorted(times) and not replay.rejects.rejected
    assert list(Replay([], batch_size=4)) == []


def test_bad_arguments():
    with pytest.raises(ConfigError):
        Replay([], batch_size=0)
    with pytest.raises(ConfigError):
        Replay([], speed=0)
    with pytest.raises(InputError):
        Replay([object()])
