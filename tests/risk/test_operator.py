"""RiskOperator: streaming equals the batch measures per key, bar-by-bar equals one pass, snapshots resume."""

from __future__ import annotations

import numpy as np
import pytest

from engine.risk import RiskOperator
from engine.risk import measures as m
from engine.risk.score import score
from schemas.batches import FeatureBatch
from schemas.errors import ConfigError, StateError
from tests.risk.data import MARKETS, TF_5M, bars, interleaved

WINDOW, ATR_WINDOW, HISTORY, STOP_ATR = 50, 14, 80, 2.0


def features(candles) -> FeatureBatch:
    """A feature batch with one upstream column, to check it is carried through untouched."""
    return FeatureBatch(candles, ["upstream"], candles.close[:, None] * 2.0)


def make() -> RiskOperator:
    return RiskOperator(window=WINDOW, atr_window=ATR_WINDOW, stop_atr=STOP_ATR, history=HISTORY)


def expected(market: str, limit: int | None = None, annualise: bool = False) -> dict[str, np.ndarray]:
    """Every column from the batch functions over one market's series."""
    b = bars(market).take(slice(0, limit))
    per_year = 365 * 86400 / 300 if annualise else None
    r = m.log_returns(b.close)
    out = {"vol_cc": m.rolling_volatility(r, WINDOW, per_year),
           "vol_parkinson": m.parkinson_volatility(b.high, b.low, WINDOW, per_year),
           "atr": m.average_true_range(b.high, b.low, b.close, ATR_WINDOW),
           "drawdown": m.rolling_drawdown(b.close, WINDOW)}
    out["stop_distance"] = m.atr_stop_distance(out["atr"], STOP_ATR)
    for level, label in ((0.95, "95"), (0.99, "99")):
        out[f"var_{label}"], out[f"cvar_{label}"] = m.rolling_var_cvar(r, WINDOW, level)
    out["vol_percentile"] = m.rolling_percentile_rank(out["vol_cc"], HISTORY)
    s = score(out["vol_percentile"], out["var_99"], out["drawdown"], out["stop_distance"] / b.close)
    out["risk_score"] = s.score
    out.update({f"risk_{k}": v for k, v in s.components.items()})
    return out


def by_market(batch: FeatureBatch, market: str) -> np.ndarray:
    c = batch.candles
    return np.flatnonzero(np.array(c.markets)[c.market] == market)


def test_streaming_equals_batch_for_several_markets() -> None:
    op = make()
    out = op.update(features(interleaved()))
    np.testing.assert_array_equal(out.column("upstream"), out.candles.close * 2.0)
    for market in MARKETS:
        rows = by_market(out, market)
        ref = expected(market)
        assert len(rows) == len(bars(market))
        for name, values in ref.items():
            got = out.column(name)[rows]
            np.testing.assert_allclose(got, values, rtol=1e-12, atol=1e-15, equal_nan=True, err_msg=f"{market} {name}")
        score_col = out.column("risk_score")[rows]
        assert np.isnan(score_col[: WINDOW + HISTORY - 1]).all()
        assert np.isfinite(score_col[WINDOW + HISTORY - 1:]).all()
        assert ((score_col[WINDOW + HISTORY:] >= 0) & (score_col[WINDOW + HISTORY:] <= 100)).all()


def test_annualised_volatility() -> None:
    op = RiskOperator(window=WINDOW, atr_window=ATR_WINDOW, stop_atr=STOP_ATR, history=HISTORY, annualise=True)
    out = op.update(features(interleaved(MARKETS[:2], limit=600)))
    for market in MARKETS[:2]:
        rows = by_market(out, market)
        ref = expected(market, 600, annualise=True)
        for name in ("vol_cc", "vol_parkinson", "vol_percentile", "risk_score"):
            np.testing.assert_allclose(out.column(name)[rows], ref[name], rtol=1e-12, equal_nan=True)


def test_bar_by_bar_equals_one_pass() -> None:
    candles = interleaved(limit=400)
    whole = make().update(features(candles))
    op = make()
    parts = [op.update(features(candles.take(slice(i, i + 1)))) for i in range(len(candles))]
    np.testing.assert_array_equal(np.vstack([p.values for p in parts]), whole.values)
    # uneven chunks too
    op = make()
    cuts = [0, 3, 250, 251, 900, len(candles)]
    chunks = [op.update(features(candles.take(slice(a, b)))) for a, b in zip(cuts, cuts[1:])]
    np.testing.assert_array_equal(np.vstack([p.values for p in chunks]), whole.values)


def test_snapshot_restore_continues_identically() -> None:
    candles = interleaved(limit=500)
    whole = make().update(features(candles))
    cut = 1100
    op = make()
    head = op.update(features(candles.take(slice(0, cut))))
    blob = op.snapshot()
    op.update(features(candles.take(slice(cut, cut + 50))))  # state moves on; restore must undo it
    op.restore(blob)
    tail = op.update(features(candles.take(slice(cut, len(candles)))))
    np.testing.assert_array_equal(np.vstack([head.values, tail.values]), whole.values)
    fresh = make()
    fresh.restore(blob)
    np.testing.assert_array_equal(fresh.update(features(candles.take(slice(cut, len(candles))))).values, tail.values)


def test_reset_equals_fresh_and_evict() -> None:
    candles = interleaved(limit=200)
    op = make()
    first = op.update(features(candles))
    assert op.initialized
    op.reset()
    assert not op.initialized
    np.testing.assert_array_equal(op.update(features(candles)).values, first.values)
    op.evict((MARKETS[0], TF_5M))
    again = op.update(features(interleaved(MARKETS[:1], limit=200)))
    np.testing.assert_array_equal(again.values, first.values[by_market(first, MARKETS[0])])


def test_gap_bars_are_skipped() -> None:
    candles = interleaved(MARKETS[:1], limit=300)
    gapped = candles.take(np.arange(len(candles)))
    gapped.gap = gapped.gap.copy()
    gapped.gap[[100, 101]] = True
    out = make().update(features(gapped))
    assert np.isnan(out.values[[100, 101], 1:]).all()
    keep = np.flatnonzero(~gapped.gap)
    np.testing.assert_array_equal(out.values[keep], make().update(features(candles.take(keep))).values)


def test_state_is_bounded() -> None:
    op = make()
    op.update(features(interleaved(limit=300)))
    size = len(op.snapshot())
    op.update(features(interleaved(limit=900).take(slice(1200, None))))
    assert len(op.snapshot()) == size


def test_snapshot_of_other_operator_is_rejected() -> None:
    from engine.structure.swings import SwingOperator
    with pytest.raises(StateError):
        make().restore(SwingOperator().snapshot())


@pytest.mark.parametrize("kwargs", [{"window": 1}, {"window": 0}, {"atr_window": 0}, {"history": 0},
                                    {"stop_atr": 0.0}, {"levels": ()}, {"levels": (0.95, 1.0)},
                                    {"levels": (0.95, 0.95)}, {"weights": {"var": 1.0}}])
def test_bad_config(kwargs) -> None:
    with pytest.raises(ConfigError):
        RiskOperator(**kwargs)


def test_empty_batch() -> None:
    from schemas.batches import CandleBatch
    out = make().update(FeatureBatch(CandleBatch.empty(), [], np.empty((0, 0))))
    assert out.values.shape == (0, len(make().columns))


def test_follows_operator_protocol() -> None:
    from engine.operator import Operator
    op = make()
    assert isinstance(op, Operator) and op.flush() is None
