"""Walk-forward folds: no training row's label window overlaps its test window (purging), the bars after
a test window stay out of training (embargo), and walk-forward trains only on the past."""

from __future__ import annotations

import numpy as np
import pytest

from engine.models.splits import folds
from schemas.errors import ConfigError

BAR = 300 * 10**9


def _frame(n_bars: int, markets: int, horizon: int):
    """Rows of ``markets`` series sharing one time axis, each row's label reading ``horizon`` bars on."""
    t = np.repeat(np.arange(n_bars, dtype=np.int64) * BAR, markets)
    keep = t <= (n_bars - 1 - horizon) * BAR  # the last horizon bars have no label
    return t[keep], t[keep] + horizon * BAR


@pytest.mark.parametrize("scheme", ["walk-forward", "kfold"])
@pytest.mark.parametrize("horizon,embargo", [(1, 0), (12, 0), (12, 5), (30, 40)])
def test_no_label_window_overlaps_the_test_window(scheme, horizon, embargo) -> None:
    close_ts, end_ts = _frame(1000, 2, horizon)
    fs = folds(close_ts, end_ts, 4, embargo, scheme)
    assert len(fs) == 4
    tested = np.concatenate([f.test for f in fs])
    assert len(np.unique(tested)) == len(tested)  # each row tested at most once
    if scheme == "kfold":
        assert len(tested) == len(close_ts)
    for f in fs:
        assert not np.intersect1d(f.train, f.test).size
        lo, hi = close_ts[f.test].min(), close_ts[f.test].max()
        assert (f.test_start, f.test_end) == (lo, hi)
        tr_start, tr_end = close_ts[f.train], end_ts[f.train]
        assert not np.any((tr_start <= hi) & (tr_end >= lo)), "a training label saw a test bar"
        if scheme == "walk-forward":
            assert tr_end.max() < lo  # the past only
            assert f.embargoed == 0
        after = tr_start[tr_start > hi]
        if len(after):
            assert after.min() > hi + embargo * BAR  # embargo: the next `embargo` bars are left out
        # purging removed exactly the rows whose windows reach into the test window, nothing else
        others = np.setdiff1d(np.arange(len(close_ts)), f.test)
        if scheme == "walk-forward":
            others = others[close_ts[others] < lo]
        reach = (close_ts[others] <= hi) & (end_ts[others] >= lo)
        assert f.purged == int(reach.sum())
        emb = ~reach & (close_ts[others] > hi) & (close_ts[others] <= hi + embargo * BAR)
        assert f.embargoed == int(emb.sum())
        assert len(f.train) == len(others) - f.purged - f.embargoed


def test_purging_by_hand() -> None:
    # 10 bars, one market, horizon 2, 1 fold (walk-forward: 2 blocks; test = bars 5..9 of the 10 labelled)
    close_ts = np.arange(10, dtype=np.int64)
    end_ts = close_ts + 2
    (f,) = folds(close_ts, end_ts, 1)
    np.testing.assert_array_equal(f.test, [5, 6, 7, 8, 9])
    np.testing.assert_array_equal(f.train, [0, 1, 2])  # rows 3 and 4 read bars 5 and 6: purged
    assert f.purged == 2


def test_embargo_by_hand() -> None:
    close_ts = np.arange(12, dtype=np.int64)
    end_ts = close_ts + 1
    f = folds(close_ts, end_ts, 3, embargo=2, scheme="kfold")[0]  # test bars 0..3
    np.testing.assert_array_equal(f.test, [0, 1, 2, 3])
    np.testing.assert_array_equal(f.train, [6, 7, 8, 9, 10, 11])  # 4 and 5 embargoed
    assert (f.purged, f.embargoed) == (0, 2)
    g = folds(close_ts, end_ts, 3, embargo=2, scheme="kfold")[1]  # test bars 4..7
    np.testing.assert_array_equal(g.train, [0, 1, 2, 10, 11])  # 3 purged (reads bar 4), 8 and 9 embargoed
    assert (g.purged, g.embargoed) == (1, 2)


def test_bad_requests_are_config_errors() -> None:
    close_ts = np.arange(10, dtype=np.int64)
    with pytest.raises(ConfigError, match="folds"):
        folds(close_ts, close_ts + 1, 0)
    with pytest.raises(ConfigError, match="embargo"):
        folds(close_ts, close_ts + 1, 2, embargo=-1)
    with pytest.raises(ConfigError, match="distinct bar times"):
        folds(close_ts[:3], close_ts[:3] + 1, 5)
    with pytest.raises(ConfigError, match="training rows"):
        folds(close_ts, close_ts + 9, 2, min_train=1)  # every earlier label reaches into every test window
    with pytest.raises(ConfigError, match="labelled rows"):
        folds(close_ts, close_ts - 1, 2)
