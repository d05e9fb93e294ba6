"""The compiled LiquidityOperator against a frozen copy of the numpy implementation it replaced: every column
value bit for bit and every event (id, kind, times, price, meta, order within the batch), for any batching,
on many interleaved synthetic markets.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest

from engine.candles import CandleAggregator
from engine.ids import stable_id
from engine.indicators.operator import IndicatorOperator
from engine.keyed import KeyedArrayOperator, SlotMap, rounds
from engine.sources.synthetic import synthetic_trades
from engine.structure.liquidity import LiquidityOperator
from engine.structure.ranges import (
    DAY,
    DEFAULT_SESSIONS,
    MINUTE,
    MONDAY_OFFSET,
    PERIOD_COLUMNS,
    RANGE_COLUMNS,
    WEEK,
    Session,
    session_columns,
)
from engine.structure.swings import SwingOperator
from schemas.batches import EventBatch, FeatureBatch, concat_features
from schemas.errors import ConfigError
from schemas.records import StructureEvent
from schemas.timeframes import format_timeframe

# ---------------------------------------------------------------- the reference, frozen

LIQUIDITY_COLUMNS = ["liquidity_high", "liquidity_low", "sweep_high", "sweep_low"]
SIDES = ("high", "low")
_STEP_ORDER = {"swept": 0, "evicted": 1, "grown": 2, "created": 2}


def dealing_range(range_high: np.ndarray, range_low: np.ndarray, close: np.ndarray) -> np.ndarray:
    """Columns ``RANGE_COLUMNS``: position of the close in [low, high] (0 low, 1 high) and its zone.

    Position is not clipped (a close above the range reads > 1); it is NaN until both ends are known or
    when the range is empty. Zone is +1 premium (above 0.5), -1 discount (below), 0 at equilibrium or unknown.
    """
    width = range_high - range_low
    with np.errstate(invalid="ignore", divide="ignore"):
        pos = np.where(width > 0, (close - range_low) / width, np.nan)
        zone = np.where(pos > 0.5, 1.0, np.where(pos < 0.5, -1.0, 0.0))
    return np.stack([range_high, range_low, pos, zone], axis=1)


def period_spec(n_sessions: int) -> dict:
    """State arrays (shape tail, dtype, fill) for ``advance_periods``; index 0 is the day, 1 the week."""
    lo = np.iinfo(np.int64).min
    return {"p_id": ((2,), np.int64, lo), "p_hi": ((2,), np.float64, np.nan), "p_lo": ((2,), np.float64, np.nan),
            "p_prev_hi": ((2,), np.float64, np.nan), "p_prev_lo": ((2,), np.float64, np.nan),
            "ss_start": ((n_sessions,), np.int64, lo), "ss_open": ((n_sessions,), np.float64, np.nan),
            "ss_hi": ((n_sessions,), np.float64, np.nan), "ss_lo": ((n_sessions,), np.float64, np.nan)}


def advance_periods(s: dict, slots: np.ndarray, open_ts: np.ndarray, o: np.ndarray, high: np.ndarray,
                    low: np.ndarray, real: np.ndarray, sessions: list[tuple[int, int]]) -> np.ndarray:
    """Advance day/week/session state by one bar per slot; return PERIOD_COLUMNS then session columns."""
    ids = np.stack([open_ts // DAY, (open_ts - MONDAY_OFFSET) // WEEK], axis=1)
    pid, hi, lo = s["p_id"][slots], s["p_hi"][slots], s["p_lo"][slots]
    # a period closes when a bar of a later one arrives; one without real bars keeps the older values
    rolled = (ids != pid) & (pid != np.iinfo(np.int64).min)
    done = rolled & ~np.isnan(hi)
    prev_hi = np.where(done, hi, s["p_prev_hi"][slots])
    prev_lo = np.where(done, lo, s["p_prev_lo"][slots])
    fresh = ids != pid
    hi, lo = np.where(fresh, np.nan, hi), np.where(fresh, np.nan, lo)
    r = real[:, None]
    hi = np.where(r, np.fmax(hi, high[:, None]), hi)
    lo = np.where(r, np.fmin(lo, low[:, None]), lo)
    s["p_id"][slots], s["p_hi"][slots], s["p_lo"][slots] = ids, hi, lo
    s["p_prev_hi"][slots], s["p_prev_lo"][slots] = prev_hi, prev_lo
    out = [prev_hi[:, 0], prev_lo[:, 0], prev_hi[:, 1], prev_lo[:, 1]]
    minute = (open_ts % DAY) // MINUTE
    day_start = open_ts - open_ts % DAY
    for k, (start, end) in enumerate(sessions):
        inside = (minute >= start) & (minute < end) if start < end else (minute >= start) | (minute < end)
        # the instance's start time tells one day's session from the next
        begun = np.where(minute >= start, day_start + start * MINUTE, day_start - DAY + start * MINUTE)
        new = inside & (begun != s["ss_start"][slots, k])
        s_open = np.where(new, np.nan, s["ss_open"][slots, k])
        s_hi = np.where(new, np.nan, s["ss_hi"][slots, k])
        s_lo = np.where(new, np.nan, s["ss_lo"][slots, k])
        take = inside & real
        s_open = np.where(take & np.isnan(s_open), o, s_open)
        s_hi = np.where(take, np.fmax(s_hi, high), s_hi)
        s_lo = np.where(take, np.fmin(s_lo, low), s_lo)
        s["ss_start"][slots, k] = np.where(inside, begun, s["ss_start"][slots, k])
        s["ss_open"][slots, k], s["ss_hi"][slots, k], s["ss_lo"][slots, k] = s_open, s_hi, s_lo
        # the open of the latest session that began is kept after it ends; high/low only while inside
        out += [s_open, inside.astype(np.float64), np.where(inside, s_hi, np.nan), np.where(inside, s_lo, np.nan)]
    return np.stack(out, axis=1)


class FrozenLiquidityOperator(KeyedArrayOperator):
    """LiquidityOperator as it was before the compiled kernel, reading its input events as records."""

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
            swing_ts = {(e.market, e.timeframe, e.kind, e.confirmed_ts): e.ts for e in list(batch.events)
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


# ---------------------------------------------------------------- the comparison

SETTINGS = {
    "default": {},
    "atr": {"tolerance_atr": 0.5},
    # wide bands and few anchors (evictions); sessions that begin and wrap within the data's two hours
    "evicting": {"tolerance_pct": 0.003, "max_open": 2,
                 "sessions": (Session("a", "00:20", "01:10"), Session("b", "01:30", "00:40"))},
}
# a fixed band, and no ATR column to read
FIXED = {"tolerance_abs": 0.01, "tolerance_atr": 0.5, "atr_column": "atr_99"}


def _chain(timeframes: tuple[str, ...], gaps: str, trade_batch: int) -> list[FeatureBatch]:
    """The feature batches (ATR, swings) the engine's chain emits, one per batch of trades."""
    trades = synthetic_trades(n_markets=30, n_trades=150_000, seed=5, mean_rate_per_s=20)
    agg, ind, swings = CandleAggregator(list(timeframes), gaps=gaps), IndicatorOperator(["atr:14"]), SwingOperator(5, 5)
    out = []
    for start in range(0, len(trades), trade_batch):
        candles = agg.update(trades.slice(start, start + trade_batch))
        if len(candles):
            out.append(swings.update(ind.update(candles)))
    return out


@lru_cache(maxsize=None)
def _streamed(timeframes: tuple[str, ...], gaps: str, trade_batch: int) -> tuple[FeatureBatch, ...]:
    return tuple(_chain(timeframes, gaps, trade_batch))


def _rechunked(batches: tuple[FeatureBatch, ...], rows: int) -> list[FeatureBatch]:
    """The same rows cut every ``rows`` rows, each event with the row that confirmed it."""
    full = concat_features(list(batches))
    c, ev = full.candles, full.events
    row_of = {key: r for r, key in enumerate(zip(c.market.tolist(), c.tf.tolist(), c.close_ts.tolist()))}
    at = np.array([row_of[key] for key in zip(ev.market.tolist(), ev.tf.tolist(), ev.confirmed_ts.tolist())],
                  np.int64)
    return [FeatureBatch(c.take(slice(s, s + rows)), full.names, full.values[s:s + rows],
                         ev.take((at >= s) & (at < s + rows))) for s in range(0, len(c), rows)]


def _assert_same(batches: list[FeatureBatch], settings: dict) -> int:
    """Feed both operators the same batches; return the number of pool events compared."""
    ours, ref = LiquidityOperator(**settings), FrozenLiquidityOperator(**settings)
    pools = 0
    for b in batches:
        got, want = ours.update(b), ref.update(b)
        assert got.names == want.names
        assert np.array_equal(got.values, want.values, equal_nan=True)
        assert list(got.events) == list(want.events)
        pools += len(want.events) - len(b.events)
    return pools


@pytest.mark.parametrize("settings", SETTINGS)
@pytest.mark.parametrize("trade_batch", [700, 20_000])
def test_streamed_chain_output_equals_the_numpy_implementation(settings: str, trade_batch: int) -> None:
    # small batches of trades give batches of one timeframe (events sorted in the kernel) and of two
    batches = list(_streamed(("1m", "5m"), "skip", trade_batch))
    assert _assert_same(batches, SETTINGS[settings]) > 50


@pytest.mark.parametrize("settings", SETTINGS)
@pytest.mark.parametrize("rows", [1, 97, 800, 1_000_000])
def test_any_batching_equals_the_numpy_implementation(settings: str, rows: int) -> None:
    batches = _rechunked(_streamed(("1m", "5m"), "skip", 20_000), rows)
    if rows == 1:
        batches = batches[:1500]  # bar by bar: the reference takes a while per call
    assert _assert_same(batches, SETTINGS[settings]) > 10


@pytest.mark.parametrize("rows", [53, 1_000_000])
def test_gap_rows_equal_the_numpy_implementation(rows: int) -> None:
    batches = _rechunked(_streamed(("1m", "3m"), "flag", 20_000), rows)
    assert any(b.candles.gap.any() for b in batches)
    for settings in (*SETTINGS.values(), FIXED):
        assert _assert_same(batches, settings) > 10


def test_days_and_weeks_equal_the_numpy_implementation() -> None:
    # a slow market over nine days: day and week roll-overs, days without trades, gap bars
    trades = synthetic_trades(n_markets=8, n_trades=40_000, seed=3, mean_rate_per_s=0.05)
    agg, ind, swings = CandleAggregator(["15m", "1h"], gaps="flag"), IndicatorOperator(["atr:14"]), SwingOperator(3, 3)
    batches = []
    for start in range(0, len(trades), 3_000):
        candles = agg.update(trades.slice(start, start + 3_000))
        if len(candles):
            batches.append(swings.update(ind.update(candles)))
    span = max(b.candles.open_ts.max() for b in batches) - min(b.candles.open_ts.min() for b in batches)
    assert span > 8 * DAY
    for settings in (*SETTINGS.values(), FIXED):
        assert _assert_same(batches, settings) > 10


def test_events_given_as_records_of_another_dictionary() -> None:
    """Swing events read back from records (their own market dictionary) find the same swing bars."""
    batches = _rechunked(_streamed(("1m", "5m"), "skip", 20_000), 400)
    as_records = [FeatureBatch(b.candles, b.names, b.values, list(reversed(list(b.events)))) for b in batches]
    assert any(b.events.markets != b.candles.markets for b in as_records if len(b.events))
    assert _assert_same(as_records, {}) > 50


def test_snapshot_restore_midway_continues_identically() -> None:
    batches = _rechunked(_streamed(("1m", "5m"), "skip", 20_000), 300)
    half = len(batches) // 2
    ref, first = FrozenLiquidityOperator(tolerance_atr=0.5), LiquidityOperator(tolerance_atr=0.5)
    for b in batches[:half]:
        first.update(b)
        ref.update(b)
    restored = LiquidityOperator(max_open=3)
    restored.restore(first.snapshot())
    for b in batches[half:]:
        got, want = restored.update(b), ref.update(b)
        assert np.array_equal(got.values, want.values, equal_nan=True) and list(got.events) == list(want.events)


def test_a_dictionary_naming_a_market_twice() -> None:
    """A key is a market name: rows and events under either index of a repeated name are one key."""
    batches = _rechunked(_streamed(("1m", "5m"), "skip", 20_000), 500)
    renamed = []
    for b in batches:
        c, ev = b.candles, b.events
        twice = c.markets + c.markets  # odd rows and odd events use the second copy of each name
        c2 = c.take(slice(None))
        c2.markets = twice
        c2.market = (c.market + (np.arange(len(c)) % 2) * len(c.markets)).astype(np.int32)
        e2 = ev.take(slice(None))
        e2.markets = twice if ev.markets == c.markets else ev.markets
        if e2.markets is twice:
            e2.market = (ev.market + (np.arange(len(ev)) % 2) * len(c.markets)).astype(np.int32)
        renamed.append(FeatureBatch(c2, b.names, b.values, e2))
    assert _assert_same(renamed, {}) > 50


def test_step_ranks_agree() -> None:
    from engine.structure import liquidity, liquidity_kernel

    assert np.array_equal(liquidity._STEP_RANK, liquidity_kernel.STEP_RANK)
