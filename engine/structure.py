"""Market-structure operator: confirmed swings, then breaks of structure (BOS) and changes of character
(CHoCH), each emitted once, at the close of the bar that makes it known, and never revised.

Swings: a bar is a swing high when its high is above the ``left`` bars before it and not below the
``right`` bars after it (ties go to the earlier bar); it is known only when the ``right``-th bar
after it closes, and is emitted then.

Breaks: the latest confirmed swing high is *broken* by the first later bar that closes above it
(``break_by="close"``) or trades above it (``"wick"``); likewise for the latest swing low. A
break in the direction of the current trend (or with no trend yet) is a BOS; against it, a
CHoCH. The trend then takes the break's direction, and a level breaks at most once. When one
bar breaks both levels, the upside break is taken first.
"""

from __future__ import annotations

import numpy as np

from engine.ids import stable_id_text
from engine.keyed import KeyedArrayOperator, SlotMap, rounds
from engine.timeframes import format_timeframe
from schemas.batches import FeatureBatch
from schemas.records import StructureEvent

STRUCTURE_COLUMNS = ["swing_high", "swing_low", "last_swing_high", "last_swing_low", "trend", "bos", "choch"]
BREAK_MODES = ("close", "wick")


_TF_LABELS: dict[int, str] = {}
_new_object = object.__new__
_set_attr = object.__setattr__


def _timeframe_label(tf_ns: int) -> str:
    label = _TF_LABELS.get(tf_ns)
    if label is None:
        label = _TF_LABELS[tf_ns] = format_timeframe(tf_ns)
    return label


def trusted_event(id: str, market: str, timeframe: str, kind: str, ts: int, confirmed_ts: int, price: float,
                  meta: dict) -> StructureEvent:
    """A StructureEvent from values an operator made itself, without re-validating them.

    The caller passes exactly the validated types (str, int, float and a fresh ``dict[str, float]``), so the
    record equals, dumps and pickles exactly as ``StructureEvent(...)`` of the same values would.
    """
    ev = _new_object(StructureEvent)
    _set_attr(ev, "__dict__", {"id": id, "market": market, "timeframe": timeframe, "kind": kind, "ts": ts,
                               "confirmed_ts": confirmed_ts, "price": price, "meta": meta})
    _set_attr(ev, "__pydantic_fields_set__", set(_EVENT_FIELDS))
    _set_attr(ev, "__pydantic_extra__", None)
    _set_attr(ev, "__pydantic_private__", None)
    return ev


_EVENT_FIELDS = ("id", "market", "timeframe", "kind", "ts", "confirmed_ts", "price", "meta")


def _event(market: str, tf: str, kind: str, ts: int, confirmed: int, price: float, meta: dict) -> StructureEvent:
    # id = stable_id(market, tf, kind, ts)
    return trusted_event(stable_id_text(f"{market}|{tf}|{kind}|{ts}"), market, tf, kind, ts, confirmed, price, meta)


def _event_order(e: StructureEvent) -> tuple:
    d = e.__dict__
    return d["confirmed_ts"], d["market"], d["timeframe"], d["kind"], d["ts"]


class SwingOperator(KeyedArrayOperator):
    """Keyed swing detector over closed candles; adds structure columns and StructureEvents."""

    name = "structure"
    version = "2"

    def __init__(self, left: int = 5, right: int = 5, break_by: str = "close") -> None:
        if left < 1 or right < 1:
            raise ValueError(f"swing left/right bar counts must be >= 1, got {left}/{right}")
        if break_by not in BREAK_MODES:
            raise ValueError(f"break_by must be one of {BREAK_MODES}, got {break_by!r}")
        self.left, self.right, self.break_by = left, right, break_by
        self.window = left + right + 1
        self.keys = SlotMap()
        self.capacity = 0
        self.s: dict[str, np.ndarray] = {}
        self._grow(8)

    def _grow(self, capacity: int) -> None:
        spec = {"high": ((self.window,), np.float64, np.nan), "low": ((self.window,), np.float64, np.nan),
                "ts": ((self.window,), np.int64, 0), "count": ((), np.int64, 0),
                "last_high": ((), np.float64, np.nan), "last_low": ((), np.float64, np.nan),
                # the levels still unbroken (NaN once broken) and the trend: +1 up, -1 down, 0 none yet
                "open_high": ((), np.float64, np.nan), "open_low": ((), np.float64, np.nan),
                "trend": ((), np.int8, 0)}
        self.grow_state(spec, capacity)

    def update(self, batch: FeatureBatch) -> FeatureBatch:
        c = batch.candles
        extra = np.full((len(c), len(STRUCTURE_COLUMNS)), np.nan)
        events: list = []
        if len(c):
            keys, inverse, slots = self.key_slots(c.markets, c.market, c.tf)
            labels = [(m, _timeframe_label(t)) for m, t in keys]
            s, w, left = self.s, self.window, self.left
            # flat views of the ring buffers: slot k's window is [k * w, (k + 1) * w)
            ring_hi, ring_lo, ring_ts = s["high"].reshape(-1), s["low"].reshape(-1), s["ts"].reshape(-1)
            count_a, last_hi_a, last_lo_a = s["count"], s["last_high"], s["last_low"]
            open_hi_a, open_lo_a, trend_a = s["open_high"], s["open_low"], s["trend"]
            by_close = self.break_by == "close"
            span = np.arange(w)
            gap = c.gap
            live = np.flatnonzero(~gap)
            close_ts = c.close_ts
            high_c, low_c, close_c, open_ts_c = c.high, c.low, c.close, c.open_ts
            for part in rounds(slots[live]):
                rows = live[part]
                sl = slots[rows]
                high, low, close, open_ts = high_c[rows], low_c[rows], close_c[rows], open_ts_c[rows]
                # push the bar into each slot's ring, then view the window oldest first
                count = count_a[sl]
                base = sl * w
                at = base + count % w
                ring_hi[at], ring_lo[at], ring_ts[at] = high, low, open_ts
                count += 1
                count_a[sl] = count
                idx = base[:, None] + (count[:, None] + span) % w
                hi, lo = ring_hi[idx], ring_lo[idx]
                full = count >= w
                c_hi, c_lo = hi[:, left], lo[:, left]
                is_high = full & (c_hi > hi[:, :left].max(axis=1)) & (c_hi >= hi[:, left + 1:].max(axis=1))
                is_low = full & (c_lo < lo[:, :left].min(axis=1)) & (c_lo <= lo[:, left + 1:].min(axis=1))
                last_hi = np.where(is_high, c_hi, last_hi_a[sl])
                last_lo = np.where(is_low, c_lo, last_lo_a[sl])
                last_hi_a[sl], last_lo_a[sl] = last_hi, last_lo
                # breaks of the open levels (a swing confirmed at this bar can break at this bar)
                lvl_hi = np.where(is_high, c_hi, open_hi_a[sl])
                lvl_lo = np.where(is_low, c_lo, open_lo_a[sl])
                trend = trend_a[sl]
                with np.errstate(invalid="ignore"):
                    up = (close if by_close else high) > lvl_hi  # NaN (no open level) compares False
                    down = (close if by_close else low) < lvl_lo
                up_choch = up & (trend == -1)
                trend = np.where(up, 1, trend)
                down_choch = down & (trend == 1)
                trend = np.where(down, -1, trend).astype(np.int8)
                trend_a[sl] = trend
                open_hi_a[sl] = np.where(up, np.nan, lvl_hi)
                open_lo_a[sl] = np.where(down, np.nan, lvl_lo)
                up_bos, down_bos = up & ~up_choch, down & ~down_choch
                block = np.empty((len(rows), len(STRUCTURE_COLUMNS)))
                block[:, 0] = np.where(is_high, c_hi, np.nan)
                block[:, 1] = np.where(is_low, c_lo, np.nan)
                block[:, 2], block[:, 3], block[:, 4] = last_hi, last_lo, trend
                block[:, 5] = up_bos.astype(np.float64) - down_bos
                block[:, 6] = up_choch.astype(np.float64) - down_choch
                extra[rows] = block
                hit = is_high | is_low | up | down
                if not hit.any():
                    continue
                cand_ts = ring_ts[base + (count + left) % w]
                for j in np.flatnonzero(hit).tolist():
                    r = int(rows[j])
                    market, tf = labels[inverse[r]]
                    confirmed = int(close_ts[r])
                    if is_high[j] or is_low[j]:
                        ts = int(cand_ts[j])
                        if is_high[j]:
                            events.append(_event(market, tf, "swing_high", ts, confirmed, float(c_hi[j]),
                                                 {"left": float(self.left), "right": float(self.right)}))
                        if is_low[j]:
                            events.append(_event(market, tf, "swing_low", ts, confirmed, float(c_lo[j]),
                                                 {"left": float(self.left), "right": float(self.right)}))
                    if up[j] or down[j]:
                        ts, bar_close = int(open_ts[j]), float(close[j])
                        if up[j]:
                            events.append(_event(market, tf, "choch_bull" if up_choch[j] else "bos_bull", ts,
                                                 confirmed, float(lvl_hi[j]), {"close": bar_close}))
                        if down[j]:
                            events.append(_event(market, tf, "choch_bear" if down_choch[j] else "bos_bear", ts,
                                                 confirmed, float(lvl_lo[j]), {"close": bar_close}))
            # gap bars carry the last known levels forward
            gap_rows = np.flatnonzero(gap)
            if len(gap_rows):
                gap_slots = slots[gap_rows]
                extra[gap_rows, 2] = last_hi_a[gap_slots]
                extra[gap_rows, 3] = last_lo_a[gap_slots]
                extra[gap_rows, 4] = trend_a[gap_slots]
                extra[gap_rows, 5:7] = 0.0
            events.sort(key=_event_order)
        names = batch.names + STRUCTURE_COLUMNS
        return FeatureBatch(c, names, np.hstack([batch.values, extra]), batch.events + events)

    def settings(self) -> dict:
        return {"left": self.left, "right": self.right, "break_by": self.break_by}
