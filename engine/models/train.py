"""One training job: walk-forward evaluation of a classifier on held-out folds, then the final model on
every labelled row. The learner defaults to ``engine.models.xgb.train``; the Ray tasks that run jobs in
parallel live in ``actors.ml_train``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from engine.models import evaluation, splits
from engine.models.labels import LabelSpec, label_rows
from engine.models import xgb
from engine.models.xgb import TrainSpec, predict
from schemas.errors import ConfigError

Fit = Callable[[np.ndarray, np.ndarray, TrainSpec], object]


@dataclass
class TrainJob:
    """The rows of one model (a market's, or every market's pooled): features, labels, label windows."""

    key: str
    X: np.ndarray  # float32 (rows, features), labelled rows only, in time order
    y: np.ndarray  # 0.0 / 1.0
    close_ts: np.ndarray  # int64 ns
    end_ts: np.ndarray  # int64 ns: close of the last bar each label reads
    names: list[str]
    spec: TrainSpec = field(default_factory=TrainSpec)
    folds: int = 4
    embargo: int = 0
    scheme: str = "walk-forward"
    holdout: float = 0.2  # the last fraction of bar times, kept out of every fold and the final model

    def __post_init__(self) -> None:
        if len(self.X) != len(self.y) or len(self.y) != len(self.close_ts) or len(self.close_ts) != len(self.end_ts):
            raise ConfigError(f"job {self.key}: X, y, close_ts and end_ts differ in length")


@dataclass
class JobResult:
    """Walk-forward held-out metrics (per fold and over every fold's predictions), the final model and its
    metrics on the holdout window."""

    key: str
    rows: int
    folds: list[dict]
    held_out: dict
    booster: object  # the final booster; None once serialised into ``model``
    importance: dict
    window: dict  # the final model's training rows: first bar close and the last bar any label reads, ns UTC
    holdout: dict = field(default_factory=dict)  # the final model on the holdout window ({} without one)
    model: bytes = b""  # the final booster as XGBoost's UBJSON (what model.ubj holds)


def holdout_split(close_ts: np.ndarray, end_ts: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(development rows, holdout rows): the holdout is the last ``fraction`` of the bar times; development
    rows whose label reads into it are purged. ``fraction`` 0: every row is development, none held out."""
    if not (0.0 <= fraction < 1.0):
        raise ConfigError(f"holdout must be a fraction in [0, 1), got {fraction!r}")
    if fraction == 0.0:
        return np.arange(len(close_ts)), np.empty(0, np.int64)
    times = np.unique(close_ts)
    first = int(len(times) * (1.0 - fraction))
    if first <= 0 or first >= len(times):
        raise ConfigError(f"holdout {fraction}: the data has {len(times)} bar times, too few to hold any out")
    cut = times[first]
    return np.flatnonzero(end_ts < cut), np.flatnonzero(close_ts >= cut)


def run_job(job: TrainJob, fit: Fit = xgb.train, progress: Callable[[int], None] | None = None) -> JobResult:
    """Walk-forward evaluation on the development rows (all but the final holdout window): each fold's model
    sees only its purged (and embargoed) training rows and is scored on its test window; ``held_out`` pools
    every fold's test predictions. The final model is fitted on every development row and, with a holdout,
    scored on it (``holdout``): the numbers of the very model that gets registered, on bars it never saw.
    ``progress(1)`` per model fitted (``job.folds + 1`` in all)."""
    if len(job.y) == 0:
        raise ConfigError(f"{job.key}: no labelled rows to train on (the series is shorter than the label horizon "
                          f"and the features' warm-up)")
    dev, hold = holdout_split(job.close_ts, job.end_ts, job.holdout)
    X, y_all, close_ts, end_ts = job.X[dev], job.y[dev], job.close_ts[dev], job.end_ts[dev]
    fs = splits.folds(close_ts, end_ts, job.folds, job.embargo, job.scheme, min_train=2)
    fold_rows, ys, ps = [], [], []
    for f in fs:
        y_train = y_all[f.train]
        if y_train.min() == y_train.max():
            raise ConfigError(f"{job.key}: fold {f.index + 1} trains on one class only ({int(y_train[0])}); "
                              f"use fewer folds or a longer series")
        booster = fit(X[f.train], y_train, job.spec)
        p = predict(booster, X[f.test])
        y = y_all[f.test]
        m = evaluation.evaluate(y, p)
        m.pop("calibration")
        fold_rows.append({"fold": f.index + 1, "train_rows": int(len(f.train)), "test_rows": int(len(f.test)),
                          "test_start_ts": f.test_start, "test_end_ts": f.test_end, "purged": f.purged,
                          "embargoed": f.embargoed, **m})
        ys.append(y)
        ps.append(p)
        if progress:
            progress(1)
    held_out = evaluation.evaluate(np.concatenate(ys), np.concatenate(ps))
    if y_all.min() == y_all.max():
        raise ConfigError(f"{job.key}: every label is {int(y_all[0])}; nothing to learn")
    final = fit(X, y_all, job.spec)
    holdout = {}
    if len(hold):
        holdout = evaluation.evaluate(job.y[hold], predict(final, job.X[hold]))
        holdout.update(start_ts=int(job.close_ts[hold].min()), end_ts=int(job.close_ts[hold].max()),
                       purged=int(len(job.y) - len(dev) - len(hold)))
    if progress:
        progress(1)
    return JobResult(job.key, int(len(job.y)), fold_rows, held_out, final,
                     evaluation.gain_importance(final, job.names),
                     {"start_ts": int(close_ts.min()), "end_ts": int(end_ts.max())}, holdout)


def jobs_of(feats, label_spec: LabelSpec, spec: TrainSpec, folds: int = 4, embargo: int = 0,
            scheme: str = "walk-forward", per_market: bool = False, holdout: float = 0.2) -> list[TrainJob]:
    """Training jobs over a feature frame (``engine.features.Features``): one pooled over every market (key
    ``pooled``), or one per market (key: the market); each holds its labelled rows in time order. Each market
    and timeframe is labelled on its own series."""
    c = feats.candles
    key = c.market.astype(np.int64) * (1 << 20) + np.unique(c.tf, return_inverse=True)[1].astype(np.int64)
    labels = label_rows(key, feats.close_ts, c.high, c.low, c.close, label_spec)
    keep = labels.labelled
    if per_market:
        groups = [(m, keep & (c.market == i)) for i, m in enumerate(c.markets) if np.any(c.market == i)]
    else:
        groups = [("pooled", keep)]
    jobs = []
    for key_name, mask in groups:
        rows = np.flatnonzero(mask)
        rows = rows[np.argsort(feats.close_ts[rows], kind="stable")]
        jobs.append(TrainJob(key_name, feats.values[rows], labels.y[rows], feats.close_ts[rows], labels.end_ts[rows],
                             list(feats.names), spec, folds, embargo, scheme, holdout))
    return jobs
