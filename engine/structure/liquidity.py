"""Liquidity pools (equal highs / equal lows) and their sweeps per (market, timeframe), plus the reference
levels of engine/structure/ranges.py. Runs after SwingOperator and reads its ``swing_high``/``swing_low`` columns
(the level confirmed at this bar) and ``last_swing_high``/``last_swing_low`` (the dealing range).

Pools, for highs (lows mirror): every confirmed swing high that does not join an open anchor becomes an
*anchor* with level ``a`` and a tolerance ``tol`` fixed at its confirmation: ``tolerance_abs`` when given,
else ``tolerance_atr`` x the ATR column at that bar when the column is present and valid, else
``tolerance_pct`` x ``a``. A later confirmed swing high with level in ``[a - tol, a + tol]`` joins the
earliest such open anchor; an anchor with two or more members is a pool whose level is the members' mean.
The anchor closes at the first bar trading at or beyond its band (high >= a + tol): a pool is then
*swept*; a lone anchor is dropped silently. At most ``max_open`` anchors per side are kept (oldest evicted).

Events ``liquidity_{high|low}_{step}``, ``ts`` = open of the anchor swing bar, price = the pool level then:
  created   the second member is confirmed (never earlier: at the close of the bar confirming that swing).
  grown     a further member is confirmed; the level is the new mean.
  swept     first bar trading at or beyond the band; ``confirmed_ts`` = that bar's close. Terminal.
  evicted   a pool dropped to keep ``max_open`` anchors. Terminal.
``meta``: members, anchor, tolerance, top, bottom (the extreme members). Ids: ``pool_id = stable_id(market,
timeframe, "liquidity_high"|"liquidity_low", ts)``, event ``id = stable_id(pool_id, step, members)``.
"""

from __future__ import annotations

import numpy as np

from engine.ids import stable_id
from engine.keyed import KeyedArrayOperator, SlotMap, rounds
from engine.structure.ranges import (
    DEFAULT_SESSIONS,
    PERIOD_COLUMNS,
    RANGE_COLUMNS,
    Session,
    advance_periods,
    dealing_range,
    period_spec,
    session_columns,
)
from schemas.batches import EventBatch, FeatureBatch
from schemas.errors import ConfigError
from schemas.records import StructureEvent
from schemas.timeframes import format_timeframe

LIQUIDITY_COLUMNS = ["liquidity_high", "liquidity_low", "sweep_high", "sweep_low"]
SIDES = ("high", "low")  # index 0 / 1 of the per-side state axis
_STEP_ORDER = {"swept": 0, "evicted": 1, "grown": 2, "created": 2}


class LiquidityOperator(KeyedArrayOperator):
    """Keyed equal-highs/lows pools with sweeps, dealing-range position, previous day/week levels, sessions."""

    name = "liquidity"
    version = "1"

    def __init__(self, tolerance_pct: float = 0.0005, tolerance_atr: float | None = None,
                 tolerance_abs: float | None = None, atr_column: str = "atr_14", max_open: int = 64,
                 sessions: tuple[Session, ...] = DEFAULT_SESSIONS) -> None:
        for label, v in (("tolerance_pct", tolerance_pct), ("tolerance_atr", tolerance_atr),
                         ("tolerance_abs", tolerance_abs)):
            if v is not None and not v >= 0:
                raise ConfigError(f"liquidity {label} must be >= 0, got {v}")
        if max_open < 1:
            raise ConfigError(f"liquidity max_open must be >= 1, got {max_open}")
        if len({s.name for s in sessions}) != len(sessions):
            raise ConfigError(f"liquidity sessions need distinct names, got {[s.name for s in sessions]}")
        self.tolerance_pct, self.tolerance_atr, self.tolerance_abs = tolerance_pct, tolerance_atr, tolerance_abs
        self.atr_column, self.max_open, self.sessions = atr_column, max_open, tuple(sessions)
        self.session_minutes = [s.minutes() for s in self.sessions]
        self.columns = LIQUIDITY_COLUMNS + RANGE_COLUMNS + PERIOD_COLUMNS + session_columns(self.sessions)
        self.keys = SlotMap()
        self.capacity = 0
        self.s: dict[str, np.ndarray] = {}
        self._grow(8)

    def _grow(self, capacity: int) -> None:
        k = self.max_open
        spec = {"open": ((2, k), bool, False), "anchor": ((2, k), np.float64, np.nan),
                "tol": ((2, k), np.float64, np.nan), "sum": ((2, k), np.float64, 0.0),
                "count": ((2, k), np.int64, 0), "top": ((2, k), np.float64, np.nan),
                "bottom": ((2, k), np.float64, np.nan), "ts": ((2, k), np.int64, 0),
                "seq": ((2, k), np.int64, 0), "next_seq": ((), np.int64, 0),
                **period_spec(len(self.sessions))}
        self.grow_state(spec, capacity)

    def _tolerance(self, level: float, atr: float) -> float:
        if self.tolerance_abs is not None:
            return self.tolerance_abs
        if self.tolerance_atr is not None and np.isfinite(atr):
            return self.tolerance_atr * atr
        return self.tolerance_pct * abs(level)

    def _event(self, out: list, key: tuple, slot: int, d: int, g: int, step: str, confirmed: int) -> None:
        s = self.s
        market, tf = key
        n, ts = int(s["count"][slot, d, g]), int(s["ts"][slot, d, g])
        kind = f"liquidity_{SIDES[d]}"
        pool_id = stable_id(market, tf, kind, ts)
        meta = {"members": float(n), "anchor": float(s["anchor"][slot, d, g]), "tolerance": float(s["tol"][slot, d, g]),
                "top": float(s["top"][slot, d, g]), "bottom": float(s["bottom"][slot, d, g])}
        ev = StructureEvent(id=stable_id(pool_id, step, n), market=market, timeframe=tf, kind=f"{kind}_{step}",
                            ts=ts, confirmed_ts=confirmed, price=float(s["sum"][slot, d, g] / n), meta=meta)
        out.append(((confirmed, market, tf, _STEP_ORDER[step], d, ts), ev))

    def _sweeps(self, out: list, keys: list, slots: np.ndarray, high: np.ndarray, low: np.ndarray,
                close_ts: np.ndarray) -> np.ndarray:
        """Close every anchor whose band this bar reaches; events for the pools among them. Returns (rows, 2) hits."""
        s = self.s
        op, a, tol = s["open"][slots], s["anchor"][slots], s["tol"][slots]
        reach = np.stack([high[:, None] >= a[:, 0] + tol[:, 0], low[:, None] <= a[:, 1] - tol[:, 1]], axis=1)
        hit = op & reach
        pools = hit & (s["count"][slots] >= 2)
        for j, d, g in zip(*np.nonzero(pools)):
            self._event(out, keys[j], int(slots[j]), int(d), int(g), "swept", int(close_ts[j]))
        s["open"][slots] = op & ~hit
        return pools.any(axis=2)

    def _join(self, out: list, key: tuple, slot: int, d: int, level: float, ts: int, atr: float,
              confirmed: int) -> None:
        """A newly confirmed swing joins the earliest open anchor whose band holds it, or becomes an anchor."""
        s = self.s
        op = s["open"][slot, d]
        with np.errstate(invalid="ignore"):
            fits = op & (np.abs(level - s["anchor"][slot, d]) <= s["tol"][slot, d])
        if fits.any():
            g = int(np.argmin(np.where(fits, s["seq"][slot, d], np.iinfo(np.int64).max)))
            s["sum"][slot, d, g] += level
            s["count"][slot, d, g] += 1
            s["top"][slot, d, g] = max(s["top"][slot, d, g], level)
            s["bottom"][slot, d, g] = min(s["bottom"][slot, d, g], level)
            step = "created" if s["count"][slot, d, g] == 2 else "grown"
            self._event(out, key, slot, d, g, step, confirmed)
            return
        free = np.flatnonzero(~op)
        if len(free):
            g = int(free[0])
        else:  # bounded state: the oldest anchor of this side makes room
            g = int(np.argmin(s["seq"][slot, d]))
            if s["count"][slot, d, g] >= 2:
                self._event(out, key, slot, d, g, "evicted", confirmed)
        s["open"][slot, d, g], s["anchor"][slot, d, g] = True, level
        s["tol"][slot, d, g] = self._tolerance(level, atr)
        s["sum"][slot, d, g], s["count"][slot, d, g] = level, 1
        s["top"][slot, d, g] = s["bottom"][slot, d, g] = level
        s["ts"][slot, d, g], s["seq"][slot, d, g] = ts, s["next_seq"][slot]
        s["next_seq"][slot] += 1

    def _pool_levels(self, slots: np.ndarray) -> np.ndarray:
        """Level of the newest open pool per side (NaN when none)."""
        s = self.s
        pool = s["open"][slots] & (s["count"][slots] >= 2)
        seq = np.where(pool, s["seq"][slots], -1)
        newest = np.argmax(seq, axis=2)[..., None]
        level = (np.take_along_axis(s["sum"][slots], newest, 2) / np.take_along_axis(
            np.maximum(s["count"][slots], 1), newest, 2))[..., 0]
        return np.where(pool.any(axis=2), level, np.nan)

    def update(self, batch: FeatureBatch) -> FeatureBatch:
        """Advance every key by its bars in order; append the columns and the pool events these bars confirm."""
        c = batch.candles
        extra = np.full((len(c), len(self.columns)), np.nan)
        events: list = []
        if len(c):
            need = ("swing_high", "swing_low", "last_swing_high", "last_swing_low")
            missing = [n for n in need if n not in batch.names]
            if missing:
                raise ConfigError(f"LiquidityOperator needs SwingOperator's columns first; missing {missing}")
            swing = np.stack([batch.column("swing_high"), batch.column("swing_low")], axis=1)
            atr = batch.column(self.atr_column) if self.atr_column in batch.names else np.full(len(c), np.nan)
            keys, inverse, slots = self.key_slots(c.markets, c.market, c.tf)
            labels = [(m, format_timeframe(t)) for m, t in keys]
            row_label = [labels[k] for k in inverse]
            # the swing bar's own open time comes with SwingOperator's event for it
            swing_ts = {(e.market, e.timeframe, e.kind, e.confirmed_ts): e.ts for e in batch.events
                        if e.kind in ("swing_high", "swing_low")}
            close_ts, gap = c.close_ts, c.gap
            n_liq = len(LIQUIDITY_COLUMNS)
            n_rng = n_liq + len(RANGE_COLUMNS)
            for rows in rounds(slots):
                sl = slots[rows]
                real = ~gap[rows]
                extra[rows, n_rng:] = advance_periods(self.s, sl, c.open_ts[rows], c.open[rows], c.high[rows],
                                                      c.low[rows], real, self.session_minutes)
                swept = np.zeros((len(rows), 2), bool)
                live = np.flatnonzero(real)
                if len(live):
                    rk = [row_label[r] for r in rows[live]]
                    swept[live] = self._sweeps(events, rk, sl[live], c.high[rows[live]], c.low[rows[live]],
                                               close_ts[rows[live]])
                    for j, d in zip(*np.nonzero(np.isfinite(swing[rows[live]]))):
                        r = rows[live[j]]
                        market, tf = row_label[r]
                        ts = swing_ts.get((market, tf, f"swing_{SIDES[d]}", int(close_ts[r])), int(c.open_ts[r]))
                        self._join(events, row_label[r], int(slots[r]), int(d), float(swing[r, d]), ts,
                                   float(atr[r]), int(close_ts[r]))
                extra[rows, 0:2] = self._pool_levels(sl)
                extra[rows, 2:4] = swept
            extra[:, n_liq:n_rng] = dealing_range(batch.column("last_swing_high"), batch.column("last_swing_low"),
                                                  c.close)
            events.sort(key=lambda pair: pair[0])
        names = batch.names + self.columns
        new = EventBatch.from_records([e for _, e in events])
        return FeatureBatch(c, names, np.hstack([batch.values, extra]), EventBatch.concat([batch.events, new]))

    def settings(self) -> dict:
        return {"tolerance_pct": self.tolerance_pct, "tolerance_atr": self.tolerance_atr,
                "tolerance_abs": self.tolerance_abs, "atr_column": self.atr_column, "max_open": self.max_open,
                "sessions": self.sessions}

