"""Model scores as signal-rule inputs: a rule reading ``model_score`` fires on exactly the bars whose batch-scored
probability passes its threshold."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import xgboost

from engine.config import PipelineConfig
from engine.features import FEATURE_NAMES, SCORE_COLUMNS, ScoreOperator, feature_frame
from engine.models.xgb import predict
from engine.pipeline import build_chain
from engine.sources.files import load_any
from engine.sources.replay import Replay
from tests.data_paths import SHARED_DATA


def _booster(feats) -> xgboost.Booster:
    close = feats.candles.close
    y = (np.r_[close[1:], close[-1]] > close).astype(np.float32)  # next bar up (one market: rows are in order)
    d = xgboost.DMatrix(feats.values, label=y)
    return xgboost.train({"objective": "binary:logistic", "max_depth": 3, "seed": 0, "nthread": 1}, d, 20)


class _Model:
    def __init__(self, booster) -> None:
        self.booster = booster
        self.meta = SimpleNamespace(features=list(FEATURE_NAMES))
        self.calls = 0

    def score(self, X):
        self.calls += 1
        return predict(self.booster, X)


def test_rules_read_the_batch_scored_model_column(tmp_path) -> None:
    candles = [load_any(str(SHARED_DATA / "candles" / "ADA_BTC-5m.feather"))[0]]
    feats = feature_frame(candles)
    model = _Model(_booster(feats))
    toml = tmp_path / "model.toml"
    toml.write_text('name = "model"\n[[rule]]\nname = "model_up"\nside = "buy"\nwhen = ["model_score > 0.55"]\n')
    config = PipelineConfig(timeframes=("5m",), features=True, strategy=str(toml))
    chain = build_chain(["candles", "indicators", "structure", "signals"], config)
    scorer = next(op for op in chain.operators if isinstance(op, ScoreOperator))
    scorer.attach(model=model)
    fired, batches = [], 0
    for batch in Replay(candles, batch_size=500):
        e = chain.update(batch)
        batches += 1
        fired += [s.ts for s in e.value]
        assert list(e.features.names[-2:]) == list(SCORE_COLUMNS)
    assert model.calls == batches  # one call per batch, never per bar
    p = predict(model.booster, feats.values)
    risk_ready = np.isfinite(feats.column("risk_score"))
    want = feats.close_ts[(p > 0.55) & risk_ready]
    assert len(fired) > 10 and np.array_equal(np.array(fired), want)


def test_without_a_model_the_columns_are_nan_and_nothing_fires(tmp_path) -> None:
    candles = [load_any(str(SHARED_DATA / "candles" / "ADA_BTC-5m.feather"))[0]]
    toml = tmp_path / "model.toml"
    toml.write_text('name = "model"\n[[rule]]\nname = "model_up"\nside = "buy"\nwhen = ["model_score > 0.5"]\n')
    chain = build_chain(["candles", "indicators", "structure", "signals"],
                        PipelineConfig(timeframes=("5m",), features=True, strategy=str(toml)))
    e = chain.update(candles[0])
    assert not len(e.value) and np.isnan(e.features.column("model_score")).all()


def test_live_actors_score_with_the_promoted_model(ray_local, tmp_path) -> None:
    from actors.pipeline import RayPipeline
    from connectors.models.registry import Registry
    from engine.models.xgb import to_bytes

    candles = [load_any(str(SHARED_DATA / "candles" / "ADA_BTC-5m.feather"))[0]]
    feats = feature_frame(candles)
    booster = _booster(feats)
    reg = Registry(tmp_path / "models")
    v1 = reg.register("xgb", "xgboost", {"model.ubj": to_bytes(booster)}, features=list(FEATURE_NAMES))
    reg.promote("xgb", v1.version)
    toml = tmp_path / "model.toml"
    toml.write_text('name = "model"\n[[rule]]\nname = "model_up"\nside = "buy"\nwhen = ["model_score > 0.55"]\n')
    config = PipelineConfig(timeframes=("5m",), features=True, strategy=str(toml), models_dir=str(tmp_path / "models"),
                            batch_size=500).with_shards(2)
    pipe = RayPipeline(config)
    try:
        for b in Replay(candles, batch_size=500):
            pipe.send(b)
        result = pipe.finish()
    finally:
        pipe.shutdown()
    p = predict(booster, feats.values)
    want = feats.close_ts[(p > 0.55) & np.isfinite(feats.column("risk_score"))]
    assert len(want) > 10 and np.array_equal(np.array([s.ts for s in result.signals]), want)


def test_live_models_follow_a_promotion_and_keep_scoring_through_a_broken_one(tmp_path) -> None:
    from connectors.models.live import LiveModels
    from connectors.models.registry import Registry
    from engine.models.xgb import to_bytes

    feats = feature_frame([load_any(str(SHARED_DATA / "candles" / "ADA_BTC-5m.feather"))[0]])
    reg = Registry(tmp_path)
    v1 = reg.register("xgb", "xgboost", {"model.ubj": to_bytes(_booster(feats))}, features=list(FEATURE_NAMES))
    live = LiveModels(tmp_path, check_s=3600)
    assert not live.refresh() and live.loaded["model"] is None  # nothing promoted: no model
    reg.promote("xgb", v1.version)
    assert not live.refresh()  # checked a moment ago: no file read until check_s passes
    assert live.refresh(force=True) and live.versions["model"] == v1.version
    scorer = ScoreOperator()
    live.attach_to(scorer)
    assert scorer.model is live.loaded["model"]
    broken = reg.register("xgb", "xgboost", {"model.ubj": b"not a model"}, features=list(FEATURE_NAMES))
    reg.promote("xgb", broken.version)
    assert not live.refresh(force=True) and live.errors == 1 and live.versions["model"] == v1.version


def test_a_model_of_other_features_leaves_the_stream_unscored_not_stopped(tmp_path) -> None:
    candles = [load_any(str(SHARED_DATA / "candles" / "ADA_BTC-5m.feather"))[0]]
    model = _Model(None)
    model.meta.features = ["tf1h_trend"]  # trained with a 1h context this pipeline does not build
    chain = build_chain(["candles", "indicators", "structure", "signals"],
                        PipelineConfig(timeframes=("5m",), features=True))
    scorer = next(op for op in chain.operators if isinstance(op, ScoreOperator))
    scorer.attach(model=model)
    e = chain.update(candles[0])
    assert np.isnan(e.features.column("model_score")).all()
    assert scorer.stats["unscorable_batches"] == 1 and "tf1h_trend" in scorer.last_error
