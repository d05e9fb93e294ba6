"""A 0..100 risk score from four named components, each a saturating 0..1 map of one measure.

score = 100 * sum(weight[c] * component[c]); weights sum to 1, so the score is in [0, 100] and is
non-decreasing in every input. Each component maps its measure linearly onto [0, 1] and clips:

- ``volatility``: percentile rank (0..1) of current volatility in the key's own recent history;
  relative, so a calm-by-nature market and a wild one are each judged against themselves.
- ``var``: one-bar VaR (positive loss fraction) / ``scales["var"]``.
- ``drawdown``: drawdown from the window high / ``scales["drawdown"]``.
- ``stop``: ATR stop distance as a fraction of price / ``scales["stop"]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from schemas.errors import ConfigError

COMPONENTS = ("volatility", "var", "drawdown", "stop")
# volatility regime weighs most: it moves first and drives the other three
DEFAULT_WEIGHTS = {"volatility": 0.4, "var": 0.25, "drawdown": 0.2, "stop": 0.15}
# the level at which each measure counts as maximal risk (fractions of price per bar / of the high)
DEFAULT_SCALES = {"var": 0.05, "drawdown": 0.25, "stop": 0.10}


@dataclass(frozen=True)
class RiskScore:
    """The score (0..100) and each component's contribution in score points (they sum to the score)."""

    score: np.ndarray
    components: dict[str, np.ndarray]


def check_weights(weights: dict[str, float]) -> dict[str, float]:
    """Weights for exactly the four components, non-negative, summing to 1."""
    if set(weights) != set(COMPONENTS):
        raise ConfigError(f"risk score: weights must name exactly {COMPONENTS}, got {sorted(weights)}")
    if any(not np.isfinite(w) or w < 0 for w in weights.values()) or abs(sum(weights.values()) - 1.0) > 1e-9:
        raise ConfigError(f"risk score: weights must be non-negative and sum to 1, got {weights}")
    return {c: float(weights[c]) for c in COMPONENTS}


def check_scales(scales: dict[str, float]) -> dict[str, float]:
    """Positive saturation levels for the var, drawdown and stop components."""
    if set(scales) != set(DEFAULT_SCALES):
        raise ConfigError(f"risk score: scales must name exactly {tuple(DEFAULT_SCALES)}, got {sorted(scales)}")
    if any(not np.isfinite(s) or s <= 0 for s in scales.values()):
        raise ConfigError(f"risk score: scales must be positive, got {scales}")
    return {k: float(v) for k, v in scales.items()}


def score(vol_percentile, var, drawdown, stop_fraction, weights: dict[str, float] | None = None,
          scales: dict[str, float] | None = None) -> RiskScore:
    """Risk score of arrays (or scalars) of the four measures; NaN wherever any input is NaN."""
    w = check_weights(DEFAULT_WEIGHTS if weights is None else weights)
    s = check_scales(DEFAULT_SCALES if scales is None else scales)
    raw = {"volatility": np.asarray(vol_percentile, np.float64),
           "var": np.asarray(var, np.float64) / s["var"],
           "drawdown": np.asarray(drawdown, np.float64) / s["drawdown"],
           "stop": np.asarray(stop_fraction, np.float64) / s["stop"]}
    parts = {c: 100.0 * w[c] * np.clip(raw[c], 0.0, 1.0) for c in COMPONENTS}
    total = sum(parts.values())
    return RiskScore(np.clip(total, 0.0, 100.0), parts)
