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

from engine.ids import stable_id
from engine.keyed import SlotMap, rounds, row_keys
from engine.operator import pack_state, unpack_state
from engine.timeframes import format_timeframe
from schemas.batches import FeatureBatch
from schemas.records import StructureEvent

STRUCTURE_COLUMNS = ["swing_high", "swing_low", "last_swing_high", "last_swing_low", "trend", "bos", "choch"]
BREAK_MODES = ("close", "wick")


class SwingOperator:
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
        new = max(capacity, 2 * self.capacity)
        for key, (tail, dtype, fill) in spec.items():
            arr = np.full((new, *tail), fill, dtype=dtype)
            if key in self.s:
                arr[: self.capacity] = self.s[key]
            self.s[key] = arr
        self.capacity = new

    def _push(self, slots: np.ndarray, high: np.ndarray, low: np.ndarray, ts: np.ndarray):
        s, w, left = self.s, self.window, self.left
        count = s["count"][slots]
        pos = count % w
        s["high"][slots, pos] = high
        s["low"][slots, pos] = low
        s["ts"][slots, pos] = ts
        count = count + 1
        s["count"][slots] = count
        # chronological view of each slot's window, oldest first
        order = (count[:, None] + np.arange(w)[None, :]) % w
        hi = np.take_along_axis(s["high"][slots], order, axis=1)
        lo = np.take_along_axis(s["low"][slots], order, axis=1)
        full = count >= w
        c_hi, c_lo = hi[:, left], lo[:, left]
        is_high = full & (c_hi > hi[:, :left].max(axis=1)) & (c_hi >= hi[:, left + 1:].max(axis=1))
        is_low = full & (c_lo < lo[:, :left].min(axis=1)) & (c_lo <= lo[:, left + 1:].min(axis=1))
        cand_ts = np.take_along_axis(s["ts"][slots], order[:, left:left + 1], axis=1)[:, 0]
        s["last_high"][slots] = np.where(is_high, c_hi, s["last_high"][slots])
        s["last_low"][slots] = np.where(is_low, c_lo, s["last_low"][slots])
        s["open_high"][slots] = np.where(is_high, c_hi, s["open_high"][slots])
        s["open_low"][slots] = np.where(is_low, c_lo, s["open_low"][slots])
        return is_high, is_low, c_hi, c_lo, cand_ts

    def _breaks(self, slots: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray):
        """Breaks of the open swing levels by this bar: (up, down, up_is_choch, down_is_choch, levels)."""
        s = self.s
        lvl_hi, lvl_lo, trend = s["open_high"][slots], s["open_low"][slots], s["trend"][slots]
        above = close if self.break_by == "close" else high
        below = close if self.break_by == "close" else low
        with np.errstate(invalid="ignore"):
            up = above > lvl_hi  # NaN (no open level) compares False
            down = below < lvl_lo
        up_choch = up & (trend == -1)
        trend = np.where(up, 1, trend)
        down_choch = down & (trend == 1)
        trend = np.where(down, -1, trend).astype(np.int8)
        s["trend"][slots] = trend
        s["open_high"][slots] = np.where(up, np.nan, lvl_hi)
        s["open_low"][slots] = np.where(down, np.nan, lvl_lo)
        return up, down, up_choch, down_choch, lvl_hi, lvl_lo, trend

    def update(self, batch: FeatureBatch) -> FeatureBatch:
        c = batch.candles
        extra = np.full((len(c), len(STRUCTURE_COLUMNS)), np.nan)
        events: list[StructureEvent] = []
        if len(c):
            keys, inverse = row_keys(c.markets, c.market, c.tf)
            slots = self.keys.lookup(keys)[inverse]
            if slots.max() >= self.capacity:
                self._grow(int(slots.max()) + 1)
            live = np.flatnonzero(~c.gap)
            close_ts = c.close_ts
            for part in rounds(slots[live]):
                rows = live[part]
                is_high, is_low, c_hi, c_lo, cand_ts = self._push(slots[rows], c.high[rows], c.low[rows],
                                                                 c.open_ts[rows])
                extra[rows, 0] = np.where(is_high, c_hi, np.nan)
                extra[rows, 1] = np.where(is_low, c_lo, np.nan)
                extra[rows, 2] = self.s["last_high"][slots[rows]]
                extra[rows, 3] = self.s["last_low"][slots[rows]]
                up, down, up_choch, down_choch, lvl_hi, lvl_lo, trend = self._breaks(
                    slots[rows], c.high[rows], c.low[rows], c.close[rows])
                extra[rows, 4] = trend
                extra[rows, 5] = np.where(up & ~up_choch, 1.0, 0.0) - np.where(down & ~down_choch, 1.0, 0.0)
                extra[rows, 6] = np.where(up_choch, 1.0, 0.0) - np.where(down_choch, 1.0, 0.0)
                swing_meta = {"left": float(self.left), "right": float(self.right)}
                found = [("swing_high", is_high, c_hi, cand_ts), ("swing_low", is_low, c_lo, cand_ts),
                         ("bos_bull", up & ~up_choch, lvl_hi, c.open_ts[rows]),
                         ("choch_bull", up_choch, lvl_hi, c.open_ts[rows]),
                         ("bos_bear", down & ~down_choch, lvl_lo, c.open_ts[rows]),
                         ("choch_bear", down_choch, lvl_lo, c.open_ts[rows])]
                for kind, hit, price, ts in found:
                    for j in np.flatnonzero(hit):
                        r = rows[j]
                        market, tf = c.markets[int(c.market[r])], format_timeframe(int(c.tf[r]))
                        meta = swing_meta if kind.startswith("swing") else {"close": float(c.close[r])}
                        events.append(StructureEvent(
                            id=stable_id(market, tf, kind, int(ts[j])), market=market, timeframe=tf,
                            kind=kind, ts=int(ts[j]), confirmed_ts=int(close_ts[r]), price=float(price[j]),
                            meta=meta))
            # gap bars carry the last known levels forward
            gap_rows = np.flatnonzero(c.gap)
            extra[gap_rows, 2] = self.s["last_high"][slots[gap_rows]]
            extra[gap_rows, 3] = self.s["last_low"][slots[gap_rows]]
            extra[gap_rows, 4] = self.s["trend"][slots[gap_rows]]
            extra[gap_rows, 5:7] = 0.0
            events.sort(key=lambda e: (e.confirmed_ts, e.market, e.timeframe, e.kind, e.ts))
        names = batch.names + STRUCTURE_COLUMNS
        return FeatureBatch(c, names, np.hstack([batch.values, extra]), batch.events + events)

    def flush(self) -> None:
        """Nothing is pending: swings are emitted as soon as they are confirmed."""
        return None

    def snapshot(self) -> bytes:
        return pack_state(self, {"left": self.left, "right": self.right, "break_by": self.break_by,
                                 "keys": self.keys.state(),
                                 "capacity": self.capacity, "s": {k: v.copy() for k, v in self.s.items()}})

    def restore(self, data: bytes) -> None:
        state = unpack_state(self, data)
        self.__init__(state["left"], state["right"], state["break_by"])
        self.keys.load(state["keys"])
        self.capacity = state["capacity"]
        self.s = {k: v.copy() for k, v in state["s"].items()}

    def reset(self) -> None:
        self.__init__(self.left, self.right, self.break_by)
