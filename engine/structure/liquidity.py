"""Liquidity pools (equal highs / equal lows) and their sweeps per (market, timeframe), plus the reference
levels of engine/structure/ranges.py. Runs after SwingOperator and reads its ``swing_high``/``swing_low`` columns
(the level confirmed at this bar) and ``last_swing_high``/``last_swing_low`` (the dealing range), and takes
the swing bar's open time from its ``swing_high``/``swing_low`` events (the row's own open time when the batch
carries none).

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

from engine.keyed import KeyedArrayOperator, SlotMap
from engine.structure.events import event_columns, event_order
from engine.structure.ranges import (
    DEFAULT_SESSIONS,
    PERIOD_COLUMNS,
    RANGE_COLUMNS,
    Session,
    period_spec,
    session_columns,
)
from schemas.batches import KIND_CODE, EventBatch, FeatureBatch
from schemas.errors import ConfigError

LIQUIDITY_COLUMNS = ["liquidity_high", "liquidity_low", "sweep_high", "sweep_low"]
SIDES = ("high", "low")  # index 0 / 1 of the per-side state axis
_STEP_ORDER = {"swept": 0, "evicted": 1, "grown": 2, "created": 2}
_STEPS = ("created", "grown", "swept", "evicted")  # by the kernel's codes, the order of the kind codes
_STEP_RANK = np.array([_STEP_ORDER[step] for step in _STEPS])
_KINDS = tuple(f"liquidity_{side}" for side in SIDES)
_FIRST_CODE = KIND_CODE["liquidity_high_created"]  # kind codes run side-major, then by step as in _STEPS
assert [KIND_CODE[f"{kind}_{step}"] for kind in _KINDS for step in _STEPS] == list(range(_FIRST_CODE, _FIRST_CODE + 8))
_SWING_CODES = (KIND_CODE["swing_high"], KIND_CODE["swing_low"])  # side 0 / 1
_NO_MARKS = np.empty((0, 5), np.int64)


def _events(markets: list[str], ints: np.ndarray, floats: np.ndarray) -> EventBatch:
    """Events from the kernel's event fields (already in order).

    pool_id = stable_id(market, tf, kind, ts); id = stable_id(pool_id, step, members).
    """
    m, tf, confirmed, d, step, ts, members = ints
    # meta: members, anchor, tolerance, top, bottom
    meta = np.column_stack([members.astype(np.float64), floats[1:5].T])
    return event_columns(markets, m, tf, _FIRST_CODE + d * len(_STEPS) + step, ts, confirmed, floats[0], meta, None)


def _canonical_markets(markets: list[str]) -> np.ndarray | None:
    """Per market index, the first index of its name; None when the names are distinct (the common case).

    A key is a market *name*, so rows and events must agree on one index per name."""
    if len(set(markets)) == len(markets):
        return None
    first: dict[str, int] = {}
    return np.array([first.setdefault(name, i) for i, name in enumerate(markets)], np.int32)


class LiquidityOperator(KeyedArrayOperator):
    """Keyed equal-highs/lows pools with sweeps, dealing-range position, previous day/week levels, sessions."""

    packed = True  # the kernel takes the state as one record array
    name = "liquidity"
    version = "2"

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
        self._session_array = np.array(self.session_minutes, np.int64).reshape(len(self.sessions), 2)
        self.columns = LIQUIDITY_COLUMNS + RANGE_COLUMNS + PERIOD_COLUMNS + session_columns(self.sessions)
        self.keys = SlotMap()
        self.capacity = 0
        self.s: dict[str, np.ndarray] = {}
        self._grow(8)

    def _grow(self, capacity: int) -> None:
        k = self.max_open
        # open: 1 while an anchor may still be joined or swept (int8: compiled code takes no bool sub-arrays)
        spec = {"open": ((2, k), np.int8, 0), "anchor": ((2, k), np.float64, np.nan),
                "tol": ((2, k), np.float64, np.nan), "sum": ((2, k), np.float64, 0.0),
                "count": ((2, k), np.int64, 0), "top": ((2, k), np.float64, np.nan),
                "bottom": ((2, k), np.float64, np.nan), "ts": ((2, k), np.int64, 0),
                "seq": ((2, k), np.int64, 0), "next_seq": ((), np.int64, 0),
                # derived from the anchors, refreshed when they change (engine.structure.liquidity_kernel): per
                # side the newest open pool's level, the number of slots up to the last open anchor (new anchors
                # take the lowest free slot), and the lowest high / highest low that reaches a band
                "level": ((2,), np.float64, np.nan), "span": ((2,), np.int64, 0),
                "reach_high": ((), np.float64, np.inf), "reach_low": ((), np.float64, -np.inf),
                **period_spec(len(self.sessions))}
        self.grow_state(spec, capacity)

    def _tolerance_mode(self) -> tuple[int, float, float]:
        """(mode, value, pct) for the kernel: a fixed tolerance, ATR multiples (pct where the ATR is not
        finite) or a fraction of the level."""
        from engine.structure.liquidity_kernel import TOL_ABS, TOL_ATR, TOL_PCT

        pct = float(self.tolerance_pct)
        if self.tolerance_abs is not None:
            return TOL_ABS, float(self.tolerance_abs), pct
        if self.tolerance_atr is not None:
            return TOL_ATR, float(self.tolerance_atr), pct
        return TOL_PCT, 0.0, pct

    def update(self, batch: FeatureBatch) -> FeatureBatch:
        """Advance every key by its bars in order; append the columns and the pool events these bars confirm."""
        from engine.structure.liquidity_kernel import N_FLOATS, N_INTS, liquidity_rows

        c = batch.candles
        n_in = batch.values.shape[1]
        out = np.empty((len(c), n_in + len(self.columns)))
        events = EventBatch.empty()
        if len(c):
            need = ("swing_high", "swing_low", "last_swing_high", "last_swing_low")
            missing = [n for n in need if n not in batch.names]
            if missing:
                raise ConfigError(f"LiquidityOperator needs SwingOperator's columns first; missing {missing}")
            names = batch.names
            cols = np.array([names.index(n) for n in need]
                            + [names.index(self.atr_column) if self.atr_column in names else -1], np.int64)
            canon = _canonical_markets(c.markets)
            market = c.market if canon is None else canon[c.market]
            marks = self._marks(batch, canon)
            mode, value, pct = self._tolerance_mode()

            def kernel(*convention):  # see engine.structure.kernel_buffers
                return liquidity_rows(*convention, market, c.tf, c.open_ts, c.open, c.high, c.low, c.close, c.gap,
                                      batch.values, out, cols, marks, self.rows, self._session_array, mode, value,
                                      pct)

            ints, floats, ordered = self.run_kernel(c, kernel, N_INTS, N_FLOATS)
            if ints.shape[1]:
                # within one bar of one key: by step, then side, then pool
                order = None if ordered else event_order(c.markets, ints[0], ints[1], ints[2],
                                                         _STEP_RANK[ints[4]], ints[3], ints[5])
                if order is not None:
                    ints, floats = ints[:, order], floats[:, order]
                events = _events(c.markets, ints, floats)
        else:
            out[:, :n_in] = batch.values
        return FeatureBatch(c, batch.names + self.columns, out, EventBatch.concat([batch.events, events]))

    def _marks(self, batch: FeatureBatch, canon: np.ndarray | None) -> np.ndarray:
        """SwingOperator's swing events of this batch for the kernel, one row each: (market index into the
        candles' dictionary, or -1; tf; confirmed_ts; side; ts). The swing bar's open time comes with them."""
        c, ev = batch.candles, batch.events
        at = np.flatnonzero((ev.kind == _SWING_CODES[0]) | (ev.kind == _SWING_CODES[1]))
        if not len(at):
            return _NO_MARKS
        market = ev.market[at].astype(np.int64)
        if ev.markets is not c.markets and ev.markets != c.markets:  # events of another dictionary
            index: dict[str, int] = {}
            for i, name in enumerate(c.markets):
                index.setdefault(name, i)
            market = np.array([index.get(m, -1) for m in ev.markets], np.int64)[market]
        elif canon is not None:
            market = canon[market]
        marks = np.empty((len(at), 5), np.int64)
        marks[:, 0] = market
        marks[:, 1] = ev.tf[at]
        marks[:, 2] = ev.confirmed_ts[at]
        marks[:, 3] = ev.kind[at] != _SWING_CODES[0]
        marks[:, 4] = ev.ts[at]
        return marks

    def settings(self) -> dict:
        return {"tolerance_pct": self.tolerance_pct, "tolerance_atr": self.tolerance_atr,
                "tolerance_abs": self.tolerance_abs, "atr_column": self.atr_column, "max_open": self.max_open,
                "sessions": self.sessions}
