"""Model features are point-in-time: the same rows live through the actors as in one batch over history, and no
row ever changes when later bars do."""

from __future__ import annotations

import numpy as np
import pytest

from engine.config import PipelineConfig
from engine.features import FEATURE_NAMES, feature_chain, feature_frame, of_batches
from engine.sources.files import load_any
from engine.sources.replay import Replay
from schemas.batches import CandleBatch
from tests.data_paths import SHARED_DATA
from tests.pipeline_inputs import real_inputs

CANDLES = ["ADA_BTC-5m.feather", "LTC_BTC-5m.feather"]


def _candles() -> list[CandleBatch]:
    return [load_any(str(SHARED_DATA / "candles" / name))[0] for name in CANDLES]


def _same(a, b) -> None:
    """Identical rows: keys, names and every value (NaN where the other is NaN)."""
    assert a.names == b.names
    assert len(a) == len(b) > 0
    names_a = np.asarray(a.markets, dtype=object)[a.market]
    names_b = np.asarray(b.markets, dtype=object)[b.market]
    assert list(names_a) == list(names_b)
    assert np.array_equal(a.close_ts, b.close_ts) and np.array_equal(a.candles.tf, b.candles.tf)
    np.testing.assert_array_equal(a.values, b.values)


def test_features_are_finite_scale_free_and_warm_up() -> None:
    f = feature_frame(_candles())
    assert f.names == list(FEATURE_NAMES)
    assert f.values.dtype == np.float32 and len(f) == sum(len(c) for c in _candles())
    late = f.values[len(f) // 2:]
    filled = np.isfinite(late).mean(axis=0)
    # everything the candles allow is filled once warm (taker-buy share needs trades: these candles lack it)
    assert {n for n, share in zip(f.names, filled) if share < 0.5} == {"buy_share"}
    ret1 = f.for_market("ADA_BTC").column("ret_1")
    close = f.for_market("ADA_BTC").candles.close
    np.testing.assert_allclose(ret1[1:], np.log(close[1:] / close[:-1]), rtol=1e-6)


def test_live_through_the_actors_equals_the_batch_for_every_bar(ray_local) -> None:
    from actors.pipeline import RayPipeline

    inputs = _candles()
    batch = feature_frame(inputs)
    config = PipelineConfig(timeframes=("5m",), features=True, batch_size=256).with_shards(2)
    pipe = RayPipeline(config)
    try:
        for b in Replay(inputs, batch_size=97):  # small live batches, routed over 2 shards per stage
            pipe.send(b)
        live = pipe.finish().features
    finally:
        pipe.shutdown()
    _same(live, batch)


def test_batch_size_and_snapshot_restore_change_no_row() -> None:
    trades = [real_inputs()[0]]  # real XRP/ETH trades, candles of two timeframes built from them
    config = PipelineConfig(timeframes=("1m", "5m"))
    whole = feature_frame(trades, config.model_copy(update={"batch_size": 1_000_000}))
    assert "tf5m_trend" in whole.names and len(whole) > 100
    one_m = whole.candles.tf == 60_000_000_000
    assert np.isfinite(whole.column("tf5m_rsi")[one_m][-50:]).all()
    small = feature_frame(trades, config.model_copy(update={"batch_size": 37}))
    _same(small, whole)
    # restart halfway from a snapshot: the rest is unchanged
    batches = list(Replay(trades, batch_size=500))
    first, out = feature_chain(config), []
    for b in batches[:len(batches) // 2]:
        out.append(first.update(b).features)
    second = feature_chain(config)
    second.restore(first.snapshot())
    for b in batches[len(batches) // 2:]:
        out.append(second.update(b).features)
    out.append(second.flush().features)
    _same(of_batches([f for f in out if f is not None and len(f)]), whole)


def test_the_higher_timeframe_context_is_its_bar_closed_strictly_before() -> None:
    f = feature_frame([real_inputs()[0]], PipelineConfig(timeframes=("1m", "5m")))
    five = f.take(np.flatnonzero(f.candles.tf == 300_000_000_000))
    one = f.take(np.flatnonzero(f.candles.tf == 60_000_000_000))
    for i in range(len(one) // 2, len(one), 7):
        before = np.flatnonzero(five.close_ts < one.close_ts[i])
        if not len(before):
            continue
        want = five.column("trend")[before[-1]]
        assert one.column("tf5m_trend")[i] == want
        assert one.column("tf5m_ret_1")[i] == five.column("ret_1")[before[-1]] or \
            np.isnan(five.column("ret_1")[before[-1]])


@pytest.mark.parametrize("cut", [0.3, 0.7])
def test_perturbing_future_bars_never_changes_a_past_row(cut) -> None:
    inputs = _candles()
    base = feature_frame(inputs)
    rng = np.random.default_rng(7)
    changed = []
    for c in inputs:
        k = int(len(c) * cut)
        shock = np.ones(len(c))
        shock[k:] = rng.uniform(0.8, 1.25, len(c) - k)  # every later bar moved, shapes kept valid
        hi = c.high * shock
        lo = c.low * shock
        changed.append(CandleBatch(c.markets, c.market, c.tf, c.open_ts, c.open * shock, hi, lo, c.close * shock,
                                   c.volume * shock, c.buy_volume, c.sell_volume, c.vwap * shock,
                                   c.trade_count, c.gap))
    after = feature_frame(changed)
    cut_ts = {c.markets[0]: c.close_ts[int(len(c) * cut)] for c in inputs}
    names = np.asarray(base.markets, dtype=object)[base.market]
    past = np.array([ts < cut_ts[m] for m, ts in zip(names, base.close_ts)])
    np.testing.assert_array_equal(base.values[past], after.values[past])
    assert not np.array_equal(base.values[~past], after.values[~past], equal_nan=True)
