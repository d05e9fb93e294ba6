"""XGBoost for the up/down classifier: fixed, deterministic training parameters, training, scoring, and the
booster as the bytes of ``model.ubj``."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import xgboost

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


def train(X: np.ndarray, y: np.ndarray, spec: TrainSpec | None = None) -> xgboost.Booster:
    """A booster fitted to these rows; with ``spec``'s seed and thread count fixed it repeats bit for bit."""
    spec = spec or TrainSpec()
    y = np.asarray(y, np.float32)
    if not np.all((y == 0) | (y == 1)):
        raise InputError("labels must be 0 or 1 (drop unlabelled rows first)")
    dtrain = xgboost.DMatrix(as_matrix(X), label=y, nthread=spec.nthread)
    return xgboost.train(spec.booster_params(), dtrain, num_boost_round=int(spec.rounds))


def to_bytes(booster: xgboost.Booster) -> bytes:
    """The booster as XGBoost's UBJSON, what ``model.ubj`` holds."""
    return bytes(booster.save_raw(raw_format="ubj"))


def load(model: bytes | bytearray) -> xgboost.Booster:
    """A booster from the UBJSON bytes ``to_bytes`` gave (the content of a ``model.ubj``)."""
    b = xgboost.Booster()
    b.load_model(bytearray(model))
    return b
