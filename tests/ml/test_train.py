"""Training on real bars: walk-forward held-out metrics, byte-identical models on Ray and serially, and
scoring with the registered artefact."""

from __future__ import annotations

import numpy as np
import pytest

from actors.ml_train import train_on_ray, train_serial
from app.inputs import load_inputs
from engine.features import feature_frame
from engine.models.labels import LabelSpec
from engine.models.train import holdout_split, jobs_of
from engine.models.xgb import TrainSpec, load, predict, train
from schemas.errors import ConfigError, InputError
from tests.data_paths import SHARED_DATA

CANDLES = [str(SHARED_DATA / "candles" / f) for f in ("ADA_BTC-5m.feather", "ZEC_BTC-5m.feather")]
SPEC = TrainSpec(rounds=30, seed=7, nthread=1)


@pytest.fixture(scope="module")
def feats():
    return feature_frame(load_inputs(CANDLES, None))


@pytest.fixture(scope="module")
def per_market_jobs(feats):
    return jobs_of(feats, LabelSpec("triple-barrier", 12), SPEC, 3, 5, "walk-forward", per_market=True)


def test_jobs_hold_each_markets_labelled_rows(feats, per_market_jobs) -> None:
    assert [j.key for j in per_market_jobs] == ["ADA_BTC", "ZEC_BTC"]
    for j in per_market_jobs:
        assert np.all(np.diff(j.close_ts) > 0) and set(np.unique(j.y)) == {0.0, 1.0}
        assert np.all(j.end_ts > j.close_ts)
        assert len(j.y) < int(np.sum(np.asarray(feats.markets)[feats.market] == j.key))  # the horizon's tail is out
    (pooled,) = jobs_of(feats, LabelSpec("sign", 12), SPEC, 3, 0, "walk-forward", per_market=False)
    assert len(pooled.y) == len(feats) - 2 * 12  # every row but each market's last 12 (sign needs no ATR)


def test_ray_and_serial_train_identical_models(ray_local, per_market_jobs) -> None:
    serial = train_serial(per_market_jobs)
    on_ray = train_on_ray(per_market_jobs, num_cpus=0.5)
    assert [r.key for r in on_ray] == ["ADA_BTC", "ZEC_BTC"]
    for a, b in zip(serial, on_ray):
        assert a.model == b.model and len(a.model) > 1000
        assert a.held_out == b.held_out and a.folds == b.folds and a.importance == b.importance
    again = train_serial(per_market_jobs[:1])[0]
    assert again.model == serial[0].model  # deterministic run to run


def test_held_out_metrics_and_scoring(per_market_jobs) -> None:
    steps = []
    (r,) = train_serial(per_market_jobs[:1], progress=steps.append)
    assert sum(steps) == 3 + 1  # one per fold and the final model
    h, o = r.held_out, r.holdout
    assert h["rows"] == sum(f["test_rows"] for f in r.folds)
    # the holdout: the last 20% of the bars, after every fold's test window, 12 rows purged before it
    assert o["start_ts"] > max(f["test_end_ts"] for f in r.folds) and o["purged"] == 12
    assert o["rows"] + h["rows"] + o["purged"] < r.rows and 0.3 < o["auc"] < 0.8
    assert r.window["end_ts"] < o["start_ts"]  # the registered model never saw a holdout bar
    assert 0.3 < h["auc"] < 0.8 and 0.0 < h["log_loss"] < 2.0 and 0.0 <= h["precision_top_decile"] <= 1.0
    assert all(f["purged"] == 12 for f in r.folds)  # one market: the 12 rows whose labels reach the test window
    booster = load(r.model)
    p = predict(booster, per_market_jobs[0].X[:100])
    assert p.dtype == np.float32 and p.shape == (100,) and np.all((p > 0) & (p < 1))
    np.testing.assert_array_equal(predict(booster, per_market_jobs[0].X[0]), p[:1])  # one row as 1-d
    with pytest.raises(InputError, match=f"takes {len(per_market_jobs[0].names)} features"):
        predict(booster, np.zeros((2, 5)))


def test_train_is_deterministic_and_checks_labels(per_market_jobs) -> None:
    j = per_market_jobs[0]
    a, b = train(j.X[:2000], j.y[:2000], SPEC), train(j.X[:2000], j.y[:2000], SPEC)
    assert bytes(a.save_raw("ubj")) == bytes(b.save_raw("ubj"))
    with pytest.raises(InputError, match="0 or 1"):
        train(j.X[:3], [0.0, 1.0, float("nan")], SPEC)


def test_holdout_split_by_hand() -> None:
    close_ts = np.arange(10, dtype=np.int64)
    dev, hold = holdout_split(close_ts, close_ts + 2, 0.2)
    np.testing.assert_array_equal(hold, [8, 9])
    np.testing.assert_array_equal(dev, [0, 1, 2, 3, 4, 5])  # 6 and 7 read bars 8 and 9: purged
    dev, hold = holdout_split(close_ts, close_ts + 2, 0.0)
    assert len(dev) == 10 and len(hold) == 0
    with pytest.raises(ConfigError, match="fraction"):
        holdout_split(close_ts, close_ts + 2, 1.0)


def test_without_a_holdout_the_final_model_sees_every_row(feats) -> None:
    (job,) = jobs_of(feats.for_market("ADA_BTC"), LabelSpec("sign", 6), SPEC, 2, 0, holdout=0.0)
    (r,) = train_serial([job])
    assert r.holdout == {} and r.window == {"start_ts": int(job.close_ts.min()), "end_ts": int(job.end_ts.max())}
