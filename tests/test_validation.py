"""Rejects and the row cleaners: bad rows counted with reasons, every valid row kept."""

from __future__ import annotations

import numpy as np

from engine.ordering import rows_behind, segmented_cummax
from engine.validation import NO_TS, Rejects, clean_candles, clean_trades
from schemas.batches import CandleBatch, TradeBatch

NAN, INF = float("nan"), float("inf")


def test_rejects_counts_examples_and_summary():
    r = Rejects(max_examples=2)
    r.add_rows("price_not_finite", np.array([3, 7, 9]))
    r.add("malformed_row", 1, [12])
    r.add_rows("out_of_order", np.array([5]))
    r.add("nothing", 0)
    assert r.counts == {"price_not_finite": 3, "malformed_row": 1, "out_of_order": 1}
    assert r.examples["price_not_finite"] == [3, 7]
    assert r.rejected == 4 and r.warned == {"out_of_order": 1}
    assert "price_not_finite=3 (rows 3, 7)" in r.summary()
    other = Rejects()
    other.add_rows("price_not_finite", np.array([20]))
    assert r.merge(other).counts["price_not_finite"] == 4
    assert not Rejects() and Rejects().summary() == "no rows rejected"


def test_clean_trades_drops_each_bad_row_once_and_keeps_the_rest():
    ts = [1, 2, NO_TS, 4, 5, 6, 7, 8, 9, 10]
    price = [1.0, NAN, 1.0, -2.0, 0.0, INF, 1.0, 1.0, NAN, 3.0]
    size = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, NAN, -1.0, 0.0, 2.0]
    batch = TradeBatch.for_market("X", ts, price, size)
    rows = np.arange(100, 110)  # source row numbers
    out, r = clean_trades(batch, rows=rows)
    assert out.ts.tolist() == [1, 10]
    assert r.counts == {"timestamp_invalid": 1, "price_not_finite": 3, "price_not_positive": 2,
                        "size_not_finite": 1, "size_not_positive": 1}
    assert r.examples["price_not_finite"] == [101, 105, 108] and r.rejected == 8


def test_clean_trades_keeps_out_of_order_rows_and_counts_them_per_market():
    batch = TradeBatch(["A", "B"], np.array([0, 1, 0, 1, 0], np.int32), np.array([5, 1, 3, 2, 6]),
                       np.ones(5), np.ones(5), np.zeros(5, np.int8), np.full(5, -1))
    out, r = clean_trades(batch)
    assert len(out) == 5 and r.counts == {"out_of_order": 1} and r.examples["out_of_order"] == [2]
    assert r.rejected == 0


def test_clean_trades_of_clean_input_reports_nothing():
    batch = TradeBatch.for_market("X", [1, 2, 2, 3], [1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 1.0, 1.0])
    out, r = clean_trades(batch)
    assert len(out) == 4 and not r


def candles(open_, high, low, close, volume, ts=None) -> CandleBatch:
    n = len(open_)
    f = lambda x: np.asarray(x, np.float64)  # noqa: E731
    return CandleBatch(["X"], np.zeros(n, np.int32), np.full(n, 60_000_000_000),
                       np.asarray(ts if ts is not None else np.arange(n) * 60_000_000_000, np.int64),
                       f(open_), f(high), f(low), f(close), f(volume), np.full(n, NAN), np.full(n, NAN),
                       np.full(n, NAN), np.full(n, -1), np.zeros(n, bool))


def test_clean_candles_rejects_bad_prices_and_warns_about_missing_volume():
    c = candles(open_=[1, NAN, 1, 1, 1, 1], high=[2, 2, 2, 2, 2, 0.5], low=[1, 1, 0, 1, 1, 1],
                close=[1, 1, 1, 1, 1, 1], volume=[1, 1, 1, -1, NAN, 1])
    out, r = clean_candles(c)
    assert out.open_ts.tolist() == [0, 4 * 60_000_000_000, 5 * 60_000_000_000]
    assert r.counts == {"price_not_finite": 1, "price_not_positive": 1, "volume_negative": 1,
                        "volume_missing": 1, "ohlc_inconsistent": 1}
    assert r.rejected == 3


def test_clean_candles_counts_rows_out_of_time_order():
    c = candles([1, 1, 1], [1, 1, 1], [1, 1, 1], [1, 1, 1], [1, 1, 1], ts=[120, 60, 180])
    out, r = clean_candles(c)
    assert len(out) == 3 and r.counts == {"out_of_order": 1}


def test_segmented_running_max_and_rows_behind():
    keys = np.array([0, 0, 0, 1, 1, 2])
    vals = np.array([3, 1, 4, 2, 5, 0])
    assert segmented_cummax(keys, vals).tolist() == [3, 3, 4, 2, 5, 0]
    wide = np.array([-2 ** 62, 2 ** 62, 0, 5, -2 ** 62, 7])  # too wide to pack: the rank path
    assert segmented_cummax(keys, wide).tolist() == [-2 ** 62, 2 ** 62, 2 ** 62, 5, 5, 7]
    assert rows_behind(np.array([1, 0, 1, 0]), np.array([5, 9, 4, 8])).tolist() == [2, 3]
    assert rows_behind(np.zeros(1, np.int32), np.array([1])).tolist() == []
