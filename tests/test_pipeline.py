"""The in-process pipeline on real data: signals appear, batch size never changes them, and a
bar-by-bar replay gives exactly the output of one pass."""

from __future__ import annotations

import numpy as np

from engine.config import PipelineConfig
from engine.indicators.operator import IndicatorOperator
from engine.pipeline import build_chain, run_in_process
from engine.signals.operator import SignalOperator
from engine.signals.rules import load_strategy
from engine.sources.replay import Replay
from engine.structure.swings import SwingOperator
from schemas.batches import CandleBatch
from tests.pipeline_inputs import real_inputs, signal_bytes

CONFIG = PipelineConfig(timeframes=("1m", "5m"))


def _run(batch_size: int, small: bool = False):
    return run_in_process(Replay(list(real_inputs(small)), batch_size=batch_size), CONFIG)


def test_real_data_produces_signals_and_events() -> None:
    result = _run(8192)
    assert len(result.signals) > 20
    assert len({s.kind for s in result.signals}) >= 3
    assert len(result.events) > 100
    for s in result.signals:
        assert 0 <= s.strength <= 1 and s.reasons and s.source_versions["strategy"].startswith("default@")


def test_records_built_from_columns_equal_validated_ones() -> None:
    """Signals and events made from the columnar batches hold what validation would give (plain values,
    e.g. side ``"buy"``, not the enum member), so every writer and the API see the same fields."""
    result = _run(8192, small=True)
    assert result.signals and result.events
    for record in [*result.signals, *result.events]:
        again = type(record).model_validate(record.model_dump())
        assert again == record and again.model_dump() == record.model_dump()
        assert all(type(v) in (str, int, float, bool, list, dict, type(None)) for v in vars(record).values())
    assert {s.side for s in result.signals} <= {"buy", "sell"}


def test_batch_size_does_not_change_the_signal_stream() -> None:
    reference = signal_bytes(_run(8192, small=True).signals)
    assert reference
    for size in (1, 64, 100_000):
        assert signal_bytes(_run(size, small=True).signals) == reference, f"batch size {size}"


def _candles() -> CandleBatch:
    return CandleBatch.concat([b for b in real_inputs() if isinstance(b, CandleBatch)])


def _chain_outputs(candles: CandleBatch, step: int):
    """Feed candles ``step`` bars at a time through indicators → structure → risk → signals."""
    chain = build_chain(["indicators", "structure", "signals"], CONFIG)
    values, events, signals = [], [], []
    order = np.lexsort((candles.market, candles.open_ts))
    candles = candles.take(order)
    for start in range(0, len(candles), step):
        out = chain.update(candles.take(slice(start, start + step)))
        values.append(out.features.values)
        events += out.features.events
        signals += out.value
    return np.vstack(values), events, signals


def test_bar_by_bar_replay_equals_one_pass() -> None:
    candles = _candles().take(slice(0, 12_000))
    one_values, one_events, one_signals = _chain_outputs(candles, len(candles))
    bar_values, bar_events, bar_signals = _chain_outputs(candles, 1)
    np.testing.assert_array_equal(bar_values, one_values)  # bit for bit, NaN where NaN
    key = lambda e: (e.confirmed_ts, e.market, e.timeframe, e.kind)  # noqa: E731
    assert sorted(bar_events, key=key) == sorted(one_events, key=key)
    assert sorted(s.id for s in bar_signals) == sorted(s.id for s in one_signals)
    assert bar_signals and len(bar_signals) == len(one_signals)


def test_emitted_values_are_never_revised() -> None:
    """Values emitted for a bar stay what they were after any later bars arrive."""
    candles = _candles()
    ind = IndicatorOperator(list(load_strategy("default").indicators))
    swings = SwingOperator(5, 5)
    first = swings.update(ind.update(candles.take(slice(0, 3000))))
    # replaying the same bars into fresh operators, followed by more bars, keeps the first part unchanged
    ind2, swings2 = IndicatorOperator(list(load_strategy("default").indicators)), SwingOperator(5, 5)
    both = swings2.update(ind2.update(candles.take(slice(0, 6000))))
    np.testing.assert_array_equal(both.values[:3000], first.values)
    cutoff = int(candles.close_ts[:3000].max())
    market = candles.markets[int(candles.market[0])]
    assert first.events
    assert [e for e in both.events if e.confirmed_ts <= cutoff and e.market == market] == first.events


def test_signal_operator_snapshot_restores() -> None:
    candles = _candles().take(slice(0, 8000))
    ind, swings = IndicatorOperator(list(load_strategy("default").indicators)), SwingOperator()
    feats = swings.update(ind.update(candles))
    whole = SignalOperator(load_strategy("default")).update(feats)
    first = SignalOperator(load_strategy("default"))
    head = first.update(_rows(feats, 0, 4000))
    resumed = SignalOperator(load_strategy("default"))
    resumed.restore(first.snapshot())
    tail = resumed.update(_rows(feats, 4000, 8000))
    assert whole and sorted(s.id for s in head + tail) == sorted(s.id for s in whole)


def _rows(feats, a, b):
    from schemas.batches import FeatureBatch
    return FeatureBatch(feats.candles.take(slice(a, b)), feats.names, feats.values[a:b], [])
