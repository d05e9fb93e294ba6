"""The feature operator: model feature rows from the columns the indicator, structure and risk operators made.

It runs in the signals stage after the risk operator (live, in the shard actors) and over a whole history in
one call (``feature_frame``): one code path, so a row is the same either way. The column transforms are
vectorised over the batch; the parts that need earlier bars (lagged returns, the volume EMA, the higher
timeframes' bars closed strictly before) walk the rows in order in one compiled call over per-key state arrays.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from engine.features.spec import CONTEXT, FEATURE_NAMES, LAGS, VOLUME_SPAN, context_name
from engine.keyed import SlotMap, row_keys
from engine.operator import pack_state, unpack_state
from schemas.batches import FeatureBatch
from schemas.timeframes import parse_timeframe

_RING = max(LAGS) + 1
_INDEX = {n: i for i, n in enumerate(FEATURE_NAMES)}
_CONTEXT_IDX = np.array([_INDEX[c] for c in CONTEXT], np.int64)
_STATE_ROWS = 64  # initial state capacity (grows by doubling)


class FeatureOperator:
    """Appends the model features (``FeatureBatch.model_names`` / ``model_values``) to each batch."""

    name = "features"
    version = "1"

    def __init__(self, timeframes: tuple[str, ...] | list[str] = ("1m",)) -> None:
        tfs = sorted({parse_timeframe(t) for t in timeframes})
        self.context_tfs = np.array(tfs[1:], np.int64)  # every configured timeframe above the smallest
        self.names = list(FEATURE_NAMES) + [context_name(int(h), c) for h in self.context_tfs for c in CONTEXT]
        self.keys = SlotMap()  # (market, tf) -> lag state row
        self.markets = SlotMap()  # market -> context state row
        self._alloc(_STATE_ROWS, _STATE_ROWS)

    def _alloc(self, n_keys: int, n_markets: int) -> None:
        self.ring = np.full((n_keys, _RING), np.nan)
        self.count = np.zeros(n_keys, np.int64)
        self.vol_ema = np.full(n_keys, np.nan)
        self.context = np.full((n_markets, max(1, len(self.context_tfs)), len(CONTEXT)), np.nan)

    def _grow(self, n_keys: int, n_markets: int) -> None:
        if n_keys > len(self.count):
            k = max(n_keys, 2 * len(self.count))
            ring, count, ema = self.ring, self.count, self.vol_ema
            self.ring = np.full((k, _RING), np.nan)
            self.ring[:len(ring)] = ring
            self.count = np.zeros(k, np.int64)
            self.count[:len(count)] = count
            self.vol_ema = np.full(k, np.nan)
            self.vol_ema[:len(ema)] = ema
        if n_markets > len(self.context):
            m = max(n_markets, 2 * len(self.context))
            ctx = self.context
            self.context = np.full((m,) + ctx.shape[1:], np.nan)
            self.context[:len(ctx)] = ctx

    def update(self, batch: FeatureBatch) -> FeatureBatch:
        c = batch.candles
        n = len(c)
        out = np.full((n, len(self.names)), np.nan, np.float32)
        if n:
            base = column_features(batch)
            keys, inverse = row_keys(c.markets, c.market, c.tf)
            slots = self.keys.lookup(keys)[inverse]
            mslots = self.markets.lookup(list(c.markets))[c.market.astype(np.int64)]
            self._grow(int(slots.max()) + 1, int(mslots.max()) + 1)
            close_ts = c.open_ts + c.tf
            # at one close time the lower timeframes' rows come first: a higher timeframe's context is its bar
            # closed strictly before (as ``trend@5m`` in signal rules), whatever batches the bars arrive in
            order = np.lexsort((c.tf, close_ts))
            _walk(order, slots, mslots, c.tf.astype(np.int64), c.gap, c.close, c.volume, base, self.ring,
                  self.count, self.vol_ema, self.context, self.context_tfs, _CONTEXT_IDX, np.array(LAGS, np.int64),
                  2.0 / (VOLUME_SPAN + 1), out)
        batch.model_names = list(self.names)
        batch.model_values = out
        return batch

    def flush(self) -> None:
        return None

    def reset(self) -> None:
        self.keys, self.markets = SlotMap(), SlotMap()
        self._alloc(_STATE_ROWS, _STATE_ROWS)

    def snapshot(self) -> bytes:
        return pack_state(self, {"keys": self.keys.state(), "markets": self.markets.state(), "ring": self.ring,
                                 "count": self.count, "vol_ema": self.vol_ema, "context": self.context,
                                 "context_tfs": self.context_tfs})

    def restore(self, data: bytes) -> None:
        s = unpack_state(self, data)
        if not np.array_equal(s["context_tfs"], self.context_tfs):
            raise ValueError("feature snapshot was taken with other timeframes")
        self.keys.load(s["keys"])
        self.markets.load(s["markets"])
        self.ring, self.count, self.vol_ema, self.context = (s["ring"].copy(), s["count"].copy(),
                                                              s["vol_ema"].copy(), s["context"].copy())


def _col(batch: FeatureBatch, name: str) -> np.ndarray:
    """A column of the batch, or NaN where the pipeline did not compute it (an analysis switched off)."""
    try:
        return batch.values[:, batch.names.index(name)]
    except ValueError:
        return np.full(len(batch), np.nan)


def _inside(close: np.ndarray, top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    return ((close >= bottom) & (close <= top)).astype(np.float64)  # NaN levels compare False: 0


def column_features(batch: FeatureBatch) -> np.ndarray:
    """The features that need only this bar's columns (float64, rows x FEATURE_NAMES; the lagged ones NaN)."""
    c = batch.candles
    n = len(c)
    f = np.full((n, len(FEATURE_NAMES)), np.nan)
    close, atr = c.close, _col(batch, "atr_14")

    def put(name, v):
        f[:, _INDEX[name]] = v

    with np.errstate(divide="ignore", invalid="ignore"):
        put("range_atr", (c.high - c.low) / atr)
        put("body_atr", (c.close - c.open) / atr)
        put("upper_wick_atr", (c.high - np.maximum(c.open, c.close)) / atr)
        put("lower_wick_atr", (np.minimum(c.open, c.close) - c.low) / atr)
        put("buy_share", np.where(c.volume > 0, c.buy_volume / c.volume - 0.5, np.nan))
        put("rsi", _col(batch, "rsi_14") / 100.0 - 0.5)
        for span in (20, 50, 200):
            put(f"ema{span}_dist", close / _col(batch, f"ema_{span}") - 1.0)
        put("atr_pct", atr / close)
        for name in ("trend", "bos", "choch", "sweep_high", "sweep_low", "range_position", "zone",
                     "in_session_asia", "in_session_london", "in_session_new_york", "vol_cc", "vol_parkinson",
                     "var_95", "cvar_95", "drawdown", "vol_percentile"):
            put(name, _col(batch, name))
        put("risk_score", _col(batch, "risk_score") / 100.0)
        put("swing_high_dist", (_col(batch, "last_swing_high") - close) / atr)
        put("swing_low_dist", (close - _col(batch, "last_swing_low")) / atr)
        put("in_fvg_bull", _inside(close, _col(batch, "fvg_bull_top"), _col(batch, "fvg_bull_bottom")))
        put("in_fvg_bear", _inside(close, _col(batch, "fvg_bear_top"), _col(batch, "fvg_bear_bottom")))
        put("in_ob_bull", _inside(close, _col(batch, "ob_bull_top"), _col(batch, "ob_bull_bottom")))
        put("in_ob_bear", _inside(close, _col(batch, "ob_bear_top"), _col(batch, "ob_bear_bottom")))
        put("ob_bull_dist", (close - _col(batch, "ob_bull_top")) / atr)
        put("ob_bear_dist", (_col(batch, "ob_bear_bottom") - close) / atr)
        put("liquidity_high_dist", (_col(batch, "liquidity_high") - close) / atr)
        put("liquidity_low_dist", (close - _col(batch, "liquidity_low")) / atr)
        put("prev_day_high_dist", (_col(batch, "prev_day_high") - close) / atr)
        put("prev_day_low_dist", (close - _col(batch, "prev_day_low")) / atr)
    f[~np.isfinite(f)] = np.nan  # a zero ATR or volume gives no feature, not an infinity
    if c.gap.any():
        f[c.gap] = np.nan
    return f


@njit(cache=True)
def _walk(order, slots, mslots, tf, gap, close, volume, base, ring, count, vol_ema, context, context_tfs,
          context_idx, lags, alpha, out):
    """Rows in ``order``: the lagged features from each key's ring of earlier closes, the volume EMA, and each
    higher timeframe's last closed bar (stored when its row passes, read by later lower-timeframe rows)."""
    n_base = base.shape[1]
    n_ctx = len(context_idx)
    ring_len = ring.shape[1]
    for j in range(len(order)):
        i = order[j]
        s = slots[i]
        for k in range(n_base):
            out[i, k] = base[i, k]
        if not gap[i] and close[i] == close[i]:
            cnt = count[s]
            for li in range(len(lags)):
                lag = lags[li]
                if cnt >= lag:
                    prev = ring[s, (cnt - lag) % ring_len]
                    if prev > 0 and close[i] > 0:
                        out[i, li] = math.log(close[i] / prev)
            ring[s, cnt % ring_len] = close[i]
            count[s] = cnt + 1
            ema = vol_ema[s]
            if ema == ema and ema > 0 and volume[i] > 0:
                out[i, 7] = math.log(volume[i] / ema)
            vol_ema[s] = volume[i] if ema != ema else ema + alpha * (volume[i] - ema)
        m = mslots[i]
        for h in range(len(context_tfs)):
            if context_tfs[h] == tf[i]:  # this row is a higher timeframe's bar: it becomes the context
                for k in range(n_ctx):
                    context[m, h, k] = out[i, context_idx[k]]
            elif context_tfs[h] > tf[i]:
                for k in range(n_ctx):
                    out[i, n_base + h * n_ctx + k] = context[m, h, k]
