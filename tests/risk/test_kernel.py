"""The risk kernel's building blocks give numpy's bits: sums, mean, std, quantile, VaR/CVaR, max, clip, ranks."""

from __future__ import annotations

import numpy as np
import pytest

from engine.risk import kernel as k
from engine.risk import measures as m

SIZES = list(range(1, 301)) + [511, 1000, 4097]


def bits(x) -> bytes:
    return np.asarray(x, np.float64).tobytes()


def samples(rng: np.random.Generator, n: int) -> list[np.ndarray]:
    """Mixed magnitudes (where summation order shows), log-return-like values, and ties with many zeros."""
    return [rng.standard_normal(n) * 10.0 ** rng.integers(-8, 8, n),
            rng.standard_normal(n) * 0.01,
            np.where(rng.random(n) < 0.6, 0.0, np.round(rng.standard_normal(n), 2) * 1e-3)]


def test_sum_mean_std_are_numpys() -> None:
    rng = np.random.default_rng(0)
    for n in SIZES:
        for x in samples(rng, n):
            rows = np.vstack([x, x[::-1]])  # the operator's form: one row per key, reduced along axis 1
            assert bits(k.np_sum(x, 0, n)) == bits(np.sum(x)) == bits(rows.sum(axis=1)[0]), n
            assert bits(k.np_mean(x, 0, n)) == bits(rows.mean(axis=1)[0]), n
            if n > 1:
                assert bits(k.np_std1(x, 0, n)) == bits(np.std(rows, axis=1, ddof=1)[0]), n


def test_sums_read_any_offset() -> None:
    x = np.random.default_rng(1).standard_normal(400)
    for lo in (0, 1, 7, 100):
        assert bits(k.np_sum(x, lo, 200)) == bits(np.sum(x[lo:lo + 200]))


def test_sum_of_negative_zeros_is_positive_zero_as_in_numpy() -> None:
    for n in (1, 7, 8, 9, 200):
        z = np.full(n, -0.0)
        assert bits(k.np_sum(z, 0, n)) == bits(np.sum(z)) == bits(0.0)


def test_tail_sum_is_numpys_masked_sum() -> None:
    rng = np.random.default_rng(2)
    for n in SIZES:
        for x in samples(rng, n):
            for q in (0.01, 0.05, 0.5):
                cut = np.quantile(x, q)
                ref = np.where(x <= cut, x, 0.0).sum()
                assert bits(k.np_sum(x, 0, n, k.TAIL, cut)) == bits(ref), (n, q)


# 1e-17 puts numpy's virtual index on the last value (1 - 1e-17 rounds to 1)
@pytest.mark.parametrize("level", [1e-17, 0.5, 0.9, 0.95, 0.975, 0.99, 0.999, 1 - 2 ** -50])
def test_quantile_and_var_cvar_are_numpys(level) -> None:
    rng = np.random.default_rng(3)
    for n in list(range(2, 130)) + [257]:
        xs = samples(rng, n)
        for x in xs + [rng.choice([-np.inf, -1.0, 0.0, 1.0, np.inf], n), np.r_[xs[1][:-1], np.nan]]:
            ordered, q = np.sort(x), 1.0 - level
            with np.errstate(invalid="ignore", divide="ignore"):  # infinities make NaNs
                want_q = np.quantile(x, q)
                var, cvar = m.var_cvar_of(x[None, :], level)
            assert bits(k.quantile_sorted(ordered, n, q)) == bits(want_q), (n, level)
            got = k.var_cvar(x, 0, n, ordered, q)
            np.testing.assert_array_equal(got, (var[0], cvar[0]))
            assert np.signbit(got).tolist() == [np.signbit(var[0]), np.signbit(cvar[0])]


def test_max_is_numpys() -> None:
    rng = np.random.default_rng(4)
    for n in range(1, 40):
        x = rng.standard_normal(n)
        assert k.np_max(x, 0, n) == np.max(x)
        x[rng.integers(n)] = np.nan
        assert np.isnan(k.np_max(x, 0, n))


def test_clip_and_maximum_are_numpys() -> None:
    values = np.array([-0.0, 0.0, 1.0, -1.0, 2.0, np.nan, 0.5, np.inf, -np.inf, 100.0, 101.0])
    for lo, hi in ((0.0, 1.0), (0.0, 100.0)):
        want = np.clip(values, lo, hi)
        assert bits([k.np_clip(v, lo, hi) for v in values]) == bits(want)
    for a in values:
        for b in values:
            assert bits(k.nan_max(a, b)) == bits(np.maximum(a, b))


def test_sorted_window_follows_the_ring() -> None:
    rng = np.random.default_rng(5)
    for w in (1, 2, 3, 8, 50, 100):
        values = np.r_[rng.choice([-1.0, 0.0, 1.0, 2.0, np.nan], 300), rng.standard_normal(300)]
        ordered, window = np.empty(w), []
        for v in values:
            if len(window) < w:
                k.insert_sorted(ordered, len(window), v)
            else:
                k.replace_sorted(ordered, w, window.pop(0), v)
            window.append(v)
            np.testing.assert_array_equal(ordered[:len(window)], np.sort(window))


def test_percentile_rank_is_the_measures() -> None:
    rng = np.random.default_rng(6)
    for n in (1, 5, 100):
        x = np.round(rng.standard_normal(n), 1)
        assert bits(k.percentile_rank(x, 0, n, x[-1])) == bits(m.percentile_rank_of(x[None, :]))
