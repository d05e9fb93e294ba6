"""CandleAggregator: freqtrade's candles as the reference, a per-trade reference model, invariances."""

from __future__ import annotations

import numpy as np
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

from engine.candles import CandleAggregator
from engine.operator import Operator
from engine.sources.synthetic import synthetic_trades
from schemas.batches import CandleBatch, TradeBatch
from schemas.errors import ConfigError, InputError, StateError
from schemas.timeframes import parse_timeframe

S = 1_000_000_000
M = 60 * S
T0 = 1_700_000_040 * S  # a minute boundary
FIELDS = ("open_ts", "tf", "open", "high", "low", "close", "volume", "buy_volume", "sell_volume", "vwap",
          "trade_count", "gap")


# ---- helpers ------------------------------------------------------------------------------------
def xrp_trades(shared_data) -> TradeBatch:
    t = pq.read_table(shared_data / "trades" / "XRP_ETH-trades.parquet").to_pydict()
    side = np.array([{"buy": 1, "sell": -1}.get(s, 0) for s in t["side"]], np.int8)
    return TradeBatch.for_market("XRP_ETH", np.array(t["timestamp"], np.int64) * 1_000_000, t["price"],
                                 t["amount"], side, np.array(t["id"], np.int64))


def run(batch: TradeBatch, size: int, tfs=("1m", "5m"), **kw) -> tuple[CandleBatch, CandleAggregator]:
    agg = CandleAggregator(list(tfs), **kw)
    outs = [agg.update(batch.slice(i, i + size)) for i in range(0, len(batch), size)]
    outs.append(agg.flush())
    return CandleBatch.concat(outs), agg


def rows(c: CandleBatch) -> list[tuple]:
    """Candles as comparable tuples (NaN replaced so equal NaNs compare equal)."""
    names = np.array(c.markets, dtype=object)[c.market] if len(c) else []
    cols = [np.where(np.isnan(getattr(c, f)), -1.0, getattr(c, f)) if getattr(c, f).dtype.kind == "f"
            else getattr(c, f) for f in FIELDS]
    return [(m, *vals) for m, *vals in zip(names, *(col.tolist() for col in cols))]


def jittered(n_markets: int, n: int, seed: int, back_s: int) -> TradeBatch:
    """Synthetic trades with arrival order disturbed: some arrive up to ``back_s`` seconds late."""
    b = synthetic_trades(n_markets, n, seed, start_ns=T0, mean_rate_per_s=20)
    rng = np.random.default_rng(seed)
    b.ts = b.ts - rng.integers(0, back_s * S + 1, n) * (rng.random(n) < 0.3)
    b.side = rng.choice(np.array([-1, 0, 1], np.int8), n)
    return b


def reference(batch: TradeBatch, tfs, lateness: int, gaps: str) -> tuple[list[tuple], int]:
    """Per-trade model of the documented rules, written without numpy."""
    tf_ns = [parse_timeframe(t) for t in tfs]
    wm, open_, done, late = {}, {}, [], 0
    for seq, (mi, t, p, s, sd) in enumerate(zip(batch.market.tolist(), batch.ts.tolist(), batch.price.tolist(),
                                                batch.size.tolist(), batch.side.tolist())):
        mk = batch.markets[mi]
        w = wm[mk] = max(wm.get(mk, t), t)
        if any(t // tf * tf + tf + lateness <= w for tf in tf_ns):
            late += 1
            continue
        for tf in tf_ns:
            c = open_.setdefault((mk, tf, t // tf * tf), {"first": (t, seq, p), "last": (t, seq, p), "h": p,
                                                          "l": p, "v": 0.0, "bv": 0.0, "sv": 0.0, "pv": 0.0, "n": 0})
            c["first"] = min(c["first"], (t, seq, p))
            c["last"] = max(c["last"], (t, seq, p))
            c["h"], c["l"] = max(c["h"], p), min(c["l"], p)
            c["v"] += s
            c["bv"] += s if sd == 1 else 0.0
            c["sv"] += s if sd == -1 else 0.0
            c["pv"] += p * s
            c["n"] += 1
        for key in [k for k in open_ if k[0] == mk and k[2] + k[1] + lateness <= w]:
            done.append((key, open_.pop(key)))
    done += list(open_.items())
    out = [(mk, b, tf, c["first"][2], c["h"], c["l"], c["last"][2], c["v"], c["bv"], c["sv"], c["pv"] / c["v"],
            c["n"], False) for (mk, tf, b), c in done]
    if gaps == "flag":
        have = {}
        for r in out:
            have.setdefault((r[0], r[2]), []).append(r[1])
        for (mk, tf), starts in have.items():
            starts = set(starts)
            for b in range(min(starts), max(starts), tf):
                if b not in starts:
                    out.append((mk, b, tf, -1.0, -1.0, -1.0, -1.0, 0.0, 0.0, 0.0, -1.0, 0, True))
    out.sort(key=lambda r: (r[1] + r[2], r[0], r[2]))
    return out, late


def assert_rows_close(got: list[tuple], want: list[tuple]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g[:3] == w[:3] and g[11:] == w[11:], (g, w)
        assert g[3:7] == w[3:7], (g, w)  # prices are picked, not computed: exact
        np.testing.assert_allclose(g[7:11], w[7:11], rtol=1e-12, atol=1e-12)


def reorder(c: CandleBatch) -> list[tuple]:
    r = rows(c)
    return sorted(r, key=lambda x: (x[1] + x[2], x[0], x[2]))


# ---- acceptance: freqtrade ------------------------------------------------------------------------
@pytest.mark.parametrize("tf", ["1m", "5m"])
def test_candles_equal_freqtrades(shared_data, tf):
    ref = feather.read_table(shared_data / "trades" / f"XRP_ETH-{tf}.feather").to_pydict()
    ref_ts = np.array([d.timestamp() for d in ref["date"]]) * S
    out, _ = run(xrp_trades(shared_data), 8192, tfs=(tf,))
    # freqtrade resamples on epoch-aligned buckets and drops empty ones: one row per bucket with trades
    assert not out.gap.any()
    np.testing.assert_array_equal(out.open_ts, ref_ts.astype(np.int64))
    for col in ("open", "high", "low", "close", "volume"):
        np.testing.assert_allclose(getattr(out, col), ref[col], rtol=1e-12, atol=0, err_msg=col)


# ---- invariances ---------------------------------------------------------------------------------
@pytest.mark.parametrize("gaps", ["skip", "flag"])
def test_batch_size_does_not_change_output(shared_data, gaps):
    trades = xrp_trades(shared_data)
    whole = rows(run(trades, len(trades), gaps=gaps)[0])
    for size in (1, 64, 8192):
        assert rows(run(trades, size, gaps=gaps)[0]) == whole, size  # bit-identical, same order


def test_batch_size_invariance_many_markets_out_of_order():
    trades = jittered(5, 3000, seed=4, back_s=40)
    kw = dict(tfs=("1m", "5m", "7m"), lateness=15 * S, gaps="flag")
    whole, agg = run(trades, len(trades), **kw)
    assert agg.stats["late"] > 0
    for size in (1, 64, 8192):
        out, other = run(trades, size, **kw)
        assert other.stats == agg.stats
        assert reorder(out) == reorder(whole)
        for market in trades.markets:  # per market the stream itself is identical
            assert [r for r in rows(out) if r[0] == market] == [r for r in rows(whole) if r[0] == market]


@pytest.mark.parametrize("lateness,gaps,tfs", [
    (0, "skip", ("1m", "5m")), (20 * S, "flag", ("1m", "15m")), (0, "flag", ("2m", "3m")),
    (5 * S, "skip", ("30s", "1h", "1d"))])
def test_matches_reference_model(lateness, gaps, tfs):
    trades = jittered(4, 2500, seed=11, back_s=60)
    out, agg = run(trades, 100, tfs=tfs, lateness=lateness, gaps=gaps)
    want, late = reference(trades, tfs, lateness, gaps)
    assert agg.stats["late"] == late
    assert_rows_close(reorder(out), want)


def test_each_batch_sorted_by_close_market_timeframe():
    trades = jittered(6, 4000, seed=2, back_s=0)
    agg = CandleAggregator(["1m", "5m", "15m"])
    for i in range(0, len(trades), 700):
        out = agg.update(trades.slice(i, i + 700))
        key = [(c, out.markets[m], tf) for c, m, tf in zip(out.close_ts.tolist(), out.market.tolist(),
                                                            out.tf.tolist())]
        assert key == sorted(key)


# ---- closing rule, lateness, order ---------------------------------------------------------------
def trades_of(*rows_, market="X") -> TradeBatch:
    ts, price, size, side = zip(*rows_)
    return TradeBatch.for_market(market, ts, price, size, side)


def test_late_trade_counted_and_dropped():
    agg = CandleAggregator(["1m"])
    first = agg.update(trades_of((T0 + 10 * S, 1.0, 1.0, 1), (T0 + 70 * S, 2.0, 1.0, 1)))
    assert len(first) == 1 and first.close[0] == 1.0  # [T0, T0+1m) closed by the trade at T0+70s
    agg.update(trades_of((T0 + 20 * S, 99.0, 5.0, 1)))  # belongs to the closed minute
    assert agg.stats["late"] == 1
    out = agg.flush()
    assert out.open_ts.tolist() == [T0 + M] and out.high[0] == 2.0 and out.volume[0] == 1.0


def test_out_of_order_within_lateness_is_applied():
    agg = CandleAggregator(["1m"], lateness=30 * S)
    out = agg.update(trades_of((T0 + 30 * S, 2.0, 1.0, 1), (T0 + 65 * S, 3.0, 1.0, -1),
                               (T0 + 5 * S, 1.0, 2.0, -1)))  # 60 s behind, but its minute is still open
    assert len(out) == 0 and agg.stats["late"] == 0
    out = agg.update(trades_of((T0 + 90 * S, 4.0, 1.0, 1)))  # watermark reaches T0 + 1m + 30 s
    assert out.open_ts.tolist() == [T0]
    assert (out.open[0], out.close[0], out.volume[0], out.trade_count[0]) == (1.0, 2.0, 3.0, 2)


def test_open_and_close_ties_follow_arrival_order():
    agg = CandleAggregator(["1m"])
    agg.update(trades_of((T0 + S, 5.0, 1.0, 0), (T0 + S, 6.0, 1.0, 0)))
    agg.update(trades_of((T0 + S, 7.0, 1.0, 0)))
    out = agg.flush()
    assert (out.open[0], out.close[0]) == (5.0, 7.0)


def test_side_volumes_vwap_and_unknown_side():
    agg = CandleAggregator(["1m"])
    agg.update(trades_of((T0, 10.0, 1.0, 1), (T0 + S, 20.0, 3.0, -1), (T0 + 2 * S, 30.0, 2.0, 0)))
    c = agg.flush()
    assert (c.volume[0], c.buy_volume[0], c.sell_volume[0]) == (6.0, 1.0, 3.0)
    assert c.vwap[0] == pytest.approx((10 + 60 + 60) / 6.0, rel=1e-15)


# ---- gaps ---------------------------------------------------------------------------------------
GAPPY = ((T0 + S, 1.0, 1.0, 1), (T0 + 3 * M + S, 2.0, 1.0, 1), (T0 + 4 * M + S, 3.0, 1.0, 1))


def test_gap_skip_leaves_empty_buckets_out():
    out, _ = run(trades_of(*GAPPY), 1, tfs=("1m",))
    assert out.open_ts.tolist() == [T0, T0 + 3 * M, T0 + 4 * M] and not out.gap.any()


def test_gap_flag_emits_empty_buckets_without_prices():
    out, agg = run(trades_of(*GAPPY), 1, tfs=("1m",), gaps="flag")
    assert out.open_ts.tolist() == [T0 + k * M for k in range(5)]  # nothing before the first trade or after
    assert out.gap.tolist() == [False, True, True, False, False]
    g = out.take(out.gap)
    assert np.isnan(g.open).all() and np.isnan(g.close).all() and np.isnan(g.vwap).all()
    assert (g.volume == 0).all() and (g.trade_count == 0).all() and agg.stats["gaps"] == 2


def test_gap_rows_come_out_once_the_watermark_passes_them():
    agg = CandleAggregator(["1m"], gaps="flag")
    agg.update(trades_of(GAPPY[0]))
    out = agg.update(trades_of(GAPPY[1]))
    assert out.open_ts.tolist() == [T0, T0 + M, T0 + 2 * M] and out.gap.tolist() == [False, True, True]


# ---- state --------------------------------------------------------------------------------------
@pytest.mark.parametrize("gaps", ["skip", "flag"])
def test_snapshot_mid_stream_restores_into_fresh_operator(gaps):
    trades = jittered(5, 3000, seed=8, back_s=30)
    kw = dict(lateness=10 * S, gaps=gaps)
    whole, _ = run(trades, 256, tfs=("1m", "5m"), **kw)
    agg = CandleAggregator(["1m", "5m"], **kw)
    outs = [agg.update(trades.slice(i, i + 256)) for i in range(0, 1536, 256)]
    blob = agg.snapshot()
    agg.update(trades.slice(1536, 2000))  # work lost in the "crash"
    fresh = CandleAggregator(["1m", "5m"], **kw)
    fresh.restore(blob)
    outs += [fresh.update(trades.slice(i, i + 256)) for i in range(1536, len(trades), 256)]
    outs.append(fresh.flush())
    assert rows(CandleBatch.concat(outs)) == rows(whole)


def test_snapshot_of_a_restored_operator_is_byte_identical():
    agg = CandleAggregator(["1m", "5m"], lateness=5 * S, gaps="flag")
    agg.update(jittered(3, 1000, seed=1, back_s=20))
    blob = agg.snapshot()
    fresh = CandleAggregator(["1m", "5m"], lateness=5 * S, gaps="flag")
    fresh.restore(blob)
    assert fresh.snapshot() == blob


def test_restore_refuses_other_configuration_or_operator():
    agg = CandleAggregator(["1m"])
    agg.update(trades_of(GAPPY[0]))
    with pytest.raises(StateError):
        CandleAggregator(["5m"]).restore(agg.snapshot())
    with pytest.raises(StateError):
        agg.restore(b"not a snapshot")


def test_flush_closes_everything_and_later_trades_into_it_are_late():
    agg = CandleAggregator(["1m", "1h"])
    assert len(agg.update(trades_of((T0 + S, 1.0, 1.0, 1), (T0 + 5 * S, 2.0, 1.0, 1)))) == 0
    out = agg.flush()
    assert sorted(out.tf.tolist()) == [M, 60 * M] and len(agg.flush()) == 0
    agg.update(trades_of((T0 + 10 * M, 3.0, 1.0, 1)))  # inside the flushed hour
    assert agg.stats["late"] == 1


def test_reset_forgets_everything():
    agg = CandleAggregator(["1m"])
    agg.update(trades_of(*GAPPY))
    agg.reset()
    assert not agg.initialized and len(agg.flush()) == 0 and agg.stats["trades"] == 0


def test_state_stays_bounded():
    trades = synthetic_trades(20, 50_000, 3, start_ns=T0, mean_rate_per_s=50)
    agg = CandleAggregator(["1m", "5m", "1h"])
    for i in range(0, len(trades), 4096):
        agg.update(trades.slice(i, i + 4096))
        assert len(agg._open) <= 20 * 3 * 2  # only open buckets: about one per market and timeframe


# ---- contract and input -------------------------------------------------------------------------
def test_is_an_operator_and_passes_candles_through():
    agg = CandleAggregator(["1m"])
    assert isinstance(agg, Operator) and agg.name == "candles"
    candles = CandleBatch.empty()
    assert agg.update(candles) is candles
    assert len(agg.update(TradeBatch.empty())) == 0


@pytest.mark.parametrize("kw", [dict(timeframes=[]), dict(timeframes=["1x"]), dict(timeframes=["1m"], gaps="fill"),
                                dict(timeframes=["1m"], lateness=-1)])
def test_bad_configuration_is_refused(kw):
    with pytest.raises(ConfigError):
        CandleAggregator(**kw)


def test_unclean_trades_are_refused_with_a_hint():
    with pytest.raises(InputError, match="clean_trades"):
        CandleAggregator(["1m"]).update(trades_of((T0, float("nan"), 1.0, 1)))
