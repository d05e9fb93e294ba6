"""Synthetic load-test trades: seeded, well-formed, heavy-tailed, bursty and fast."""

from __future__ import annotations

import numpy as np
import pytest

from engine.sources.synthetic import DEFAULT_START_NS, synthetic_trades
from engine.validation import clean_trades
from schemas.errors import ConfigError

COLUMNS = ("market", "ts", "price", "size", "side", "trade_id")


def test_same_seed_same_trades_other_seed_other_trades():
    a, b, c = synthetic_trades(5, 20_000, 1), synthetic_trades(5, 20_000, 1), synthetic_trades(5, 20_000, 2)
    assert all(np.array_equal(getattr(a, k), getattr(b, k)) for k in COLUMNS) and a.markets == b.markets
    assert not np.array_equal(a.price, c.price)


def test_shape_names_and_validity():
    b = synthetic_trades(12, 300_000, 3, start_ns=DEFAULT_START_NS, mean_rate_per_s=500)
    assert b.markets[0] == "SYN:M000" and b.markets[-1] == "SYN:M011" and len(b) == 300_000
    assert (np.diff(b.ts) >= 0).all() and b.ts[0] >= DEFAULT_START_NS
    assert set(np.unique(b.side).tolist()) == {-1, 1}
    clean, rejects = clean_trades(b)
    assert len(clean) == len(b) and not rejects
    span_s = (b.ts[-1] - b.ts[0]) / 1e9
    assert 300_000 / span_s == pytest.approx(500, rel=0.15)  # long-run rate as asked
    for m in range(12):  # ids count each market's trades from 0
        ids = b.trade_id[b.market == m]
        assert (ids == np.arange(len(ids))).all()


def test_returns_heavy_tailed_and_arrivals_bursty():
    b = synthetic_trades(1, 200_000, 5)
    r = np.diff(np.log(b.price))
    z = (r - r.mean()) / r.std()
    assert (z ** 4).mean() > 6  # excess kurtosis well above a normal's 0
    gaps = np.diff(b.ts).astype(float)
    assert gaps.std() / gaps.mean() > 1.3  # a Poisson process would give 1
    assert np.abs(r).max() < 0.05 and (b.size > 0).all()


def test_zero_trades_and_bad_arguments():
    assert len(synthetic_trades(3, 0, 1)) == 0 and synthetic_trades(3, 0, 1).markets[2] == "SYN:M002"
    with pytest.raises(ConfigError):
        synthetic_trades(0, 10, 1)
    with pytest.raises(ConfigError):
        synthetic_trades(1, 10, 1, mean_rate_per_s=0)
