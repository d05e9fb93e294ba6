"""Fair value gaps (FVG) per (market, timeframe), emitted only once confirmed and never revised.

Detection, over three consecutive real bars ``i-1, i, i+1`` (a gap bar in between resets the window):
  bullish at ``i`` when ``low[i+1] > high[i-1]`` and ``close[i] > open[i]``; gap = [high[i-1], low[i+1]];
  bearish at ``i`` when ``high[i+1] < low[i-1]`` and ``close[i] < open[i]``; gap = [high[i+1], low[i-1]].
The body condition (as smartmoneyconcepts requires) can be dropped with ``require_body=False``.
A gap is known only when bar ``i+1`` closes: its events carry ``ts`` = open of the middle bar ``i``
and ``confirmed_ts`` = close of the bar that caused the step (``i+1`` for creation).

Lifecycle, checked on every later real bar (from ``i+2``), one event per step, kind ``fvg_{bull|bear}_{step}``:
  created     confirmed at ``i+1``; price = gap midpoint.
  touched     first bar that reaches the near edge (bull: low <= top; bear: high >= bottom); price = that edge.
  mitigated   first bar that reaches the far edge (bull: low <= bottom; bear: high >= top) and does not close
              beyond it (bull: close >= bottom; bear: close <= top); price = the far edge. Terminal.
  invalidated as mitigated, but the bar closes beyond the far edge (bull: close < bottom); terminal.
  evicted     more than ``max_open`` gaps of one direction are open: the oldest is dropped; terminal.
  merged      ``join_consecutive``: the next bar's gap of the same direction absorbs it; terminal.
A bar that reaches both edges emits ``touched`` then ``mitigated``/``invalidated``. smartmoneyconcepts'
``MitigatedIndex`` is our ``touched`` bar (it looks ahead from bar ``i`` to find it; we wait for that bar).

Joining (``join_consecutive=True``): a gap whose middle bar directly follows the middle bar of a gap of
the same direction is created with the union of the run's bounds (top = max, bottom = min); the earlier
gap, if still open, is closed with ``merged``. The run's last gap is the one smartmoneyconcepts reports.

Ids: ``gap_id = stable_id(market, timeframe, "fvg_bull"|"fvg_bear", ts)`` and each event's
``id = stable_id(gap_id, step)``; (market, timeframe, kind prefix, ts) recovers the gap id from any event.
``meta`` holds ``top``, ``bottom`` and ``joined`` (the number of raw gaps in the run, 1 when not joined).
Columns added per row: top/bottom of the newest open gap of each direction after that bar, NaN if none.
"""

from __future__ import annotations

import numpy as np

from engine.errors import ConfigError
from engine.ids import stable_id
from engine.keyed import SlotMap, rounds, row_keys
from engine.operator import pack_state, unpack_state
from engine.timeframes import format_timeframe
from schemas.batches import FeatureBatch
from schemas.records import StructureEvent

FVG_COLUMNS = ["fvg_bull_top", "fvg_bull_bottom", "fvg_bear_top", "fvg_bear_bottom"]
DIRECTIONS = ("bull", "bear")  # index 0 / 1 of the per-direction state axis
# within one bar of one key, events follow this order (a gap is touched before it is filled)
_STEP_ORDER = {"touched": 0, "mitigated": 1, "invalidated": 1, "merged": 2, "evicted": 3, "created": 4}
_EMPTY, _OPEN, _TOUCHED = 0, 1, 2


class FVGOperator:
    """Keyed fair-value-gap detector and lifecycle tracker over closed candles."""

    name = "fvg"
    version = "1"

    def __init__(self, join_consecutive: bool = False, max_open: int = 32, require_body: bool = True) -> None:
        if max_open < 1:
            raise ConfigError(f"fvg max_open must be >= 1, got {max_open}")
        self.join_consecutive, self.max_open, self.require_body = join_consecutive, max_open, require_body
        self.keys = SlotMap()
        self.capacity = 0
        self.s: dict[str, np.ndarray] = {}
        self._grow(8)

    def _grow(self, capacity: int) -> None:
        k = self.max_open
        spec = {
            # the two previous real bars: index 0 older (i-1), 1 newer (i, the middle candidate)
            "high": ((2,), np.float64, np.nan), "low": ((2,), np.float64, np.nan),
            "open": ((), np.float64, np.nan), "close": ((), np.float64, np.nan), "ts": ((), np.int64, 0),
            "run": ((), np.int64, 0),  # consecutive real bars seen, capped at 2
            # the gap detected at the previous bar, for joining: direction 0/1, -1 none
            "pdir": ((), np.int64, -1), "ptop": ((), np.float64, np.nan), "pbot": ((), np.float64, np.nan),
            "pjoined": ((), np.int64, 0), "pts": ((), np.int64, 0),
            # open gaps per direction
            "gstate": ((2, k), np.int8, _EMPTY), "gtop": ((2, k), np.float64, np.nan),
            "gbot": ((2, k), np.float64, np.nan), "gts": ((2, k), np.int64, 0),
            "gjoined": ((2, k), np.int64, 0), "gseq": ((2, k), np.int64, 0),
            "seq": ((), np.int64, 0),
            "cols": ((len(FVG_COLUMNS),), np.float64, np.nan),  # cached output row, refreshed on change
        }
        new = max(capacity, 2 * self.capacity)
        for key, (tail, dtype, fill) in spec.items():
            arr = np.full((new, *tail), fill, dtype=dtype)
            if key in self.s:
                arr[: self.capacity] = self.s[key]
            self.s[key] = arr
        self.capacity = new

    def _event(self, out: list, key: tuple, d: int, step: str, ts: int, confirmed: int, price: float,
               top: float, bot: float, joined: int) -> None:
        market, tf = key
        kind = f"fvg_{DIRECTIONS[d]}"
        gap_id = stable_id(market, tf, kind, ts)
        ev = StructureEvent(id=stable_id(gap_id, step), market=market, timeframe=tf, kind=f"{kind}_{step}",
                            ts=ts, confirmed_ts=confirmed, price=price,
                            meta={"top": top, "bottom": bot, "joined": float(joined)})
        out.append(((confirmed, market, tf, _STEP_ORDER[step], ts, d), ev))

    def _lifecycle(self, out: list, keys: list, slots, high, low, close, close_ts) -> np.ndarray:
        """Touch / fill / break of every open gap by the current bar of each row."""
        s = self.s
        state, top, bot = s["gstate"][slots], s["gtop"][slots], s["gbot"][slots]
        h, lo, c = high[:, None, None], low[:, None, None], close[:, None, None]
        is_bull = (np.arange(2) == 0)[None, :, None]
        live = state != _EMPTY
        near = np.where(is_bull, lo <= top, h >= bot)
        far = np.where(is_bull, lo <= bot, h >= top)
        broken = np.where(is_bull, c < bot, c > top)
        touched = live & (state == _OPEN) & near
        filled = live & far
        for j, d, g in zip(*np.nonzero(touched | filled)):
            slot, args = slots[j], (float(top[j, d, g]), float(bot[j, d, g]))
            ts, joined = int(s["gts"][slot, d, g]), int(s["gjoined"][slot, d, g])
            edge_near, edge_far = (args[0], args[1]) if d == 0 else (args[1], args[0])
            if touched[j, d, g]:
                self._event(out, keys[j], d, "touched", ts, int(close_ts[j]), float(edge_near), *args, joined)
            if filled[j, d, g]:
                step = "invalidated" if broken[j, d, g] else "mitigated"
                self._event(out, keys[j], d, step, ts, int(close_ts[j]), float(edge_far), *args, joined)
        state = np.where(filled, _EMPTY, np.where(touched, _TOUCHED, state)).astype(np.int8)
        s["gstate"][slots] = state
        return filled.any(axis=(1, 2))

    def _detect(self, out: list, keys: list, slots, op, high, low, close, open_ts, close_ts) -> np.ndarray:
        """Gaps whose middle bar is the previous bar, confirmed by the current one; then shift the window."""
        s = self.s
        hp, lp = s["high"][slots, 0], s["low"][slots, 0]
        mo, mc = s["open"][slots], s["close"][slots]
        ready = s["run"][slots] >= 2
        bull = ready & (low > hp)
        bear = ready & (high < lp)
        if self.require_body:
            bull &= mc > mo
            bear &= mc < mo
        for j in np.flatnonzero(bull | bear):
            slot, key = slots[j], keys[j]
            d = 0 if bull[j] else 1
            top, bot = (low[j], hp[j]) if d == 0 else (lp[j], high[j])
            ts, joined = int(s["ts"][slot]), 1
            if self.join_consecutive and s["pdir"][slot] == d:
                top, bot = max(top, s["ptop"][slot]), min(bot, s["pbot"][slot])
                joined = int(s["pjoined"][slot]) + 1
                prev = np.flatnonzero((s["gstate"][slot, d] != _EMPTY) & (s["gts"][slot, d] == s["pts"][slot]))
                for g in prev:
                    self._close(out, key, slot, d, int(g), "merged", int(close_ts[j]))
            self._insert(out, key, slot, d, ts, int(close_ts[j]), float(top), float(bot), joined)
            s["pdir"][slot], s["ptop"][slot], s["pbot"][slot] = d, top, bot
            s["pjoined"][slot], s["pts"][slot] = joined, ts
        s["pdir"][slots[~(bull | bear)]] = -1
        # shift the three-bar window: the current bar becomes the middle candidate
        s["high"][slots, 0], s["low"][slots, 0] = s["high"][slots, 1], s["low"][slots, 1]
        s["high"][slots, 1], s["low"][slots, 1] = high, low
        s["open"][slots], s["close"][slots], s["ts"][slots] = op, close, open_ts
        s["run"][slots] = np.minimum(s["run"][slots] + 1, 2)
        return bull | bear

    def _close(self, out: list, key: tuple, slot: int, d: int, g: int, step: str, confirmed: int) -> None:
        """Drop open gap ``g`` for a reason other than price (merged, evicted), saying so with an event."""
        s = self.s
        top, bot = float(s["gtop"][slot, d, g]), float(s["gbot"][slot, d, g])
        self._event(out, key, d, step, int(s["gts"][slot, d, g]), confirmed, (top + bot) / 2, top, bot,
                    int(s["gjoined"][slot, d, g]))
        s["gstate"][slot, d, g] = _EMPTY

    def _insert(self, out: list, key: tuple, slot: int, d: int, ts: int, confirmed: int, top: float,
                bot: float, joined: int) -> None:
        """Open a new gap in a free place, evicting the oldest of its direction when all are taken."""
        s = self.s
        free = np.flatnonzero(s["gstate"][slot, d] == _EMPTY)
        if len(free):
            g = int(free[0])
        else:  # bounded state: the oldest open gap of this direction makes room
            g = int(np.argmin(s["gseq"][slot, d]))
            self._close(out, key, slot, d, g, "evicted", confirmed)
        s["gstate"][slot, d, g], s["gtop"][slot, d, g], s["gbot"][slot, d, g] = _OPEN, top, bot
        s["gts"][slot, d, g], s["gjoined"][slot, d, g] = ts, joined
        s["gseq"][slot, d, g] = s["seq"][slot]
        s["seq"][slot] += 1
        self._event(out, key, d, "created", ts, confirmed, (top + bot) / 2, top, bot, joined)

    def _columns(self, slots: np.ndarray) -> np.ndarray:
        """Top/bottom of the newest open gap per direction, NaN when none is open."""
        s = self.s
        state, seq = s["gstate"][slots], np.where(s["gstate"][slots] != _EMPTY, s["gseq"][slots], -1)
        newest = np.argmax(seq, axis=2)[..., None]
        any_open = (state != _EMPTY).any(axis=2)
        top = np.where(any_open, np.take_along_axis(s["gtop"][slots], newest, 2)[..., 0], np.nan)
        bot = np.where(any_open, np.take_along_axis(s["gbot"][slots], newest, 2)[..., 0], np.nan)
        return np.stack([top[:, 0], bot[:, 0], top[:, 1], bot[:, 1]], axis=1)

    def update(self, batch: FeatureBatch) -> FeatureBatch:
        """Advance every key by its bars in order; append the FVG columns and the events these bars confirm."""
        c = batch.candles
        extra = np.full((len(c), len(FVG_COLUMNS)), np.nan)
        events: list = []
        if len(c):
            keys, inverse = row_keys(c.markets, c.market, c.tf)
            slots = self.keys.lookup(keys)[inverse]
            if slots.max() >= self.capacity:
                self._grow(int(slots.max()) + 1)
            labels = [(m, format_timeframe(t)) for m, t in keys]
            row_label = [labels[k] for k in inverse]
            close_ts, gap, s = c.close_ts, c.gap, self.s
            for rows in rounds(slots):
                all_rows = rows
                sl = slots[rows]
                real = ~gap[rows]
                # a gap bar breaks the three consecutive bars and any join run; open gaps wait for prices
                s["run"][sl[~real]] = 0
                s["pdir"][sl[~real]] = -1
                rows, sl = rows[real], sl[real]
                if len(rows):
                    rk = [row_label[r] for r in rows]
                    closed = self._lifecycle(events, rk, sl, c.high[rows], c.low[rows], c.close[rows],
                                             close_ts[rows])
                    opened = self._detect(events, rk, sl, c.open[rows], c.high[rows], c.low[rows],
                                          c.close[rows], c.open_ts[rows], close_ts[rows])
                    changed = sl[closed | opened]
                    if len(changed):
                        s["cols"][changed] = self._columns(changed)
                extra[all_rows] = s["cols"][slots[all_rows]]
            events.sort(key=lambda pair: pair[0])
        names = batch.names + FVG_COLUMNS
        return FeatureBatch(c, names, np.hstack([batch.values, extra]), batch.events + [e for _, e in events])

    def flush(self) -> None:
        """Nothing is pending: gaps and their steps are emitted at the bar that confirms them."""
        return None

    def snapshot(self) -> bytes:
        """All per-key state, settings included."""
        return pack_state(self, {"join_consecutive": self.join_consecutive, "max_open": self.max_open,
                                 "require_body": self.require_body, "keys": self.keys.state(),
                                 "capacity": self.capacity, "s": {k: v.copy() for k, v in self.s.items()}})

    def restore(self, data: bytes) -> None:
        """Replace all state (and settings) with a snapshot of this operator."""
        state = unpack_state(self, data)
        self.__init__(state["join_consecutive"], state["max_open"], state["require_body"])
        self.keys.load(state["keys"])
        self.capacity = state["capacity"]
        self.s = {k: v.copy() for k, v in state["s"].items()}

    def reset(self) -> None:
        """Forget every key, keeping the settings."""
        self.__init__(self.join_consecutive, self.max_open, self.require_body)
