"""The compiled row kernels give the values of the round-based numpy computation they replaced, bit for bit.

``tests.indicators.legacy`` is a frozen copy of that computation. One exception: WMA's old step took its
dot products with BLAS (``rows @ weights``), whose blocking made a key's value depend on how many keys
shared its round; there is no single old value to match, so WMA is held to 1e-13 instead.
"""

from __future__ import annotations

import numpy as np
import pytest

from engine.candles import CandleAggregator
from engine.indicators.base import Bars
from engine.indicators.operator import IndicatorOperator
from engine.indicators.reductions import offset_square_sum, offset_sum, sum_scratch
from engine.indicators.registry import available, parse_spec
from engine.sources.synthetic import synthetic_trades
from tests.indicators.contract import assert_close, stream_many
from tests.indicators.legacy.operator import LegacyIndicatorOperator
from tests.indicators.series import all_series

NOT_BIT_FOR_BIT = {"wma"}  # see the module docstring
# batch forms kept in numpy (engine.indicators.numpy_batch): within 1e-12 of the kernel, not equal
NUMPY_BATCH = {"bbands", "kama"}

# every indicator with its defaults, plus other parameters: short and long windows (over 128 values the
# pairwise sums of BBANDS/STDDEV recurse), Wilder periods, chained smoothers, sessions
SPECS = ",".join(sorted(available())) + "," + ",".join([
    "bbands:200:1.5", "stddev:150:2", "stddev:3", "rsi:2", "ema:200", "macd:5:35:5", "kama:10", "trix:8",
    "tema:5", "dema:9", "stoch:5:3:4", "stochrsi:9:14:1", "aroon:25", "ultosc:3:9:20", "vwap:60",
    "linreg_slope:3", "sar:0.05:0.3", "supertrend:7:2.5", "keltner:10:5:1.5", "willr:30", "donchian:5",
    "cci:7", "mfi:3", "adx:5", "natr:5", "atr:3", "sma:1", "mom:1", "roc:25", "wma:3", "plus_di:3",
    "minus_di:30"])

STREAMS = {  # name -> (synthetic_trades arguments, gap policy, whether every column gets values)
    # many keys, ~160 bars each: rounds of many keys, keys appearing batch after batch (state growth)
    "50 markets": (dict(n_markets=50, n_trades=200_000, seed=3, mean_rate_per_s=20), "skip", False),
    "50 markets, gaps flagged": (dict(n_markets=50, n_trades=200_000, seed=3, mean_rate_per_s=20), "flag", False),
    # few keys, long histories: every warm-up ends, long windows fill
    "6 markets, long": (dict(n_markets=6, n_trades=60_000, seed=5, mean_rate_per_s=1.5), "flag", True),
}


def _candles(stream: str):
    kwargs, gaps, _ = STREAMS[stream]
    trades = synthetic_trades(**kwargs)
    agg = CandleAggregator(["1m"], gaps=gaps)
    for start in range(0, len(trades), 8192):
        yield agg.update(trades.slice(start, start + 8192))
    yield agg.flush()


@pytest.mark.parametrize("stream", sorted(STREAMS))
def test_operator_equals_the_round_based_computation(stream: str) -> None:
    new, old = IndicatorOperator(SPECS), LegacyIndicatorOperator(SPECS)
    assert new.names == old.names
    kinds = [ind.name for ind in new.indicators for _ in ind.outputs]
    valid = np.zeros(len(new.names), np.int64)
    gaps = 0
    for candles in _candles(stream):
        got, want = new.update(candles).values, old.update(candles)
        gaps += int(candles.gap.sum())
        valid += (~np.isnan(got)).sum(axis=0)
        for j, name in enumerate(new.names):
            if kinds[j] in NOT_BIT_FOR_BIT:
                assert_close(got[:, j], want[:, j], 1e-13, f"{name} on {stream}")
            else:
                assert np.array_equal(got[:, j], want[:, j], equal_nan=True), f"{name} on {stream}"
        assert np.isnan(got[candles.gap]).all()
    _, policy, every_column = STREAMS[stream]
    assert (valid > 0).all() or not every_column, [n for n, v in zip(new.names, valid) if not v]
    assert gaps > 0 or policy == "skip"


def test_operator_snapshot_restore_and_drop_mid_stream() -> None:
    batches = list(_candles("50 markets"))
    whole = IndicatorOperator(SPECS)
    expected = [whole.update(c).values for c in batches]
    first = IndicatorOperator(SPECS)
    for c in batches[:10]:
        first.update(c)
    resumed = IndicatorOperator("ema:5")
    resumed.restore(first.snapshot())
    for c, want in zip(batches[10:], expected[10:]):
        assert np.array_equal(resumed.update(c).values, want, equal_nan=True)

    # a dropped key starts afresh: its values equal a new operator's on that key's rows alone
    market = batches[0].markets[int(batches[0].market[0])]
    tf = int(batches[0].tf[0])
    resumed.drop(market, tf)
    alone = IndicatorOperator(SPECS)
    seen = 0
    for c in batches[-3:]:
        rows = np.flatnonzero(np.array(c.markets)[c.market] == market)
        got = resumed.update(c).values[rows]
        assert np.array_equal(got, alone.update(c.take(rows)).values, equal_nan=True)
        seen += len(rows)
    assert seen


def test_inputs_may_be_read_only_and_are_not_written() -> None:
    bars = all_series()[0][1].take(slice(0, 600))
    frozen = Bars(*(np.array(getattr(bars, f)) for f in ("ts", "open", "high", "low", "close", "volume")))
    for a in vars(frozen).values():
        a.setflags(write=False)
    before = {f: a.copy() for f, a in vars(frozen).items()}
    for name in available():
        assert np.array_equal(parse_spec(name).batch(frozen), parse_spec(name).batch(bars), equal_nan=True)
    for f, a in vars(frozen).items():
        assert np.array_equal(a, before[f])


@pytest.mark.parametrize("name", sorted(set(available()) - NUMPY_BATCH))
def test_batch_is_the_streaming_kernel(name: str) -> None:
    """Bit for bit (the contract allows 1e-12): ``batch`` runs the same kernel on fresh state."""
    bars = all_series()[1][1].take(slice(0, 1500))
    ind = parse_spec(name)
    whole = ind.batch(bars)
    # batch ran on a fresh copy, leaving the indicator's own state (and its children's) alone
    assert all(block.capacity == 0 for block in ind._tree())
    stepwise = np.vstack([ind.update(np.zeros(1, np.int64), bars.take(slice(i, i + 1))) for i in range(len(bars))])
    assert np.array_equal(whole, stepwise, equal_nan=True)


@pytest.mark.parametrize("n", [*range(1, 20), 31, 64, 127, 128, 129, 136, 257, 300, 1000, 4099])
def test_window_sums_add_in_numpys_order(n: int) -> None:
    """``offset_sum`` is ``np.sum`` (pairwise) and ``offset_square_sum`` ``np.einsum`` of the same terms."""
    rows = np.round(np.random.default_rng(n).standard_normal((40, n)) * 10 + 1000, 3)
    offsets = rows - rows[:, :1]
    sums = offsets.sum(axis=1)
    dev = offsets - (sums / n)[:, None]
    squares = np.einsum("ij,ij->i", dev, dev)
    scratch = sum_scratch()
    for k in range(len(rows)):
        s = offset_sum(rows, k, 0, n, rows[k, 0], scratch)
        assert s == sums[k]
        assert offset_square_sum(rows, k, 0, n, rows[k, 0], s / n) == squares[k]


def _stream_legacy_and_new(spec: str, series: list[Bars]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    from tests.indicators.legacy.registry import parse_spec as legacy_spec
    return stream_many(parse_spec(spec), series), stream_many(legacy_spec(spec), series)


@pytest.mark.parametrize("name", sorted(available()))
def test_update_equals_the_numpy_step_on_real_bars_with_missing_values(name: str) -> None:
    """``Indicator.update`` (several keys per call) against the old vectorised step, on real series, one of
    them with NaN prices in places: extremes tracked incrementally must still answer NaN as numpy did."""
    series = [bars.take(slice(0, 900)) for _, bars in all_series()[:3]]
    holes = series[1]
    holes = Bars(holes.ts, holes.open, holes.high.copy(), holes.low.copy(), holes.close.copy(), holes.volume)
    for i, field in ((40, "high"), (41, "low"), (300, "close"), (301, "high"), (302, "low"), (620, "close")):
        getattr(holes, field)[i] = np.nan
    series[1] = holes
    got, want = _stream_legacy_and_new(name, series)
    for k in range(len(series)):
        if name in NOT_BIT_FOR_BIT:
            assert_close(got[k], want[k], 1e-13, f"{name} series {k}")
        else:
            assert np.array_equal(got[k], want[k], equal_nan=True), f"{name} series {k}"
