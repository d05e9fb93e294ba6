"""The 0..100 risk score: bounds, documented weights, monotonicity, NaN propagation, bad config."""

from __future__ import annotations

import numpy as np
import pytest

from engine.risk.score import COMPONENTS, DEFAULT_SCALES, DEFAULT_WEIGHTS, score
from schemas.errors import ConfigError

GRID = np.linspace(0.0, 0.5, 51)


def test_bounds_and_components_sum() -> None:
    rng = np.random.default_rng(7)
    args = [rng.uniform(0, 1, 1000), rng.uniform(0, 0.2, 1000), rng.uniform(0, 1, 1000), rng.uniform(0, 0.3, 1000)]
    out = score(*args)
    assert ((out.score >= 0) & (out.score <= 100)).all()
    np.testing.assert_allclose(sum(out.components.values()), out.score)
    assert set(out.components) == set(COMPONENTS)


def test_extremes_and_documented_weights() -> None:
    assert float(score(0.0, 0.0, 0.0, 0.0).score) == 0.0
    assert float(score(1.0, 1.0, 1.0, 1.0).score) == pytest.approx(100.0)
    # each measure at its saturation level contributes exactly its weight in points
    only = {"volatility": (1.0, 0, 0, 0), "var": (0, DEFAULT_SCALES["var"], 0, 0),
            "drawdown": (0, 0, DEFAULT_SCALES["drawdown"], 0), "stop": (0, 0, 0, DEFAULT_SCALES["stop"])}
    for name, args in only.items():
        assert float(score(*args).score) == pytest.approx(100 * DEFAULT_WEIGHTS[name])
    assert float(score(0.5, 0.025, 0.125, 0.05).score) == pytest.approx(50.0)


@pytest.mark.parametrize("position", range(4))
def test_monotone_in_each_input(position) -> None:
    base = [0.3, 0.01, 0.05, 0.02]
    args = [np.full(len(GRID), v) for v in base]
    args[position] = GRID * (2.0 if position == 0 else 1.0)
    s = score(*args).score
    assert (np.diff(s) >= 0).all()
    assert s[-1] > s[0]


def test_nan_propagates() -> None:
    out = score(np.array([0.5, np.nan]), np.array([0.01, 0.01]), np.array([0.1, 0.1]), np.array([0.01, 0.01]))
    assert np.isfinite(out.score[0]) and np.isnan(out.score[1])


@pytest.mark.parametrize("kwargs", [
    {"weights": {"volatility": 0.5, "var": 0.5}},
    {"weights": {"volatility": 0.5, "var": 0.5, "drawdown": 0.5, "stop": -0.5}},
    {"weights": {"volatility": 0.4, "var": 0.4, "drawdown": 0.4, "stop": 0.4}},
    {"scales": {"var": 0.0, "drawdown": 0.2, "stop": 0.1}},
    {"scales": {"var": 0.05}},
])
def test_bad_weights_or_scales(kwargs) -> None:
    with pytest.raises(ConfigError):
        score(0.5, 0.01, 0.1, 0.01, **kwargs)
