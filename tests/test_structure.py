"""Structure operator: swings, BOS and CHoCH on hand-made bars, by close and by wick."""

from __future__ import annotations

import numpy as np
import pytest

from engine.structure.swings import SwingOperator
from schemas.batches import CandleBatch, FeatureBatch

M = 60_000_000_000


def _bars(hlc: list[tuple[float, float, float]]) -> FeatureBatch:
    n = len(hlc)
    h, lo, c = (np.array(x, float) for x in zip(*hlc))
    candles = CandleBatch(["X"], np.zeros(n, np.int32), np.full(n, M), np.arange(n, dtype=np.int64) * M, c, h, lo,
                          c, np.ones(n), np.ones(n), np.zeros(n), c, np.ones(n, np.int64), np.zeros(n, bool))
    return FeatureBatch(candles, [], np.empty((n, 0)))


BARS = [(1.0, 0.5, 0.8), (3.0, 2.0, 2.5), (2.0, 1.0, 1.5), (2.5, 1.2, 2.0), (3.5, 2.4, 3.2),
        (3.3, 2.8, 3.0), (2.0, 0.8, 0.9)]


def _events(op, bars):
    return [(e.kind, e.ts // M, e.confirmed_ts // M - 1, e.price) for e in op.update(bars).events]


def test_swings_then_bos_then_choch_by_close() -> None:
    events = _events(SwingOperator(1, 1), _bars(BARS))
    # (kind, bar it refers to, bar whose close confirmed it, level)
    assert events == [("swing_high", 1, 2, 3.0), ("swing_low", 2, 3, 1.0), ("bos_bull", 4, 4, 3.0),
                      ("swing_high", 4, 5, 3.5), ("choch_bear", 6, 6, 1.0)]


def test_columns_carry_trend_and_breaks() -> None:
    out = SwingOperator(1, 1).update(_bars(BARS))
    trend, bos, choch = (out.column(n) for n in ("trend", "bos", "choch"))
    assert trend.tolist() == [0, 0, 0, 0, 1, 1, -1]
    assert bos.tolist() == [0, 0, 0, 0, 1, 0, 0] and choch.tolist() == [0, 0, 0, 0, 0, 0, -1]


def test_break_by_wick_fires_on_the_high_not_the_close() -> None:
    bars = BARS[:4] + [(3.2, 2.4, 2.9)]  # trades above 3.0 but closes below it
    assert [e[0] for e in _events(SwingOperator(1, 1, "close"), _bars(bars))] == ["swing_high", "swing_low"]
    wick = _events(SwingOperator(1, 1, "wick"), _bars(bars))
    assert wick[-1] == ("bos_bull", 4, 4, 3.0)


def test_a_level_breaks_once() -> None:
    bars = BARS[:5] + [(3.6, 3.1, 3.4), (3.7, 3.2, 3.5)]  # keeps closing above 3.0
    kinds = [e[0] for e in _events(SwingOperator(1, 1), _bars(bars))]
    assert kinds.count("bos_bull") == 1


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        SwingOperator(0, 1)
    with pytest.raises(ValueError):
        SwingOperator(1, 1, "body")


def test_gap_bars_carry_the_levels_as_they_stand_at_them_whatever_the_batch_size() -> None:
    """A gap bar's last_swing_*/trend are those after the bars before it, not after the whole batch."""
    from engine.candles import CandleAggregator
    from engine.sources.synthetic import synthetic_trades

    trades = synthetic_trades(n_markets=8, n_trades=30_000, seed=3, mean_rate_per_s=0.5)  # sparse: many gap bars
    agg = CandleAggregator(["1m"], gaps="flag")
    candles = CandleBatch.concat([agg.update(trades.slice(s, s + 8192)) for s in range(0, len(trades), 8192)])
    assert candles.gap.sum() > 500
    feats = FeatureBatch(candles, [], np.empty((len(candles), 0)))
    whole = SwingOperator(2, 2).update(feats)
    one_by_one = SwingOperator(2, 2)
    rows = [one_by_one.update(FeatureBatch(candles.take(slice(i, i + 1)), [], np.empty((1, 0)))).values
            for i in range(len(candles))]
    np.testing.assert_array_equal(whole.values, np.vstack(rows))
    # and the gap rows do move with the levels: some gap bar sees a level that a later bar of its batch replaced
    last_high = whole.column("last_swing_high")
    assert np.isfinite(last_high[candles.gap]).any()
