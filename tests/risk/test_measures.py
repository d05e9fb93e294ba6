"""Each batch risk measure against an independent pandas/numpy/loop reference on real returns."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from engine.risk import measures as m
from schemas.errors import ConfigError
from tests.risk.data import MARKETS, bars

WINDOW = 60


@pytest.fixture(scope="module", params=MARKETS)
def series(request):
    return bars(request.param)


def ref_returns(close: np.ndarray) -> pd.Series:
    c = pd.Series(close)
    return np.log(c).diff()


def test_log_returns(series) -> None:
    got = m.log_returns(series.close)
    assert math.isnan(got[0])
    np.testing.assert_allclose(got[1:], ref_returns(series.close).to_numpy()[1:], rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("bars_per_year", [None, 105120.0])
def test_close_to_close_volatility(series, bars_per_year) -> None:
    r = ref_returns(series.close)
    ref = r.rolling(WINDOW).std(ddof=1).to_numpy() * (1.0 if bars_per_year is None else math.sqrt(bars_per_year))
    got = m.rolling_volatility(m.log_returns(series.close), WINDOW, bars_per_year)
    assert np.isnan(got[:WINDOW]).all() and not np.isnan(got[WINDOW:]).any()
    np.testing.assert_allclose(got, ref, rtol=1e-8, equal_nan=True)


def test_parkinson_volatility(series) -> None:
    n = len(series.close)
    ref = np.full(n, np.nan)
    for i in range(WINDOW - 1, n):
        span = slice(i - WINDOW + 1, i + 1)
        hl = [math.log(h / lo) ** 2 for h, lo in zip(series.high[span], series.low[span])]
        ref[i] = math.sqrt(sum(hl) / len(hl) / (4 * math.log(2)))
    got = m.parkinson_volatility(series.high, series.low, WINDOW)
    np.testing.assert_allclose(got, ref, rtol=1e-10, equal_nan=True)
    np.testing.assert_allclose(m.parkinson_volatility(series.high, series.low, WINDOW, 4.0), 2 * ref,
                               rtol=1e-10, equal_nan=True)


def test_average_true_range_and_stop(series) -> None:
    df = pd.DataFrame({"h": series.high, "l": series.low, "c": series.close})
    prev = df["c"].shift(1)
    tr = pd.concat([df["h"] - df["l"], (df["h"] - prev).abs(), (df["l"] - prev).abs()], axis=1).max(axis=1,
                                                                                                   skipna=False)
    ref = tr.rolling(14).mean().to_numpy()
    got = m.average_true_range(series.high, series.low, series.close, 14)
    np.testing.assert_allclose(got, ref, rtol=1e-9, equal_nan=True)
    assert np.isnan(got[:14]).all() and not np.isnan(got[14:]).any()
    np.testing.assert_allclose(m.atr_stop_distance(got, 2.5), 2.5 * ref, rtol=1e-9, equal_nan=True)


def test_position_size() -> None:
    stops = np.array([0.5, 1.0, 2.0, np.nan])
    prices = np.array([100.0, 100.0, 100.0, 100.0])
    got = m.position_size(10_000.0, 0.01, stops)
    np.testing.assert_allclose(got, [200.0, 100.0, 50.0, np.nan])
    capped = m.position_size(10_000.0, 0.01, stops, max_notional=15_000.0, price=prices)
    ref = [min(10_000.0 * 0.01 / s, 15_000.0 / p) if not math.isnan(s) else math.nan for s, p in zip(stops, prices)]
    np.testing.assert_allclose(capped, ref)
    # the stop-out loss equals the risked amount when no cap binds
    assert float(m.position_size(25_000.0, 0.02, 3.0)) * 3.0 == pytest.approx(500.0)


def ref_var_cvar(sample: np.ndarray, level: float) -> tuple[float, float]:
    """Type-7 quantile by hand, then the mean of the tail at or below it."""
    xs = sorted(sample)
    h = (len(xs) - 1) * (1 - level)
    lo = math.floor(h)
    q = xs[lo] + (h - lo) * (xs[min(lo + 1, len(xs) - 1)] - xs[lo])
    tail = [x for x in xs if x <= q]
    return -q, -sum(tail) / len(tail)


@pytest.mark.parametrize("level", [0.95, 0.99])
def test_rolling_var_cvar(series, level) -> None:
    window = 200
    r = m.log_returns(series.close)
    var, cvar = m.rolling_var_cvar(r, window, level)
    ref_var = pd.Series(r).rolling(window).quantile(1 - level, interpolation="linear").to_numpy()
    np.testing.assert_allclose(var, -ref_var, rtol=1e-9, atol=1e-15, equal_nan=True)
    assert np.isnan(var[:window]).all() and not np.isnan(var[window:]).any()
    for i in range(window, len(r), 97):
        v, cv = ref_var_cvar(r[i - window + 1:i + 1], level)
        assert var[i] == pytest.approx(v, rel=1e-12, abs=1e-15)
        assert cvar[i] == pytest.approx(cv, rel=1e-12, abs=1e-15)
    ok = ~np.isnan(var)
    assert (cvar[ok] >= var[ok] - 1e-15).all()  # shortfall is at least the VaR loss


def test_var_cvar_single_sample(series) -> None:
    r = m.log_returns(series.close)
    for level in (0.95, 0.99):
        v, cv = m.var_cvar(r, level)
        assert v == pytest.approx(-np.quantile(r[1:], 1 - level), rel=1e-12)
        assert (v, cv) == pytest.approx(ref_var_cvar(r[1:], level), rel=1e-12)
    assert m.var_cvar(r, 0.99)[0] >= m.var_cvar(r, 0.95)[0]


def ref_max_drawdown(p) -> tuple[float, int, int]:
    best, peak_i, out = p[0], 0, (0.0, 0, 0)
    for i, x in enumerate(p):
        if x > best:
            best, peak_i = x, i
        dd = 1 - x / best
        if dd > out[0]:
            out = (dd, peak_i, i)
    return out


def test_max_drawdown(series) -> None:
    got = m.max_drawdown(series.close)
    depth, peak, trough = ref_max_drawdown(list(series.close))
    assert got.depth == pytest.approx(depth, rel=1e-12)
    assert (got.peak, got.trough) == (peak, trough)
    assert series.close[peak] == series.close[: trough + 1].max()
    equity = np.array([100.0, 120.0, 90.0, 130.0, 65.0, 70.0])
    assert m.max_drawdown(equity) == m.Drawdown(0.5, 3, 4)
    assert m.max_drawdown(np.array([1.0, 2.0, 3.0])) == m.Drawdown(0.0, 0, 0)


def test_rolling_drawdown_and_percentile_rank(series) -> None:
    c = series.close
    got = m.rolling_drawdown(c, WINDOW)
    ref = 1 - pd.Series(c) / pd.Series(c).rolling(WINDOW).max()
    np.testing.assert_allclose(got, ref.to_numpy(), rtol=1e-12, atol=1e-15, equal_nan=True)
    x = m.rolling_volatility(m.log_returns(c), 20)
    rank = m.rolling_percentile_rank(x, 50)
    for i in range(0, len(x), 53):
        w = x[max(0, i - 49):i + 1]
        expect = np.nan if len(w) < 50 or np.isnan(w).any() else sum(v <= x[i] for v in w) / 50
        assert rank[i] == pytest.approx(expect, nan_ok=True)


def test_correlation_matrix() -> None:
    series = {mk: (bars(mk).ts, bars(mk).close) for mk in MARKETS}
    ts, names, rets = m.aligned_returns(series)
    frame = pd.DataFrame({mk: pd.Series(c, index=t) for mk, (t, c) in series.items()}).dropna()
    ref_rets = np.log(frame).diff().iloc[1:]
    assert names == list(MARKETS)
    np.testing.assert_array_equal(ts, ref_rets.index.to_numpy())
    np.testing.assert_allclose(rets, ref_rets.to_numpy(), rtol=1e-9, atol=1e-15)
    corr = m.correlation_matrix(rets)
    np.testing.assert_allclose(corr, ref_rets.corr().to_numpy(), rtol=1e-9)
    np.testing.assert_allclose(np.diag(corr), 1.0)
    with_nan = rets.copy()
    with_nan[5, 1] = np.nan
    np.testing.assert_allclose(m.correlation_matrix(with_nan),
                               pd.DataFrame(np.delete(rets, 5, axis=0)).corr().to_numpy(), rtol=1e-9)


@pytest.mark.parametrize("call", [
    lambda: m.rolling_volatility(np.ones(5), 1),
    lambda: m.rolling_volatility(np.ones(5), 2.5),
    lambda: m.parkinson_volatility(np.ones(5), np.ones(5), 0),
    lambda: m.rolling_volatility(np.ones(5), 3, bars_per_year=-1.0),
    lambda: m.rolling_var_cvar(np.ones(5), 3, 1.0),
    lambda: m.rolling_var_cvar(np.ones(5), 3, 95),
    lambda: m.var_cvar(np.ones(5), 0.0),
    lambda: m.var_cvar(np.full(5, np.nan), 0.95),
    lambda: m.atr_stop_distance(np.ones(3), 0.0),
    lambda: m.position_size(1000.0, 0.0, 1.0),
    lambda: m.position_size(1000.0, 1.5, 1.0),
    lambda: m.position_size(-1.0, 0.01, 1.0),
    lambda: m.position_size(1000.0, 0.01, 0.0),
    lambda: m.position_size(1000.0, 0.01, 1.0, max_notional=10.0),
    lambda: m.max_drawdown(np.array([])),
    lambda: m.correlation_matrix(np.ones(5)),
])
def test_bad_arguments_raise_config_error(call) -> None:
    with pytest.raises(ConfigError):
        call()
