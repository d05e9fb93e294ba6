"""Classifier evaluation in numpy: ROC AUC, log loss, precision at the top decile, a 10-bin calibration
curve, and an XGBoost booster's gain importance by feature name."""

from __future__ import annotations

import math

import numpy as np

from engine import libm
from schemas.errors import InputError

EPS = 1e-15  # probabilities are clipped to [EPS, 1 - EPS] for the log loss, as scikit-learn did


def _pair(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, np.float64).ravel()
    p = np.asarray(p, np.float64).ravel()
    if y.shape != p.shape:
        raise InputError(f"labels and scores differ in length ({len(y)} vs {len(p)})")
    if len(y) and not np.all((y == 0) | (y == 1)):
        raise InputError("labels must be 0 or 1 (drop unlabelled rows first)")
    if not np.all(np.isfinite(p)):
        raise InputError("scores must be finite numbers")
    return y, p


def auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties counted half); NaN when only one class is present."""
    y, s = _pair(y, score)
    pos = int(y.sum())
    neg = len(y) - pos
    if pos == 0 or neg == 0:
        return math.nan
    order = np.argsort(s, kind="mergesort")
    s_sorted = s[order]
    # average ranks (1-based) over runs of tied scores
    starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])
    ends = np.r_[starts[1:], len(s_sorted)]
    avg = (starts + ends + 1) / 2.0
    ranks = np.empty(len(s))
    ranks[order] = np.repeat(avg, ends - starts)
    return float((ranks[y == 1].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    """Mean negative log-likelihood of the labels under probabilities ``p`` of class 1."""
    y, p = _pair(y, p)
    if not len(y):
        return math.nan
    p = np.clip(p, EPS, 1 - EPS)
    return float(-np.mean(y * libm.log(p) + (1 - y) * libm.log(1.0 - p)))


def precision_at_top(y: np.ndarray, score: np.ndarray, fraction: float = 0.1) -> float:
    """Share of positives among the ``fraction`` of rows with the highest scores (at least one row; ties
    at the cut broken by row order)."""
    y, s = _pair(y, score)
    if not len(y):
        return math.nan
    n = max(1, int(math.ceil(fraction * len(y))))
    top = np.argsort(-s, kind="mergesort")[:n]
    return float(y[top].mean())


def calibration_curve(y: np.ndarray, p: np.ndarray, bins: int = 10) -> list[dict]:
    """Per equal-width probability bin of [0, 1] with rows in it: mean predicted probability, observed
    share of positives and row count (scikit-learn's ``calibration_curve(strategy="uniform")`` plus counts)."""
    y, p = _pair(y, p)
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.searchsorted(edges[1:-1], p)  # as scikit-learn bins: an edge value falls in the lower bin
    out = []
    for b in range(bins):
        m = idx == b
        if m.any():
            out.append({"bin": b, "lo": float(edges[b]), "hi": float(edges[b + 1]), "mean_predicted": float(p[m].mean()),
                        "fraction_positive": float(y[m].mean()), "count": int(m.sum())})
    return out


def gain_importance(booster, names: list[str]) -> dict[str, float]:
    """XGBoost's ``gain`` importance (mean loss reduction of the splits on a feature) by feature name,
    largest first; features the trees never split on are left out."""
    raw = booster.get_score(importance_type="gain")
    out = {}
    for key, value in raw.items():
        name = names[int(key[1:])] if key.startswith("f") and key[1:].isdigit() and int(key[1:]) < len(names) else key
        out[name] = float(value)
    return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))


def evaluate(y: np.ndarray, p: np.ndarray) -> dict:
    """Every metric of one set of held-out predictions, plus the base rate and row count."""
    y, p = _pair(y, p)
    return {"rows": int(len(y)), "positive_rate": float(y.mean()) if len(y) else math.nan,
            "auc": auc(y, p), "log_loss": log_loss(y, p), "precision_top_decile": precision_at_top(y, p, 0.1),
            "calibration": calibration_curve(y, p, 10)}
