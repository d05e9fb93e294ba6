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
from engine.ids import stable_id_text
from engine.keyed import KeyedArrayOperator, SlotMap, newest_bounds, rounds
from schemas.batches import FeatureBatch
from engine.structure import _timeframe_label, trusted_event

FVG_COLUMNS = ["fvg_bull_top", "fvg_bull_bottom", "fvg_bear_top", "fvg_bear_bottom"]
DIRECTIONS = ("bull", "bear")  # index 0 / 1 of the per-direction state axis
# within one bar of one key, events follow this order (a gap is touched before it is filled)
_STEP_ORDER = {"touched": 0, "mitigated": 1, "invalidated": 1, "merged": 2, "evicted": 3, "created": 4}
_EMPTY, _OPEN, _TOUCHED = 0, 1, 2
_KINDS = tuple(f"fvg_{d}" for d in DIRECTIONS)


def _first(pair: tuple):
    return pair[0]


class FVGOperator(KeyedArrayOperator):
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
        self.grow_state(spec, capacity)
        self._limits()

    def _limits(self, slots=None) -> None:
        """Per slot and direction, the price a bar must reach for any open gap to change (derived, not state).

        Bull: max over live gaps of the edge the next step needs (top while open, bottom once touched);
        bear: min of (bottom while open, top once touched). A bar beyond neither can skip ``_lifecycle``.
        """
        s = self.s
        if slots is None:
            self.lim = np.empty((self.capacity, 2))
            slots = slice(None)
        state, top, bot = s["gstate"][slots], s["gtop"][slots], s["gbot"][slots]
        is_open = state == _OPEN
        touched = state == _TOUCHED
        self.lim[slots, 0] = np.where(is_open[:, 0], top[:, 0], np.where(touched[:, 0], bot[:, 0], -np.inf)).max(1)
        self.lim[slots, 1] = np.where(is_open[:, 1], bot[:, 1], np.where(touched[:, 1], top[:, 1], np.inf)).min(1)

    def _event(self, out: list, key: tuple, d: int, step: str, ts: int, confirmed: int, price: float,
               top: float, bot: float, joined: int, gap_id: str | None = None) -> None:
        market, tf = key
        kind = _KINDS[d]
        if gap_id is None:
            gap_id = stable_id_text(f"{market}|{tf}|{kind}|{ts}")  # stable_id(market, tf, kind, ts)
        ev = trusted_event(stable_id_text(f"{gap_id}|{step}"), market, tf, f"{kind}_{step}", ts, confirmed, price,
                           {"top": top, "bottom": bot, "joined": float(joined)})
        out.append(((confirmed, market, tf, _STEP_ORDER[step], ts, d), ev))

    def _lifecycle(self, out: list, labels: list, kidx, slots, high, low, close, close_ts):
        """Touch / fill / break of every open gap by the current bar of each row.

        Returns, per row, whether a gap closed and whether any gap changed state.
        """
        s = self.s
        state, top, bot = s["gstate"][slots], s["gtop"][slots], s["gbot"][slots]
        h, lo, c = high[:, None], low[:, None], close[:, None]
        live = state != _EMPTY
        touched = np.empty(state.shape, bool)
        filled = np.empty(state.shape, bool)
        broken = np.empty(state.shape, bool)
        # bull (direction 0): near edge top, far edge bottom; bear (1): near bottom, far top
        touched[:, 0] = (state[:, 0] == _OPEN) & (lo <= top[:, 0])
        touched[:, 1] = (state[:, 1] == _OPEN) & (h >= bot[:, 1])
        filled[:, 0] = live[:, 0] & (lo <= bot[:, 0])
        filled[:, 1] = live[:, 1] & (h >= top[:, 1])
        broken[:, 0] = c < bot[:, 0]
        broken[:, 1] = c > top[:, 1]
        hit = touched | filled
        jj, dd, gg = np.nonzero(hit)
        if len(jj):
            sl = slots[jj]
            rows = zip(jj.tolist(), dd.tolist(), top[jj, dd, gg].tolist(), bot[jj, dd, gg].tolist(),
                       s["gts"][sl, dd, gg].tolist(), s["gjoined"][sl, dd, gg].tolist(),
                       touched[jj, dd, gg].tolist(), filled[jj, dd, gg].tolist(), broken[jj, dd, gg].tolist(),
                       close_ts[jj].tolist(), kidx[jj].tolist())
            event = self._event
            for j, d, t, b, ts, joined, is_touched, is_filled, is_broken, confirmed, k in rows:
                key = labels[k]
                market, tf = key
                gap_id = stable_id_text(f"{market}|{tf}|{_KINDS[d]}|{ts}")
                edge_near, edge_far = (t, b) if d == 0 else (b, t)
                if is_touched:
                    event(out, key, d, "touched", ts, confirmed, edge_near, t, b, joined, gap_id)
                if is_filled:
                    event(out, key, d, "invalidated" if is_broken else "mitigated", ts, confirmed, edge_far, t, b,
                          joined, gap_id)
            state = np.where(filled, _EMPTY, np.where(touched, _TOUCHED, state)).astype(np.int8)
            s["gstate"][slots] = state
        return filled.any(axis=(1, 2)), hit.any(axis=(1, 2))

    def _detect(self, out: list, labels: list, kidx, slots, op, high, low, close, open_ts, close_ts) -> np.ndarray:
        """Gaps whose middle bar is the previous bar, confirmed by the current one; then shift the window."""
        s = self.s
        win_hi, win_lo = s["high"][slots], s["low"][slots]
        hp, lp = win_hi[:, 0], win_lo[:, 0]
        ready = s["run"][slots] >= 2
        bull = ready & (low > hp)
        bear = ready & (high < lp)
        if self.require_body:
            mo, mc = s["open"][slots], s["close"][slots]
            bull &= mc > mo
            bear &= mc < mo
        found = bull | bear
        if found.any() and not self.join_consecutive:
            self._open_many(out, labels, kidx, slots, np.flatnonzero(found), bull, high, low, hp, lp, close_ts)
            s["pdir"][slots[~found]] = -1
        elif found.any():
            for j in np.flatnonzero(found).tolist():
                slot, key = int(slots[j]), labels[kidx[j]]
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
            s["pdir"][slots[~found]] = -1
        else:
            s["pdir"][slots] = -1
        # shift the three-bar window: the current bar becomes the middle candidate
        win_hi[:, 0], win_lo[:, 0] = win_hi[:, 1], win_lo[:, 1]
        win_hi[:, 1], win_lo[:, 1] = high, low
        s["high"][slots], s["low"][slots] = win_hi, win_lo
        s["open"][slots], s["close"][slots], s["ts"][slots] = op, close, open_ts
        s["run"][slots] = np.minimum(s["run"][slots] + 1, 2)
        return found

    def _open_many(self, out: list, labels: list, kidx, slots, f, bull, high, low, hp, lp, close_ts) -> None:
        """``_insert`` for the gaps found at rows ``f`` (one per row and slot), vectorised; no joining."""
        s = self.s
        sl = slots[f]
        is_bull = bull[f]
        d = np.where(is_bull, 0, 1)
        top = np.where(is_bull, low[f], lp[f])
        bot = np.where(is_bull, hp[f], high[f])
        ts = s["ts"][sl]
        confirmed = close_ts[f]
        free = s["gstate"][sl, d] == _EMPTY
        has_free = free.any(axis=1)
        g = np.where(has_free, free.argmax(axis=1), s["gseq"][sl, d].argmin(axis=1))
        row_k = kidx[f]
        if not has_free.all():  # bounded state: the oldest open gap of this direction makes room
            for i in np.flatnonzero(~has_free).tolist():
                self._close(out, labels[row_k[i]], int(sl[i]), int(d[i]), int(g[i]), "evicted", int(confirmed[i]))
        s["gstate"][sl, d, g], s["gtop"][sl, d, g], s["gbot"][sl, d, g] = _OPEN, top, bot
        s["gts"][sl, d, g], s["gjoined"][sl, d, g] = ts, 1
        seq = s["seq"][sl]
        s["gseq"][sl, d, g] = seq
        s["seq"][sl] = seq + 1
        s["pdir"][sl], s["ptop"][sl], s["pbot"][sl], s["pjoined"][sl], s["pts"][sl] = d, top, bot, 1, ts
        event = self._event
        for k, dd, tt, bb, t, c in zip(row_k.tolist(), d.tolist(), top.tolist(), bot.tolist(), ts.tolist(),
                                       confirmed.tolist()):
            event(out, labels[k], dd, "created", t, c, (tt + bb) / 2, tt, bb, 1)

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
        return newest_bounds(s["gstate"][slots] != _EMPTY, s["gseq"][slots], s["gtop"][slots], s["gbot"][slots])

    def update(self, batch: FeatureBatch) -> FeatureBatch:
        """Advance every key by its bars in order; append the FVG columns and the events these bars confirm."""
        c = batch.candles
        extra = np.full((len(c), len(FVG_COLUMNS)), np.nan)
        events: list = []
        if len(c):
            keys, kidx, slots = self.key_slots(c.markets, c.market, c.tf)
            labels = [(m, _timeframe_label(t)) for m, t in keys]
            close_ts, gap, s, lim = c.close_ts, c.gap, self.s, self.lim
            any_gap = bool(gap.any())
            for rows in rounds(slots):
                all_rows = rows
                sl = slots[rows]
                if any_gap:
                    real = ~gap[rows]
                    if not real.all():
                        # a gap bar breaks the three consecutive bars and any join run; open gaps wait for prices
                        s["run"][sl[~real]] = 0
                        s["pdir"][sl[~real]] = -1
                        rows, sl = rows[real], sl[real]
                if len(rows):
                    high, low, close, cts = c.high[rows], c.low[rows], c.close[rows], close_ts[rows]
                    row_k = kidx[rows]
                    bounds = lim[sl]
                    # only bars that reach some open gap's next edge can change it
                    cand = np.flatnonzero((low <= bounds[:, 0]) | (high >= bounds[:, 1]))
                    closed = np.zeros(len(rows), bool)
                    dirty = np.zeros(len(rows), bool)
                    if len(cand):
                        closed[cand], dirty[cand] = self._lifecycle(events, labels, row_k[cand], sl[cand], high[cand],
                                                                    low[cand], close[cand], cts[cand])
                    opened = self._detect(events, labels, row_k, sl, c.open[rows], high, low, close,
                                          c.open_ts[rows], cts)
                    changed = closed | opened
                    if changed.any():
                        s["cols"][sl[changed]] = self._columns(sl[changed])
                    dirty |= opened
                    if dirty.any():
                        self._limits(sl[dirty])
                extra[all_rows] = s["cols"][slots[all_rows]]
            events.sort(key=_first)
        names = batch.names + FVG_COLUMNS
        return FeatureBatch(c, names, np.hstack([batch.values, extra]), batch.events + [e for _, e in events])

    def settings(self) -> dict:
        return {"join_consecutive": self.join_consecutive, "max_open": self.max_open,
                "require_body": self.require_body}

    def _restored(self) -> None:
        self._limits()
