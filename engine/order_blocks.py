"""Order blocks and breaker blocks per (market, timeframe), read off SwingOperator's breaks; never revised.

Placed after ``SwingOperator``: it reads the swing and BOS/CHoCH events in the incoming FeatureBatch (the
swing bar's open time and the broken level), matched to the row whose close confirmed them, and the candles.

Creation, at the close of a bullish break bar ``k`` (a ``bos_bull``/``choch_bull`` event) of the swing high at
bar ``s``:
  the order block is the candle with the lowest low among the bars strictly between ``s`` and ``k``
  (ties: the latest), searched in the last ``lookback`` real bars only (all of them when the swing is
  older); block = [its low, its high].
  Bearish: the mirror image (highest high after the broken swing low). This is smartmoneyconcepts' choice,
  which need not be a down (up) candle. ``volume`` = volume of bars ``k-2 .. k`` (the displacement);
  ``balance`` = 100 * min(vol[k] + vol[k-1], vol[k-2]) / max(of the two), 100 when both are 0.
  The event ``ob_{bull|bear}_created`` has ``ts`` = open of the block candle, ``confirmed_ts`` = close of ``k``.
  A candle that already holds a tracked block of that direction is not created again.

Lifecycle, checked from bar ``k+1`` on every real bar, one event per step, kind ``ob_{bull|bear}_{step}``:
  touched             first bar reaching into the block (bull: low <= top; bear: high >= bottom); price = near edge.
  mitigated           first bar trading through the far side (bull: low < bottom, or with ``mitigate_by="close"``
                      min(open, close) < bottom; bear: mirrored); price = the far edge. The block stops being live
  breaker_created     and, at the same bar, becomes a breaker block of the opposite role (a failed bullish block
                      is resistance); price = the far edge.
  breaker_invalidated from the next bar, the first bar trading through the breaker's other side
                      (bull origin: high > top; bear origin: low < bottom); terminal; price = that edge.
  evicted             more than ``max_blocks`` blocks (live or breaker) of one direction: the oldest goes; terminal.
A bar that reaches both edges of a fresh block emits ``touched`` then ``mitigated``. smartmoneyconcepts keeps
only blocks never breaker-invalidated; its ``MitigatedIndex`` is the bar before our ``mitigated`` bar for
bullish blocks and that bar itself for bearish ones.

Ids: ``block_id = stable_id(market, timeframe, "ob_bull"|"ob_bear", ts, break_ts)`` (``break_ts`` = open of
bar ``k``); each event's ``id = stable_id(block_id, step)``. ``meta``: top, bottom, volume, balance, level
(the swing broken), choch (1 when the break was a CHoCH), break_ts.
Columns per row: top/bottom of the newest live (not mitigated) block of each direction, NaN if none.
"""

from __future__ import annotations

import numpy as np

from engine.errors import ConfigError
from engine.ids import stable_id
from engine.keyed import KeyedArrayOperator, SlotMap, newest_bounds, rounds
from engine.timeframes import format_timeframe
from schemas.batches import FeatureBatch
from schemas.records import StructureEvent

OB_COLUMNS = ["ob_bull_top", "ob_bull_bottom", "ob_bear_top", "ob_bear_bottom"]
DIRECTIONS = ("bull", "bear")
MITIGATE_MODES = ("wick", "close")
# SwingOperator's events this operator reads, in the order it applies them within one bar
_KIND_ORDER = {"swing_high": 0, "swing_low": 1, "bos_bull": 2, "choch_bull": 2, "bos_bear": 3, "choch_bear": 3}
# within one bar of one key, events follow this order (a block is touched before it is mitigated)
_STEP_ORDER = {"breaker_invalidated": 0, "touched": 1, "mitigated": 2, "breaker_created": 3, "evicted": 4,
               "created": 5}
_EMPTY, _LIVE, _TOUCHED, _BREAKER = 0, 1, 2, 3


class OrderBlockOperator(KeyedArrayOperator):
    """Keyed order-block detector and lifecycle tracker, fed by SwingOperator's output."""

    name = "order_blocks"
    version = "1"

    def __init__(self, lookback: int = 512, max_blocks: int = 16, mitigate_by: str = "wick") -> None:
        if lookback < 3 or max_blocks < 1:
            raise ConfigError(f"order blocks need lookback >= 3 and max_blocks >= 1, got {lookback}/{max_blocks}")
        if mitigate_by not in MITIGATE_MODES:
            raise ConfigError(f"mitigate_by must be one of {MITIGATE_MODES}, got {mitigate_by!r}")
        self.lookback, self.max_blocks, self.mitigate_by = lookback, max_blocks, mitigate_by
        self.keys = SlotMap()
        self.capacity = 0
        self.s: dict[str, np.ndarray] = {}
        self._grow(8)

    def _grow(self, capacity: int) -> None:
        n, k = self.lookback, self.max_blocks
        spec = {
            # ring buffer of the last `lookback` real bars
            "bts": ((n,), np.int64, 0), "bhigh": ((n,), np.float64, np.nan), "blow": ((n,), np.float64, np.nan),
            "bvol": ((n,), np.float64, np.nan), "count": ((), np.int64, 0),
            # open time of the latest confirmed swing high / low (the level a break refers to), -1 none
            "swing_ts": ((2,), np.int64, -1),
            "state": ((2, k), np.int8, _EMPTY), "top": ((2, k), np.float64, np.nan),
            "bot": ((2, k), np.float64, np.nan), "ts": ((2, k), np.int64, 0), "meta": ((2, k, 5), np.float64, np.nan),
            "seq": ((2, k), np.int64, 0), "next_seq": ((), np.int64, 0),
            "cols": ((len(OB_COLUMNS),), np.float64, np.nan),  # cached output row, refreshed on change
        }
        self.grow_state(spec, capacity)

    def _event(self, out: list, key: tuple, slot: int, d: int, g: int, step: str, confirmed: int,
               price: float) -> None:
        s = self.s
        market, tf = key
        ts, meta = int(s["ts"][slot, d, g]), s["meta"][slot, d, g]
        kind = f"ob_{DIRECTIONS[d]}"
        block_id = stable_id(market, tf, kind, ts, int(meta[4]))
        ev = StructureEvent(id=stable_id(block_id, step), market=market, timeframe=tf, kind=f"{kind}_{step}",
                            ts=ts, confirmed_ts=confirmed, price=price,
                            meta={"top": float(s["top"][slot, d, g]), "bottom": float(s["bot"][slot, d, g]),
                                  "volume": float(meta[0]), "balance": float(meta[1]), "level": float(meta[2]),
                                  "choch": float(meta[3]), "break_ts": float(meta[4])})
        out.append(((confirmed, market, tf, _STEP_ORDER[step], ts, d), ev))

    def _lifecycle(self, out: list, keys: list, slots, op, high, low, close, close_ts) -> np.ndarray:
        """Touch, mitigation (to breaker) and breaker invalidation of every tracked block by the current bar."""
        s = self.s
        state, top, bot = s["state"][slots], s["top"][slots], s["bot"][slots]
        h, lo = high[:, None, None], low[:, None, None]
        through = lo if self.mitigate_by == "wick" else np.minimum(op, close)[:, None, None]
        through_up = h if self.mitigate_by == "wick" else np.maximum(op, close)[:, None, None]
        is_bull = (np.arange(2) == 0)[None, :, None]
        live = (state == _LIVE) | (state == _TOUCHED)
        near = np.where(is_bull, lo <= top, h >= bot)
        far = np.where(is_bull, through < bot, through_up > top)
        touched = live & (state == _LIVE) & (near | far)
        mitigated = live & far
        # a breaker dies when price trades through its other side (smartmoneyconcepts drops it then)
        dead = (state == _BREAKER) & np.where(is_bull, h > top, lo < bot)
        for j, d, g in zip(*np.nonzero(touched | mitigated | dead)):
            slot, key, conf = slots[j], keys[j], int(close_ts[j])
            t, b = float(top[j, d, g]), float(bot[j, d, g])
            if dead[j, d, g]:
                self._event(out, key, slot, d, g, "breaker_invalidated", conf, t if d == 0 else b)
                continue
            if touched[j, d, g]:
                self._event(out, key, slot, d, g, "touched", conf, t if d == 0 else b)
            if mitigated[j, d, g]:
                self._event(out, key, slot, d, g, "mitigated", conf, b if d == 0 else t)
                self._event(out, key, slot, d, g, "breaker_created", conf, b if d == 0 else t)
        state = np.where(dead, _EMPTY, np.where(mitigated, _BREAKER, np.where(touched, _TOUCHED, state)))
        s["state"][slots] = state.astype(np.int8)
        return (touched | mitigated | dead).any(axis=(1, 2))

    def _push(self, slots, open_ts, high, low, volume) -> None:
        s = self.s
        pos = s["count"][slots] % self.lookback
        s["bts"][slots, pos], s["bhigh"][slots, pos], s["blow"][slots, pos] = open_ts, high, low
        s["bvol"][slots, pos] = volume
        s["count"][slots] += 1

    def _window(self, slot: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The buffered bars of one key, oldest first: open times, highs, lows, volumes."""
        s, n = self.s, self.lookback
        count = int(s["count"][slot])
        order = (np.arange(max(count - n, 0), count)) % n
        return s["bts"][slot, order], s["bhigh"][slot, order], s["blow"][slot, order], s["bvol"][slot, order]

    def _create(self, out: list, key: tuple, slot: int, d: int, level: float, choch: bool, confirmed: int) -> bool:
        """Block for a break of direction ``d`` at the newest buffered bar; False when none is made."""
        s = self.s
        ts, hi, lo, vol = self._window(slot)
        swing = int(s["swing_ts"][slot, d])
        # the bars after the broken swing and before the break bar; a swing older than the buffer keeps them all
        between = np.flatnonzero(ts[:-1] > swing) if swing >= 0 else np.arange(len(ts) - 1)
        if not len(between):
            between = np.array([len(ts) - 2]) if len(ts) >= 2 else between
        if not len(between):
            return False
        values = lo[between] if d == 0 else -hi[between]
        j = int(between[np.flatnonzero(values == values.min())[-1]])  # ties go to the latest bar
        if ((s["state"][slot, d] != _EMPTY) & (s["ts"][slot, d] == ts[j])).any():
            return False
        late, early = float(np.nansum(vol[-2:])), float(np.nansum(vol[-3:-2]))
        biggest = max(late, early)
        balance = 100.0 * min(late, early) / biggest if biggest > 0 else 100.0
        free = np.flatnonzero(s["state"][slot, d] == _EMPTY)
        if len(free):
            g = int(free[0])
        else:  # bounded state: the oldest block of this direction makes room
            g = int(np.argmin(s["seq"][slot, d]))
            edge = s["bot"][slot, d, g] if d == 0 else s["top"][slot, d, g]
            self._event(out, key, slot, d, g, "evicted", confirmed, float(edge))
        s["state"][slot, d, g], s["top"][slot, d, g], s["bot"][slot, d, g] = _LIVE, hi[j], lo[j]
        s["ts"][slot, d, g] = ts[j]
        s["meta"][slot, d, g] = (late + early, balance, level, float(choch), float(ts[-1]))
        s["seq"][slot, d, g] = s["next_seq"][slot]
        s["next_seq"][slot] += 1
        self._event(out, key, slot, d, g, "created", confirmed, float((hi[j] + lo[j]) / 2))
        return True

    def _columns(self, slots: np.ndarray) -> np.ndarray:
        """Top/bottom of the newest live block per direction, NaN when none is live."""
        s = self.s
        state = s["state"][slots]
        return newest_bounds((state == _LIVE) | (state == _TOUCHED), s["seq"][slots], s["top"][slots], s["bot"][slots])

    def update(self, batch: FeatureBatch) -> FeatureBatch:
        """Advance every key by its bars in order; append the order-block columns and the events these bars confirm."""
        c = batch.candles
        extra = np.full((len(c), len(OB_COLUMNS)), np.nan)
        events: list = []
        if len(c):
            keys, inverse, slots = self.key_slots(c.markets, c.market, c.tf)
            labels = [(m, format_timeframe(t)) for m, t in keys]
            row_label = [labels[k] for k in inverse]
            close_ts, s = c.close_ts, self.s
            marks = self._structure_by_row(batch, labels, inverse, close_ts)
            for rows in rounds(slots):
                all_rows = rows
                rows = rows[~c.gap[rows]]  # gap bars neither move blocks nor enter the buffer
                sl = slots[rows]
                if len(rows):
                    rk = [row_label[r] for r in rows]
                    changed = self._lifecycle(events, rk, sl, c.open[rows], c.high[rows], c.low[rows],
                                              c.close[rows], close_ts[rows])
                    self._push(sl, c.open_ts[rows], c.high[rows], c.low[rows], c.volume[rows])
                    for j, r in enumerate(rows):
                        found = marks.get(int(r))
                        if found is None:
                            continue
                        slot = sl[j]
                        # SwingOperator confirms swings before it looks for breaks, and breaks upward first
                        for kind, ts, price in sorted(found, key=lambda e: _KIND_ORDER[e[0]]):
                            if kind.startswith("swing"):
                                s["swing_ts"][slot, 0 if kind == "swing_high" else 1] = ts
                            else:
                                d = 0 if kind.endswith("bull") else 1
                                changed[j] |= self._create(events, rk[j], slot, d, price, kind.startswith("choch"),
                                                           int(close_ts[r]))
                    done = sl[changed]
                    if len(done):
                        s["cols"][done] = self._columns(done)
                extra[all_rows] = s["cols"][slots[all_rows]]
            events.sort(key=lambda pair: pair[0])
        names = batch.names + OB_COLUMNS
        return FeatureBatch(c, names, np.hstack([batch.values, extra]), batch.events + [e for _, e in events])

    @staticmethod
    def _structure_by_row(batch: FeatureBatch, labels: list, inverse: np.ndarray, close_ts: np.ndarray) -> dict:
        """SwingOperator's swing and break events of this batch, as (kind, ts, price) lists by row.

        Events, not the ``bos``/``choch`` columns, because a bar breaking both ways as two CHoCHs nets to 0 there.
        """
        wanted = [e for e in batch.events if e.kind in _KIND_ORDER]
        if not wanted:
            return {}
        label_index = {label: i for i, label in enumerate(labels)}
        candidates = np.flatnonzero(np.isin(close_ts, np.array([e.confirmed_ts for e in wanted], np.int64)))
        row_of = {(int(inverse[r]), int(close_ts[r])): int(r) for r in candidates}
        out: dict[int, list] = {}
        for e in wanted:
            r = row_of.get((label_index.get((e.market, e.timeframe), -1), e.confirmed_ts))
            if r is not None:
                out.setdefault(r, []).append((e.kind, e.ts, e.price))
        return out

    def settings(self) -> dict:
        return {"lookback": self.lookback, "max_blocks": self.max_blocks, "mitigate_by": self.mitigate_by}
