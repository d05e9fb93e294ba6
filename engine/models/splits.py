"""Walk-forward folds over time with purging and embargo (López de Prado, *Advances in Financial Machine
Learning*, ch. 7).

Time is the sorted set of distinct bar close times of the rows (a pooled frame's markets share it). The
labelled rows are cut into contiguous time blocks. ``walk-forward`` (the default) tests on blocks 1..K in
turn and trains on what lies before each test block; ``kfold`` tests on each of K blocks and trains on
every other block, before and after it.

- Purging drops a training row whose label window ``[close_ts, end_ts]`` (its bar's close to the close
  of the last bar its label reads) overlaps the test window: its label saw test bars.
- Embargo drops the ``embargo`` bars that follow each test window from training: their features (lags,
  rolling indicators) are built from test bars. Walk-forward folds train on the past only, so the embargo
  removes rows only under ``kfold``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from schemas.errors import ConfigError

SCHEMES = ("walk-forward", "kfold")


@dataclass(frozen=True)
class Fold:
    """One split: row indices to train and test on, the test window's first and last close time, and how
    many training rows purging and the embargo removed."""

    index: int
    train: np.ndarray
    test: np.ndarray
    test_start: int
    test_end: int
    purged: int
    embargoed: int


def folds(close_ts: np.ndarray, end_ts: np.ndarray, k: int, embargo: int = 0, scheme: str = "walk-forward",
          min_train: int = 1) -> list[Fold]:
    """``k`` folds of the rows (labelled rows: ``end_ts >= close_ts``) in time order of their test windows.

    A fold whose training set ends up with fewer than ``min_train`` rows is an error: ask for fewer folds
    or a shorter horizon/embargo.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ConfigError(f"folds must be a whole number >= 1, got {k!r}")
    if isinstance(embargo, bool) or not isinstance(embargo, (int, np.integer)) or embargo < 0:
        raise ConfigError(f"embargo must be a whole number of bars >= 0, got {embargo!r}")
    if scheme not in SCHEMES:
        raise ConfigError(f"split scheme must be one of {', '.join(SCHEMES)}, got {scheme!r}")
    close_ts = np.asarray(close_ts, np.int64)
    end_ts = np.asarray(end_ts, np.int64)
    if close_ts.shape != end_ts.shape:
        raise ConfigError("close_ts and end_ts must have the same length")
    if np.any(end_ts < close_ts):
        raise ConfigError("every row needs a label window (end_ts >= close_ts); pass labelled rows only")
    times = np.unique(close_ts)
    blocks = k + 1 if scheme == "walk-forward" else k
    if len(times) < blocks:
        raise ConfigError(f"{k} folds need at least {blocks} distinct bar times, the data has {len(times)}")
    bounds = np.linspace(0, len(times), blocks + 1).round().astype(np.int64)
    rank = np.searchsorted(times, close_ts)  # each row's bar number on the shared time axis
    tests = range(1, blocks) if scheme == "walk-forward" else range(blocks)
    out = []
    for i, b in enumerate(tests):
        lo, hi = int(bounds[b]), int(bounds[b + 1])  # test bars [lo, hi)
        start, end = int(times[lo]), int(times[hi - 1])
        in_test = (rank >= lo) & (rank < hi)
        candidate = (rank < lo) if scheme == "walk-forward" else ~in_test
        overlaps = candidate & (close_ts <= end) & (end_ts >= start)
        embargoed = candidate & ~overlaps & (rank >= hi) & (rank < hi + embargo)
        train = np.flatnonzero(candidate & ~overlaps & ~embargoed)
        if len(train) < min_train:
            raise ConfigError(f"fold {i + 1} of {k} has {len(train)} training rows after purging and embargo "
                              f"(need {min_train}); use fewer folds, a shorter horizon or embargo, or more data")
        out.append(Fold(i, train, np.flatnonzero(in_test), start, end, int(overlaps.sum()), int(embargoed.sum())))
    return out
