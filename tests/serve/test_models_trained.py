"""End to end at CI size: an XGBoost model and a PPO policy trained by the commands as Ray tasks on real bars,
evaluated on held-out bars, registered and promoted, then served: /ml/v1/predict and /rl/v1/act answer with
what the registered artefacts compute on the same rows."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from app.cli import main
from connectors.models.registry import Registry
from engine.features import feature_frame
from engine.models.xgb import load, predict
from engine.sources.files import load_any
from tests.data_paths import SHARED_DATA
from tests.serve.test_models import _post, _user

pytestmark = pytest.mark.ray
CANDLES = [str(SHARED_DATA / "candles" / f) for f in ("ADA_BTC-5m.feather", "LTC_BTC-5m.feather")]


def test_trained_model_and_policy_are_served(running_api, tmp_path, capsys) -> None:
    from rl.policy import load as load_policy
    from serve.models import deploy_models, undeploy_models

    root = tmp_path / "models"
    # both trainings run as Ray tasks on the session's Ray instance (no --serial)
    assert main(["ml", "train", "--input", *CANDLES, "--registry", str(root), "--rounds", "40", "--folds", "2",
                 "--promote"]) == 0
    assert main(["rl", "train", "--input", CANDLES[0], "--timesteps", "1024", "--n-steps", "256",
                 "--registry", str(root), "--promote"]) == 0
    out = capsys.readouterr().out
    assert "AUC" in out and "buy_and_hold" in out and "random (mean of 5)" in out  # held-out evaluations
    reg = Registry(root)
    xgb, policy = reg.production("xgb"), reg.production("policy")
    assert xgb.metrics["holdout"]["rows"] > 0 and policy.metrics["held_out"]["window"]["bars"] > 500

    feats = feature_frame([load_any(p)[0] for p in CANDLES])
    rows = feats.values[-8:]
    want_scores = predict(load((xgb.path / "model.ubj").read_bytes()), rows)
    obs = np.hstack([np.clip(np.nan_to_num(rows), -10, 10), np.zeros((len(rows), 2), np.float32)])
    want_actions, want_probs = load_policy(policy.path).act(obs)

    key = asyncio.run(_user(running_api.database_url, "pro"))
    serving = deploy_models(root, poll_s=0.2)
    try:
        assert serving == {"xgb": "v1", "policy": "v1"}
        features = [[None if np.isnan(v) else float(v) for v in r] for r in rows]
        status, body = _post(running_api.url + "/ml/v1/predict", {"features": features}, key)
        assert status == 200 and body["item"]["version"] == "v1", body
        np.testing.assert_allclose(body["item"]["scores"], want_scores, rtol=1e-6)
        status, body = _post(running_api.url + "/rl/v1/act", {"observation": obs.tolist()}, key)
        assert status == 200 and body["item"]["version"] == "v1", body
        assert body["item"]["actions"] == want_actions.tolist()
        np.testing.assert_allclose(body["item"]["probabilities"], want_probs, rtol=1e-5)
    finally:
        undeploy_models()
