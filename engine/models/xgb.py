"""XGBoost for the up/down classifier: the fixed, deterministic training parameters and scoring a booster.

Training itself (``xgboost.train``) runs in ``actors.ml_train`` — this package stays free of third-party
libraries beyond numpy/numba. Scoring needs only the booster object it is given.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from schemas.errors import InputError

DEFAULT_PARAMS: dict = {
    "objective": "binary:logistic",
    "eval_metric": "logloss",
    "tree_method": "hist",
    "max_depth": 4,
    "eta": 0.05,
    "subsample": 0.8,
    "colsample_bytree": 0.8,
    "min_child_weight": 5.0,
    "lambda": 1.0,
}
DEFAULT_ROUNDS = 200


@dataclass(frozen=True)
class TrainSpec:
    """Booster parameters and rounds; ``seed`` and ``nthread`` fixed so a run repeats bit for bit."""

    params: dict = field(default_factory=lambda: dict(DEFAULT_PARAMS))
    rounds: int = DEFAULT_ROUNDS
    seed: int = 0
    nthread: int = 1

    def booster_params(self) -> dict:
        """What ``xgboost.train`` gets: the parameters with the seed and thread count that make it repeatable."""
        return {**DEFAULT_PARAMS, **self.params, "seed": int(self.seed), "nthread": int(self.nthread)}

    def describe(self) -> dict:
        return {"params": self.booster_params(), "rounds": int(self.rounds)}


def as_matrix(X: np.ndarray) -> np.ndarray:
    """Feature rows as C-contiguous float32 (NaN kept: XGBoost routes missing values itself)."""
    X = np.asarray(X, dtype=np.float32)
    if X.ndim == 1:
        X = X[None, :]
    if X.ndim != 2:
        raise InputError(f"feature rows must be a 2-d array (rows, features), got shape {X.shape}")
    return np.ascontiguousarray(X)


def predict(booster, X: np.ndarray) -> np.ndarray:
    """Probability that each row's label is "up" (1), float32, one per row of ``X``."""
    X = as_matrix(X)
    n = int(booster.num_features())
    if X.shape[1] != n:
        raise InputError(f"the model takes {n} features per row, got {X.shape[1]}")
    if not len(X):
        return np.empty(0, np.float32)
    return np.asarray(booster.inplace_predict(X, validate_features=False), dtype=np.float32).reshape(len(X))
