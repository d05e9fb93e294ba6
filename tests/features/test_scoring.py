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
