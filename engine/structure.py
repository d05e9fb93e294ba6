"""Minimal market-structure operator: confirmed swing highs and lows, emitted only once confirmed.

A bar is a swing high when its high is above the ``left`` bars before it and not below the
``right`` bars after it (ties go to the earlier bar); it is known only when the ``right``-th bar
after it closes, and is emitted then, never earlier and never revised.
"""

from __future__ import annotations

import numpy as np

from engine.ids import stable_id
from engine.keyed import SlotMap, rounds, row_keys
from engine.operator import pack_state, unpack_state
from engine.timeframes import format_timeframe
from schemas.batches import FeatureBatch
from schemas.records import StructureEvent

STRUCTURE_COLUMNS = ["swing_high", "swing_low", "last_swing_high", "last_swing_low"]


class SwingOperator:
    """Keyed swing detector over closed candles; adds structure columns and StructureEvents."""

    name = "structure"
    version = "1"

    def __init__(self, left: int = 5, right: int = 5) -> None:
        if left < 1 or right < 1:
            raise ValueError(f"swing left/right bar counts must be >= 1, got {left}/{right}")
        self.left, self.right = left, right
        self.window = left + right + 1
        self.keys = SlotMap()
        self.capacity = 0
        self.s: dict[str, np.ndarray] = {}
        self._grow(8)

    def _grow(self, capacity: int) -> None:
        spec = {"high": ((self.window,), np.float64, np.nan), "low": ((self.window,), np.float64, np.nan),
                "ts": ((self.window,), np.int64, 0), "count": ((), np.int64, 0),
                "last_high": ((), np.float64, np.nan), "last_low": ((), np.float64, np.nan)}
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
        return is_high, is_low, c_hi, c_lo, cand_ts

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
                for kind, hit, price in (("swing_high", is_high, c_hi), ("swing_low", is_low, c_lo)):
                    for j in np.flatnonzero(hit):
                        r = rows[j]
                        market, tf = c.markets[int(c.market[r])], format_timeframe(int(c.tf[r]))
                        events.append(StructureEvent(
                            id=stable_id(market, tf, kind, int(cand_ts[j])), market=market, timeframe=tf,
                            kind=kind, ts=int(cand_ts[j]), confirmed_ts=int(close_ts[r]), price=float(price[j]),
                            meta={"left": float(self.left), "right": float(self.right)}))
            # gap bars carry the last known levels forward
            gap_rows = np.flatnonzero(c.gap)
            extra[gap_rows, 2] = self.s["last_high"][slots[gap_rows]]
            extra[gap_rows, 3] = self.s["last_low"][slots[gap_rows]]
            events.sort(key=lambda e: (e.confirmed_ts, e.market, e.timeframe, e.kind, e.ts))
        names = batch.names + STRUCTURE_COLUMNS
        return FeatureBatch(c, names, np.hstack([batch.values, extra]), batch.events + events)

    def flush(self) -> None:
        """Nothing is pending: swings are emitted as soon as they are confirmed."""
        return None

    def snapshot(self) -> bytes:
        return pack_state(self, {"left": self.left, "right": self.right, "keys": self.keys.state(),
                                 "capacity": self.capacity, "s": {k: v.copy() for k, v in self.s.items()}})

    def restore(self, data: bytes) -> None:
        state = unpack_state(self, data)
        self.__init__(state["left"], state["right"])
        self.keys.load(state["keys"])
        self.capacity = state["capacity"]
        self.s = {k: v.copy() for k, v in state["s"].items()}

    def reset(self) -> None:
        self.__init__(self.left, self.right)
