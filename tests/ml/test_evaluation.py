"""Evaluation metrics against scikit-learn (when installed) and values checked by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.models import evaluation as ev
from schemas.errors import InputError


def _data(seed: int, n: int = 2000, ties: bool = False):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.4).astype(float)
    p = np.clip(0.4 + 0.2 * (y - 0.4) + rng.normal(0, 0.2, n), 0.0, 1.0)
    if ties:
        p = np.round(p, 1)
    return y, p


def test_auc_and_log_loss_by_hand() -> None:
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.4, 0.35, 0.8])
    assert ev.auc(y, p) == pytest.approx(0.75)  # pairs (pos, neg): 4 pairs, 3 ordered right
    assert ev.auc(y, np.array([0.5, 0.5, 0.5, 0.5])) == pytest.approx(0.5)  # ties count half
    expected = -np.mean(np.log([0.9, 0.6, 0.35, 0.8]))
    assert ev.log_loss(y, p) == pytest.approx(expected, rel=1e-12)
    assert math.isnan(ev.auc(np.ones(3), np.array([0.1, 0.2, 0.3])))
    assert ev.log_loss([1.0], [0.0]) == pytest.approx(-math.log(1e-15))  # clipped, finite


@pytest.mark.parametrize("seed,ties", [(0, False), (1, True), (2, True)])
def test_against_scikit_learn(seed, ties) -> None:
    from sklearn import calibration, metrics  # a test extra: missing, the test fails (never skips)
    y, p = _data(seed, ties=ties)
    assert ev.auc(y, p) == pytest.approx(metrics.roc_auc_score(y, p), rel=1e-12)
    assert ev.log_loss(y, p) == pytest.approx(metrics.log_loss(y, np.clip(p, 1e-15, 1 - 1e-15)), rel=1e-9)
    frac, mean = calibration.calibration_curve(y, p, n_bins=10, strategy="uniform")
    mine = ev.calibration_curve(y, p, 10)
    np.testing.assert_allclose([c["fraction_positive"] for c in mine], frac, rtol=1e-12)
    np.testing.assert_allclose([c["mean_predicted"] for c in mine], mean, rtol=1e-12)
    assert sum(c["count"] for c in mine) == len(y)


def test_precision_at_top_decile_by_hand() -> None:
    y = np.array([1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0], float)
    p = np.linspace(0.0, 1.0, 20)[::-1]  # row 0 scores highest
    assert ev.precision_at_top(y, p, 0.1) == pytest.approx(0.5)  # rows 0 and 1
    assert ev.precision_at_top(y, p, 0.6) == pytest.approx(3 / 12)
    assert ev.precision_at_top(y[:5], p[:5], 0.1) == pytest.approx(1.0)  # at least one row


def test_calibration_curve_by_hand() -> None:
    y = np.array([0, 1, 1, 0, 1])
    p = np.array([0.05, 0.1, 0.15, 0.95, 1.0])  # 0.1 is an edge: it falls in the lower bin, as in sklearn
    bins = ev.calibration_curve(y, p, 10)
    assert [(b["bin"], b["count"]) for b in bins] == [(0, 2), (1, 1), (9, 2)]
    assert bins[0]["fraction_positive"] == pytest.approx(0.5) and bins[0]["mean_predicted"] == pytest.approx(0.075)
    assert bins[2]["fraction_positive"] == pytest.approx(0.5) and bins[2]["mean_predicted"] == pytest.approx(0.975)


def test_gain_importance_names_the_features() -> None:
    import xgboost
    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 3)).astype(np.float32)
    y = (X[:, 1] + 0.1 * rng.normal(size=500) > 0).astype(np.float32)
    b = xgboost.train({"objective": "binary:logistic", "max_depth": 2, "seed": 0, "nthread": 1},
                      xgboost.DMatrix(X, label=y), 10)
    imp = ev.gain_importance(b, ["a", "signal", "c"])
    assert next(iter(imp)) == "signal"
    raw = b.get_score(importance_type="gain")
    assert imp["signal"] == pytest.approx(raw["f1"])
    assert list(imp.values()) == sorted(imp.values(), reverse=True)


def test_bad_inputs_are_input_errors() -> None:
    with pytest.raises(InputError, match="0 or 1"):
        ev.auc(np.array([0, 2]), np.array([0.1, 0.2]))
    with pytest.raises(InputError, match="length"):
        ev.log_loss(np.array([0, 1]), np.array([0.1]))
    with pytest.raises(InputError, match="finite"):
        ev.auc(np.array([0, 1]), np.array([0.1, np.nan]))


def test_evaluate_holds_every_metric() -> None:
    y, p = _data(3)
    m = ev.evaluate(y, p)
    assert set(m) == {"rows", "positive_rate", "auc", "log_loss", "precision_top_decile", "calibration"}
    assert m["rows"] == 2000 and 0.5 < m["auc"] < 1.0 and len(m["calibration"]) <= 10
