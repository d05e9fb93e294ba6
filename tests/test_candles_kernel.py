"""The compiled candle aggregator against a frozen copy of the vectorised one it replaced: same batches, bit for bit.

Every returned CandleBatch (each column's bytes, the market dictionary, ts_init), the stats and the snapshot bytes
must be identical for random streams: disorder within and beyond lateness, equal times, several markets and
dictionaries, any batch splits, nested and other timeframes, both gap policies, zero prices (the vectorised path),
read-only inputs, snapshots restored mid-stream (either way round) and a flush at the end.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import candles
from engine.candle_kernel import USED
from engine.candles import CandleAggregator
from engine.sources.synthetic import synthetic_trades
from schemas.batches import CANDLE_COLUMNS, CandleBatch, TradeBatch
from tests import candles_reference as reference

S = 1_000_000_000
T0 = 1_700_000_040 * S  # a minute boundary
TIMEFRAMES = [("1m",), ("1m", "5m"), ("1m", "7m", "1h"), ("2m", "3m"), ("30s", "1h", "1d"), ("1m", "2m", "3m"),
              ("1m", "5m", "15m", "1h", "4h", "1d")]
PRICES = [1.0, 1.5, 2.0, 2.0000000001, 3.25, 1e-7, 12345.678]
SIZES = [0.5, 1.0, 0.1, 1e-9, 3.0, 0.0, 123.456]


def assert_same(got: CandleBatch, want: CandleBatch, where: str) -> None:
    assert got.markets == want.markets, where
    assert got.ts_init == want.ts_init, where
    for col in ("market", "tf") + CANDLE_COLUMNS:
        a, b = getattr(got, col), getattr(want, col)
        assert a.dtype == b.dtype and a.shape == b.shape, (where, col, a.dtype, b.dtype, a.shape, b.shape)
        assert np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes(), (where, col, a, b)


class Pair:
    """The aggregator under test and the reference, fed the same batches."""

    def __init__(self, tfs, lateness, gaps):
        self.args = (list(tfs), lateness, gaps)
        self.new, self.old = CandleAggregator(*self.args), reference.CandleAggregator(*self.args)
        self.tighten(self.new)

    @staticmethod
    def tighten(agg: CandleAggregator) -> None:
        """Hook for ``tight``: buffers so small that every batch grows them and resumes."""

    def update(self, batch: TradeBatch, where: str) -> None:
        assert_same(self.new.update(batch), self.old.update(batch), where)
        assert self.new.stats == self.old.stats, where
        assert self.new.initialized == self.old.initialized

    def flush(self, where: str) -> None:
        assert_same(self.new.flush(), self.old.flush(), where)
        assert self.new.stats == self.old.stats, where

    def snapshot_and_restore(self, crossed: bool) -> None:
        """Same snapshot bytes; go on from fresh operators restored from them (``crossed``: each from the other's)."""
        new_blob, old_blob = self.new.snapshot(), self.old.snapshot()
        assert new_blob == old_blob
        self.new, self.old = CandleAggregator(*self.args), reference.CandleAggregator(*self.args)
        self.tighten(self.new)
        self.new.restore(old_blob if crossed else new_blob)
        self.old.restore(new_blob if crossed else old_blob)


@pytest.fixture(params=["roomy", "tight"])
def room(request, monkeypatch):
    """"tight": one output row at a time, one slot per key, mid-batch closing as soon as a key is full."""
    if request.param == "tight":
        def tighten(agg):
            agg._rows_i, agg._rows_f = agg._rows_i[:1].copy(), agg._rows_f[:1].copy()
            agg._buckets = candles._Buckets(agg._t, 1)  # a fresh operator: nothing to keep

        def grow_by_one(self, need):
            used = int(self._counters[USED])
            rows_i, rows_f = np.empty((need, 3), np.int64), np.empty((need, self._rows_f.shape[1]))
            rows_i[:used], rows_f[:used] = self._rows_i[:used], self._rows_f[:used]
            self._rows_i, self._rows_f = rows_i, rows_f

        monkeypatch.setattr(Pair, "tighten", staticmethod(tighten))
        monkeypatch.setattr(CandleAggregator, "_grow_rows", grow_by_one)
        monkeypatch.setattr(candles._Buckets, "max_slots", property(lambda self: 1))
    return request.param


# ---- random streams ------------------------------------------------------------------------------
@st.composite
def streams(draw):
    n = draw(st.integers(1, 160))
    n_markets = draw(st.integers(1, 4))
    lateness = draw(st.sampled_from([0, 15 * S, 90 * S, 10 * 60 * S]))
    back = draw(st.sampled_from([0, 10 * S, 60 * S, 30 * 60 * S]))  # how far a trade may arrive behind
    step = draw(st.sampled_from([S, 7 * S, 40 * S, 3 * 60 * S, 2 * 3600 * S]))  # typical spacing
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    ts = T0 + np.cumsum(rng.integers(0, step + 1, n)) - rng.integers(0, back + 1, n) * (rng.random(n) < 0.3)
    ts[rng.random(n) < 0.15] = ts[0]  # repeated times
    prices = np.array(PRICES + ([0.0, -0.0] if draw(st.booleans()) and draw(st.booleans()) else []))
    trades = TradeBatch([f"M{i}" for i in range(n_markets)], rng.integers(0, n_markets, n).astype(np.int32),
                        ts.astype(np.int64), rng.choice(prices, n), rng.choice(np.array(SIZES), n),
                        rng.choice(np.array([-1, 0, 1, 2], np.int8), n), np.arange(n, dtype=np.int64))
    cuts = sorted(set(draw(st.lists(st.integers(0, n), max_size=12))) | {0, n})
    return dict(trades=trades, cuts=cuts, lateness=lateness, tfs=draw(st.sampled_from(TIMEFRAMES)),
                gaps=draw(st.sampled_from(["skip", "flag"])), snap_at=draw(st.integers(0, len(cuts))),
                crossed=draw(st.booleans()), local=draw(st.booleans()), readonly=draw(st.booleans()))


def batches_of(trades: TradeBatch, cuts: list[int], local: bool, readonly: bool):
    """The stream cut at ``cuts``; ``local``: each batch with its own dictionary, in order of first appearance."""
    for i, (lo, hi) in enumerate(zip(cuts, cuts[1:])):
        b = trades.slice(lo, hi)
        if local and len(b):
            names, inverse = np.unique(b.market, return_inverse=True)
            first = np.argsort(np.unique(b.market, return_index=True)[1])
            rename = np.empty(len(names), np.int32)
            rename[first] = np.arange(len(names))
            b = TradeBatch([trades.markets[names[j]] for j in first], rename[inverse].astype(np.int32), b.ts,
                           b.price, b.size, b.side, b.trade_id, ts_init=i)
        if readonly:
            for col in ("market", "ts", "price", "size", "side"):
                arr = getattr(b, col).copy()
                arr.flags.writeable = False
                setattr(b, col, arr)
        yield b


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(streams())
def test_identical_to_the_vectorised_aggregator(room, case):
    pair = Pair(case["tfs"], case["lateness"], case["gaps"])
    for i, batch in enumerate(batches_of(case["trades"], case["cuts"], case["local"], case["readonly"])):
        if i == case["snap_at"]:
            pair.snapshot_and_restore(case["crossed"])
        pair.update(batch, f"batch {i}")
    pair.flush("flush")
    pair.update(case["trades"], "after flush")


# ---- bigger streams ------------------------------------------------------------------------------
def jittered(n_markets: int, n: int, seed: int, back_s: int, rate: float) -> TradeBatch:
    b = synthetic_trades(n_markets, n, seed, start_ns=T0, mean_rate_per_s=rate)
    rng = np.random.default_rng(seed)
    b.ts = b.ts - rng.integers(0, back_s * S + 1, n) * (rng.random(n) < 0.2)
    b.side = rng.choice(np.array([-1, 0, 1], np.int8), n)
    return b


@pytest.mark.parametrize("tfs,lateness,gaps,back_s,rate", [
    (("1m",), 0, "skip", 0, 20), (("1m", "5m", "15m", "1h", "4h", "1d"), 0, "flag", 0, 20),
    (("1m", "5m"), 20 * S, "flag", 45, 20), (("1m", "7m", "1h"), 5 * S, "skip", 30, 200),
    (("2m", "3m"), 60 * S, "flag", 200, 5), (("1m", "5m", "15m", "1h", "4h", "1d"), 30 * S, "skip", 60, 2000)])
@pytest.mark.parametrize("size", [1, 97, 8192])
def test_identical_on_synthetic_streams(room, tfs, lateness, gaps, back_s, rate, size):
    n = 3000 if size == 1 else 40_000
    trades = jittered(12, n, seed=5, back_s=back_s, rate=rate)
    pair = Pair(tfs, lateness, gaps)
    for i in range(0, n, size):
        pair.update(trades.slice(i, i + size), f"batch at {i}")
        if i == (n // size // 2) * size:
            pair.snapshot_and_restore(crossed=True)
    pair.flush("flush")


def test_many_markets_and_sparse_ones_grow_the_state(room):
    """Markets arriving late in the stream, sparse markets spanning many buckets in one batch, and a key whose open
    buckets outnumber its slots (lateness of hours) all keep the output identical."""
    trades = jittered(300, 30_000, seed=9, back_s=3 * 3600, rate=3)
    pair = Pair(("1m", "5m", "1h"), 4 * 3600 * S, "flag")
    for i in range(0, len(trades), 5000):
        pair.update(trades.slice(i, i + 5000), f"batch at {i}")
    pair.flush("flush")


def test_out_of_range_market_indices_and_repeated_names_are_handled_as_before(room):
    ts = T0 + np.arange(6, dtype=np.int64) * 20 * S
    price, size, side = np.linspace(1, 2, 6), np.ones(6), np.ones(6, np.int8)
    odd = [TradeBatch(["A", "B", "A"], np.array([2, 0, 1, 0, 2, 1], np.int32), ts, price, size, side, -np.ones(6)),
           TradeBatch(["A", "C"], np.array([-1, 0, 1, -2, 0, 1], np.int32), ts + 600 * S, price, size, side,
                      -np.ones(6)),
           TradeBatch(["C"], np.array([0, 3, 0, 7, 0, 0], np.int32), ts + 1200 * S, price, size, side, -np.ones(6))]
    pair = Pair(("1m",), 30 * S, "flag")
    for i, b in enumerate(odd):
        pair.update(b, f"batch {i}")
    pair.flush("flush")
