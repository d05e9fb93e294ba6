"""Keyed streaming risk operator: per (market, timeframe) ring buffers feed the batch measures' kernels.

Each round of ``engine.keyed.rounds`` advances many keys by one bar in one vectorised step; the
values equal ``engine.risk.measures`` run over each key's gap-free bar series. Gap bars are
skipped (their rows get NaN) because a filled-in flat bar would fake a zero return.
"""

from __future__ import annotations

import numpy as np

from engine.keyed import KeyedArrayOperator, SlotMap, rounds
from engine.risk import measures as m
from engine.risk.score import COMPONENTS, check_scales, check_weights, score
from schemas.batches import FeatureBatch
from schemas.errors import ConfigError

YEAR_NS = 365 * 86400 * 1_000_000_000  # crypto trades every day, so a year is 365 full days


def level_label(level: float) -> str:
    """0.95 -> "95", 0.975 -> "97.5" (column suffix)."""
    return f"{level * 100:g}"


class RiskOperator(KeyedArrayOperator):
    """Adds volatility, VaR/CVaR, drawdown, ATR stop and a 0..100 risk score to every closed bar."""

    name = "risk"
    version = "1"

    def __init__(self, window: int = 100, atr_window: int = 14, stop_atr: float = 2.0,
                 history: int | None = None, levels: tuple[float, ...] = (0.95, 0.99), annualise: bool = False,
                 weights: dict[str, float] | None = None, scales: dict[str, float] | None = None) -> None:
        self.window = m.check_window(window, 2)
        self.atr_window = m.check_window(atr_window, 1, "atr_window")
        self.history = m.check_window(window if history is None else history, 1, "history")
        m.atr_stop_distance(1.0, stop_atr)  # validates the multiple
        self.stop_atr = float(stop_atr)
        if not levels:
            raise ConfigError("risk: levels must hold at least one confidence level, e.g. (0.95, 0.99)")
        self.levels = tuple(m.check_level(lv) for lv in levels)
        if len({level_label(lv) for lv in self.levels}) != len(self.levels):
            raise ConfigError(f"risk: levels must be distinct, got {levels!r}")
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

    def settings(self) -> dict:
        """Constructor arguments, enough to rebuild an identical empty operator."""
        return {"window": self.window, "atr_window": self.atr_window, "stop_atr": self.stop_atr,
                "history": self.history, "levels": self.levels, "annualise": self.annualise,
                "weights": self.weights, "scales": self.scales}

    def _grow(self, capacity: int) -> None:
        w = self.window
        rings = {"ret": (w,), "hl": (w,), "close": (w,), "tr": (self.atr_window,), "vol": (self.history,),
                 "prev_close": ()}
        counters = ("n_bar", "n_ret", "n_vol")
        self.grow_state({**{k: (t, np.float64, np.nan) for k, t in rings.items()},
                         **{k: ((), np.int64, 0) for k in counters}}, capacity)

    def _push(self, rings: dict[str, np.ndarray], count: str, slots: np.ndarray) -> np.ndarray:
        """Append one value per slot to each ring sharing counter ``count``; return the new counts."""
        n = self.s[count][slots]
        for ring, values in rings.items():
            buf = self.s[ring]
            buf[slots, n % buf.shape[1]] = values
        self.s[count][slots] = n + 1
        return n + 1

    def _view(self, ring: str, slots: np.ndarray, n: np.ndarray) -> np.ndarray:
        """Each slot's ring oldest first, so reductions sum in the same order as the batch form."""
        size = self.s[ring].shape[1]
        order = (n[:, None] + np.arange(size)[None, :]) % size
        return np.take_along_axis(self.s[ring][slots], order, axis=1)

    def _step(self, slots: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray,
              scale: np.ndarray) -> np.ndarray:
        """Advance each slot by one bar; return the risk columns for these bars."""
        s, col = self.s, self.col
        out = np.full((len(slots), len(self.columns)), np.nan)
        prev = s["prev_close"][slots]
        s["prev_close"][slots] = close
        n_bar = self._push({"hl": m.parkinson_term(high, low), "close": close}, "n_bar", slots)
        has = np.flatnonzero(~np.isnan(prev))
        if len(has):
            p = prev[has]
            self._push({"ret": np.log(close[has] / p), "tr": m.true_range_from(high[has], low[has], p)},
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
        """Append the risk columns to a feature batch (rows of any keys, each key in time order)."""
        c = batch.candles
        extra = np.full((len(c), len(self.columns)), np.nan)
        if len(c):
            keys, inverse, slots = self.key_slots(c.markets, c.market, c.tf)
            scale = np.sqrt(YEAR_NS / c.tf.astype(np.float64)) if self.annualise else np.ones(len(c))
            live = np.flatnonzero(~c.gap)
            for part in rounds(slots[live]):
                rows = live[part]
                extra[rows] = self._step(slots[rows], c.high[rows], c.low[rows], c.close[rows], scale[rows])
        return FeatureBatch(c, batch.names + self.columns, np.hstack([batch.values, extra]), batch.events)

    def evict(self, key: tuple[str, int]) -> None:
        """Drop one (market, timeframe_ns) key's state explicitly."""
        slot = self.keys.release(key)
        if slot is not None:
            for name, arr in self.s.items():
                arr[slot] = 0 if name.startswith("n_") else np.nan

    @property
    def initialized(self) -> bool:
        """True once any key has seen bars."""
        return len(self.keys) > 0
