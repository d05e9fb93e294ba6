"""The compiled RiskOperator gives the same bits as the numpy-per-round operator it replaced, for any batching.

``RoundsRiskOperator`` below is that operator, kept verbatim as the reference: each round of ``_rounds``
advances many keys by one bar with numpy over their ring buffers.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from engine import libm
from engine.candles import CandleAggregator
from engine.keyed import KeyedArrayOperator, SlotMap
from engine.risk import RiskOperator
from engine.risk import measures as m
from engine.risk.operator import YEAR_NS, level_label
from engine.risk.score import COMPONENTS, check_scales, check_weights, score
from engine.sources.synthetic import synthetic_trades
from schemas.batches import CandleBatch, FeatureBatch
from schemas.errors import ConfigError
from tests.risk.data import interleaved


def _rounds(slots: np.ndarray) -> list[np.ndarray]:
    """Split row indices into rounds where each slot appears at most once, preserving per-slot order."""
    n = len(slots)
    if n == 0:
        return []
    order = np.argsort(slots, kind="stable")
    sorted_slots = slots[order]
    starts = np.flatnonzero(np.r_[True, sorted_slots[1:] != sorted_slots[:-1]])
    if len(starts) == n:
        return [np.arange(n)]
    group_start = np.repeat(starts, np.diff(np.r_[starts, n]))
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n) - group_start
    if rank.max() == 0:
        return [np.arange(n)]
    by_rank = np.argsort(rank, kind="stable")
    bounds = np.flatnonzero(np.diff(rank[by_rank])) + 1
    return np.split(by_rank, bounds)


class RoundsRiskOperator(KeyedArrayOperator):
    """The reference: RiskOperator as it was before it was compiled (numpy per round of keys)."""

    name = "risk"
    version = "1"

    def __init__(self, window: int = 100, atr_window: int = 14, stop_atr: float = 2.0,
                 history: int | None = None, levels: tuple[float, ...] = (0.95, 0.99), annualise: bool = False,
                 weights: dict[str, float] | None = None, scales: dict[str, float] | None = None) -> None:
        self.window = m.check_window(window, 2)
        self.atr_window = m.check_window(atr_window, 1, "atr_window")
        self.history = m.check_window(window if history is None else history, 1, "history")
        m.atr_stop_distance(1.0, stop_atr)
        self.stop_atr = float(stop_atr)
        if not levels:
            raise ConfigError("risk: levels must hold at least one confidence level, e.g. (0.95, 0.99)")
        self.levels = tuple(m.check_level(lv) for lv in levels)
        self.annualise = bool(annualise)
        self.weights = None if weights is None else check_weights(weights)
        self.scales = None if scales is None else check_scales(scales)
        self.columns = (["vol_cc", "vol_parkinson", "atr", "stop_distance"]
                        + [f"{kind}_{level_label(lv)}" for lv in self.levels for kind in ("var", "cvar")]
                        + ["drawdown", "vol_percentile", "risk_score"] + [f"risk_{c}" for c in COMPONENTS])
        self.col = {c: i for i, c in enumerate(self.columns)}
        self.keys = SlotMap()
        self.capacity = 0
        self.s: dict[str, np.ndarray] = {}
        self._grow(8)

    def _grow(self, capacity: int) -> None:
        w = self.window
        rings = {"ret": (w,), "hl": (w,), "close": (w,), "tr": (self.atr_window,), "vol": (self.history,),
                 "prev_close": ()}
        counters = ("n_bar", "n_ret", "n_vol")
        self.grow_state({**{k: (t, np.float64, np.nan) for k, t in rings.items()},
                         **{k: ((), np.int64, 0) for k in counters}}, capacity)

    def _push(self, rings: dict[str, np.ndarray], count: str, slots: np.ndarray) -> np.ndarray:
        n = self.s[count][slots]
        for ring, values in rings.items():
            buf = self.s[ring]
            buf[slots, n % buf.shape[1]] = values
        self.s[count][slots] = n + 1
        return n + 1

    def _view(self, ring: str, slots: np.ndarray, n: np.ndarray) -> np.ndarray:
        size = self.s[ring].shape[1]
        order = (n[:, None] + np.arange(size)[None, :]) % size
        return np.take_along_axis(self.s[ring][slots], order, axis=1)

    def _step(self, slots: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray,
              scale: np.ndarray) -> np.ndarray:
        s, col = self.s, self.col
        out = np.full((len(slots), len(self.columns)), np.nan)
        prev = s["prev_close"][slots]
        s["prev_close"][slots] = close
        n_bar = self._push({"hl": m.parkinson_term(high, low), "close": close}, "n_bar", slots)
        has = np.flatnonzero(~np.isnan(prev))
        if len(has):
            p = prev[has]
            self._push({"ret": libm.log(close[has] / p), "tr": m.true_range_from(high[has], low[has], p)},
                       "n_ret", slots[has])
        n_ret = s["n_ret"][slots]

        full = np.flatnonzero(n_bar >= self.window)
        if len(full):
            sub, n = slots[full], n_bar[full]
            out[full, col["vol_parkinson"]] = m.parkinson_of(self._view("hl", sub, n)) * scale[full]
            out[full, col["drawdown"]] = m.drawdown_of(self._view("close", sub, n))
        ready = np.flatnonzero(n_ret >= self.atr_window)
        if len(ready):
            atr = self._view("tr", slots[ready], n_ret[ready]).mean(axis=1)
            out[ready, col["atr"]] = atr
            out[ready, col["stop_distance"]] = m.atr_stop_distance(atr, self.stop_atr)
        ready = np.flatnonzero(n_ret >= self.window)
        if len(ready):
            sub = slots[ready]
            rets = self._view("ret", sub, n_ret[ready])
            vol = m.volatility_of(rets) * scale[ready]
            out[ready, col["vol_cc"]] = vol
            for lv in self.levels:
                var, cvar = m.var_cvar_of(rets, lv)
                out[ready, col[f"var_{level_label(lv)}"]] = var
                out[ready, col[f"cvar_{level_label(lv)}"]] = cvar
            n_vol = self._push({"vol": vol}, "n_vol", sub)
            hist = np.flatnonzero(n_vol >= self.history)
            if len(hist):
                out[ready[hist], col["vol_percentile"]] = m.percentile_rank_of(
                    self._view("vol", sub[hist], n_vol[hist]))
        worst = f"var_{level_label(max(self.levels))}"
        result = score(out[:, col["vol_percentile"]], out[:, col[worst]], out[:, col["drawdown"]],
                       out[:, col["stop_distance"]] / close, self.weights, self.scales)
        out[:, col["risk_score"]] = result.score
        for c in COMPONENTS:
            out[:, col[f"risk_{c}"]] = result.components[c]
        return out

    def update(self, batch: FeatureBatch) -> FeatureBatch:
        c = batch.candles
        extra = np.full((len(c), len(self.columns)), np.nan)
        if len(c):
            keys, inverse, slots = self.key_slots(c.markets, c.market, c.tf)
            scale = np.sqrt(YEAR_NS / c.tf.astype(np.float64)) if self.annualise else np.ones(len(c))
            live = np.flatnonzero(~c.gap)
            for part in _rounds(slots[live]):
                rows = live[part]
                extra[rows] = self._step(slots[rows], c.high[rows], c.low[rows], c.close[rows], scale[rows])
        return FeatureBatch(c, batch.names + self.columns, np.hstack([batch.values, extra]), batch.events)


def synthetic_candles(timeframes: list[str], gaps: str = "skip") -> CandleBatch:
    """Candles of 12 synthetic markets (busy to sparse), as the candle stage closes them, in stream order."""
    trades = synthetic_trades(n_markets=12, n_trades=60_000, seed=3, mean_rate_per_s=2.0)
    agg = CandleAggregator(timeframes, gaps=gaps)
    parts = [agg.update(trades.slice(i, i + 5000)) for i in range(0, len(trades), 5000)]
    return CandleBatch.concat([p for p in parts if len(p)])


def ticked(c: CandleBatch) -> CandleBatch:
    """Prices rounded to a coarse tick, so closes repeat: zero returns, zero VaR (-0.0) and flat windows."""
    tick = 10.0 ** np.floor(np.log10(c.close)) * 1e-2
    prices = {f: np.round(getattr(c, f) / tick) * tick for f in ("open", "high", "low", "close")}
    return dataclasses.replace(c, **prices)


@pytest.fixture(scope="module")
def sources() -> dict[str, CandleBatch]:
    return {"synthetic": synthetic_candles(["1m"]), "ticked": ticked(synthetic_candles(["1m"])),
            "two-timeframes-flagged-gaps": synthetic_candles(["1m", "5m"], gaps="flag"),
            "freqtrade": interleaved(limit=600)}


SETTINGS = {
    "default": {},
    "tuned": {"window": 20, "atr_window": 5, "stop_atr": 1.5, "history": 30, "levels": (0.9, 0.975, 0.99),
              "annualise": True, "weights": {"volatility": 0.1, "var": 0.5, "drawdown": 0.3, "stop": 0.1},
              "scales": {"var": 0.01, "drawdown": 0.05, "stop": 0.02}},
    "short-windows": {"window": 5, "atr_window": 3, "history": 3, "levels": (0.8,)},
    "long-windows": {"window": 150, "history": 140, "levels": (0.99, 0.95)},
}


def features(c: CandleBatch) -> FeatureBatch:
    return FeatureBatch(c, ["upstream"], c.close[:, None] * 2.0)


def run(op, candles: CandleBatch, size: int) -> np.ndarray:
    return np.vstack([op.update(features(candles.take(slice(i, i + size)))).values
                      for i in range(0, len(candles), size)])


def assert_same_bits(got: np.ndarray, want: np.ndarray) -> None:
    assert np.array_equal(got, want, equal_nan=True)
    zeros = want == 0
    assert np.array_equal(np.signbit(got[zeros]), np.signbit(want[zeros]))  # -0.0 VaR stays -0.0


def read_only(c: CandleBatch) -> CandleBatch:
    """A copy whose columns are read-only, as a Ray actor receives them."""
    changes = {}
    for f in dataclasses.fields(c):
        value = getattr(c, f.name)
        if isinstance(value, np.ndarray):
            value = value.copy()
            value.setflags(write=False)
            changes[f.name] = value
    return dataclasses.replace(c, **changes)


@pytest.mark.parametrize("setting", SETTINGS)
def test_equals_the_rounds_operator_for_any_batching(sources, setting) -> None:
    kwargs = SETTINGS[setting]
    for name, candles in sources.items():
        want = RoundsRiskOperator(**kwargs).update(features(candles)).values
        assert np.isfinite(want[:, -5]).any(), name  # the windows fill: scores are compared, not just NaNs
        for size in (len(candles), 800, 7):
            assert_same_bits(run(RiskOperator(**kwargs), candles, size), want)


def test_row_by_row_read_only_and_restored_equal_the_rounds_operator(sources) -> None:
    candles = sources["two-timeframes-flagged-gaps"].take(slice(0, 3000))
    assert candles.gap.any() and len(np.unique(candles.tf)) == 2
    kwargs = SETTINGS["tuned"]
    want = RoundsRiskOperator(**kwargs).update(features(candles)).values
    assert_same_bits(run(RiskOperator(**kwargs), candles, 1), want)
    assert_same_bits(run(RiskOperator(**kwargs), read_only(candles), 333), want)
    op, cut = RiskOperator(**kwargs), 1700
    head = run(op, candles.take(slice(0, cut)), 500)
    fresh = RiskOperator()
    fresh.restore(op.snapshot())
    tail = run(fresh, candles.take(slice(cut, len(candles))), 500)
    assert_same_bits(np.vstack([head, tail]), want)
