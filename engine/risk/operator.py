"""Keyed streaming risk operator: per (market, timeframe) windows, advanced row by row by a compiled kernel.

The values equal ``engine.risk.measures`` run over each key's gap-free bar series, bit for bit
(``engine.risk.kernel`` says how). Gap bars are skipped (their rows get NaN) because a filled-in flat
bar would fake a zero return.
"""

from __future__ import annotations

import numpy as np

from engine import libm
from engine.keyed import KeyedArrayOperator, SlotMap
from engine.risk import measures as m
from engine.risk.score import COMPONENTS, DEFAULT_SCALES, DEFAULT_WEIGHTS, check_scales, check_weights
from schemas.batches import FeatureBatch
from schemas.errors import ConfigError

YEAR_NS = 365 * 86400 * 1_000_000_000  # crypto trades every day, so a year is 365 full days


def level_label(level: float) -> str:
    """0.95 -> "95", 0.975 -> "97.5" (column suffix)."""
    return f"{level * 100:g}"


class RiskOperator(KeyedArrayOperator):
    """Adds volatility, VaR/CVaR, drawdown, ATR stop and a 0..100 risk score to every closed bar."""

    packed = True  # the kernel takes the state as one record array
    name = "risk"
    version = "2"

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
        self._kernel_args = self._kernel_settings()
        self.keys = SlotMap()
        self.capacity = 0
        self.s: dict[str, np.ndarray] = {}
        self._grow(8)

    @property
    def ready_after(self) -> int:
        """Real bars of a key before its first risk score: ``window`` returns for the volatility, then
        ``history`` volatilities for its percentile (signals fire from that bar on)."""
        return self.window + self.history - 1

    def settings(self) -> dict:
        """Constructor arguments, enough to rebuild an identical empty operator."""
        return {"window": self.window, "atr_window": self.atr_window, "stop_atr": self.stop_atr,
                "history": self.history, "levels": self.levels, "annualise": self.annualise,
                "weights": self.weights, "scales": self.scales}

    def _grow(self, capacity: int) -> None:
        # rings hold their window twice over (see engine.risk.kernel); ret_sorted is the return window sorted
        w = self.window
        rings = {"ret": 2 * w, "ret_sorted": w, "hl": 2 * w, "close": 2 * w, "tr": 2 * self.atr_window,
                 "vol": 2 * self.history}
        self.grow_state({"prev_close": ((), np.float64, np.nan),
                         **{k: ((size,), np.float64, np.nan) for k, size in rings.items()},
                         **{k: ((), np.int64, 0) for k in ("n_bar", "n_ret", "n_vol")}}, capacity)

    def _kernel_settings(self) -> tuple:
        """The settings as the kernel takes them (see ``engine.risk.kernel.risk_rows``)."""
        w = check_weights(DEFAULT_WEIGHTS if self.weights is None else self.weights)
        s = check_scales(DEFAULT_SCALES if self.scales is None else self.scales)
        return (np.array([1.0 - lv for lv in self.levels]), self.levels.index(max(self.levels)), self.stop_atr,
                self.annualise, float(YEAR_NS), float(m.PARKINSON_DENOM),
                np.array([100.0 * w[c] for c in COMPONENTS]), np.array([s["var"], s["drawdown"], s["stop"]]))

    def _previous_closes(self, c) -> tuple[np.ndarray, np.ndarray]:
        """Each row's slot and its key's previous close (NaN for gap rows and a key's first bar); advances the
        keys' last closes."""
        from engine.risk.kernel import previous_closes

        n = len(c)
        slots, prev = np.empty(n, np.int64), np.empty(n)
        tf0 = int(c.tf[0])
        table, _ = self.keys.table(c.markets, tf0)
        if not previous_closes(table, tf0, c.market, c.tf, slots, c.close, c.gap, self.rows, prev):
            slots = self.key_slots(c.markets, c.market, c.tf)[2]  # a new key or a second timeframe
            previous_closes(np.empty(0, np.int64), tf0, c.market, c.tf, slots, c.close, c.gap, self.rows, prev)
        return slots, prev

    @staticmethod
    def _logs(c, prev: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """ln(close / previous close) and ln(high / low)^2 per row, as the batch measures take them
        (NaN on gap rows, which are left out so they raise no warnings)."""
        if not c.gap.any():
            return libm.log(c.close / prev), m.parkinson_term(c.high, c.low)
        live = np.flatnonzero(~c.gap)
        ret, hl = np.full(len(c), np.nan), np.full(len(c), np.nan)
        ret[live] = libm.log(c.close[live] / prev[live])
        hl[live] = m.parkinson_term(c.high[live], c.low[live])
        return ret, hl

    def update(self, batch: FeatureBatch) -> FeatureBatch:
        """Append the risk columns to a feature batch (rows of any keys, each key in time order)."""
        c = batch.candles
        out = np.empty((len(c), batch.values.shape[1] + len(self.columns)))
        if len(c):
            from engine.risk.kernel import risk_rows

            slots, prev = self._previous_closes(c)
            ret, hl = self._logs(c, prev)
            risk_rows(slots, c.tf, c.high, c.low, c.close, c.gap, prev, ret, hl, batch.values, out, self.rows,
                      *self._kernel_args)
        return FeatureBatch(c, batch.names + self.columns, out, batch.events)

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
