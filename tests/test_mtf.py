"""Higher-timeframe conditions: ``trend@5m`` on a 1m bar reads the latest 5m bar closed strictly before."""

from __future__ import annotations

import numpy as np
import pytest

from engine.config import PipelineConfig
from engine.pipeline import run_in_process
from engine.signals.mtf import split_ref
from engine.signals.operator import SignalOperator
from engine.signals.rules import Strategy, rule
from engine.sources.replay import Replay
from schemas.batches import CandleBatch, FeatureBatch
from schemas.errors import ConfigError
from tests.pipeline_inputs import real_inputs, signal_bytes

M = 60_000_000_000


def _rows(rows: list[tuple[int, int, float, float]]) -> FeatureBatch:
    """(timeframe minutes, open minute, x, trend) rows of market X."""
    n = len(rows)
    tf = np.array([r[0] * M for r in rows], np.int64)
    o = np.array([r[1] * M for r in rows], np.int64)
    one = np.ones(n)
    candles = CandleBatch(["X"], np.zeros(n, np.int32), tf, o, one, one, one, one, one, one, np.zeros(n), one,
                          np.ones(n, np.int64), np.zeros(n, bool))
    return FeatureBatch(candles, ["x", "trend"], np.array([[r[2], r[3]] for r in rows]))


# 1m bars 0..9 with x = 1 from minute 3 on; 5m bars closing at 5 (trend -1) and 10 (trend +1)
ROWS = ([(1, m, 1.0 if m >= 3 else 0.0, 0.0) for m in range(5)] + [(5, 0, 0.0, -1.0)]
        + [(1, m, 1.0, 0.0) for m in range(5, 10)] + [(5, 5, 0.0, 1.0)]
        + [(1, m, 1.0, 0.0) for m in range(10, 12)])
STRATEGY = Strategy("mtf", (), (rule("up", "buy", "x > 0", "trend@5m > 0", timeframes=("1m",)),))


def test_reads_the_higher_bar_closed_strictly_before() -> None:
    out = SignalOperator(STRATEGY).update(_rows(ROWS))
    # the 5m bar closing at minute 10 has trend +1: only 1m bars closing after minute 10 see it
    assert [s.ts // M for s in out] == [11, 12]
    assert out[0].reasons[1] == "trend@5m (1) > 0"


def test_same_answer_row_by_row() -> None:
    op = SignalOperator(STRATEGY)
    one_by_one = [s for i in range(len(ROWS)) for s in op.update(_rows(ROWS[i:i + 1]))]
    assert [s.id for s in one_by_one] == [s.id for s in SignalOperator(STRATEGY).update(_rows(ROWS))]


def test_snapshot_keeps_higher_timeframe_state() -> None:
    a = SignalOperator(STRATEGY)
    a.update(_rows(ROWS[:12]))
    b = SignalOperator(STRATEGY)
    b.restore(a.snapshot())
    assert [s.ts // M for s in b.update(_rows(ROWS[12:]))] == [11, 12]


def test_bad_reference() -> None:
    with pytest.raises(ConfigError):
        split_ref("@4h")
    with pytest.raises(ConfigError):
        split_ref("trend@4x")


def test_pipeline_with_a_higher_timeframe_filter_is_batch_size_independent() -> None:
    """1m CHoCH while the 5m trend is up, on real trades: the same stream whatever the batch size."""
    from engine.signals import rules
    strategy = Strategy("mtf_reversal", ("atr:14",), (
        rule("choch_with_5m_trend", "buy", "choch > 0", "trend@5m > 0", timeframes=("1m",)),
        rule("bos_with_5m_trend", "buy", "bos > 0", "trend@5m > 0", timeframes=("1m",)),
    ))
    rules.BUILTIN["_test_mtf"] = strategy
    try:
        config = PipelineConfig(timeframes=("1m", "5m"), strategy="_test_mtf")
        trades = [b for b in real_inputs(False) if not isinstance(b, CandleBatch)]
        ref = run_in_process(Replay(trades, batch_size=8192), config).signals
        assert ref, "the filter should let some breaks through"
        for size in (1, 97):
            assert signal_bytes(run_in_process(Replay(trades, batch_size=size), config).signals) == signal_bytes(ref)
    finally:
        del rules.BUILTIN["_test_mtf"]
