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

from engine.keyed import KeyedArrayOperator, SlotMap
from engine.structure.events import event_columns, event_order
from schemas.batches import KIND_CODE, EventBatch, FeatureBatch
from schemas.errors import ConfigError

FVG_COLUMNS = ["fvg_bull_top", "fvg_bull_bottom", "fvg_bear_top", "fvg_bear_bottom"]
DIRECTIONS = ("bull", "bear")  # index 0 / 1 of the per-direction state axis
# within one bar of one key, events follow this order (a gap is touched before it is filled)
_STEP_ORDER = {"touched": 0, "mitigated": 1, "invalidated": 1, "merged": 2, "evicted": 3, "created": 4}
_EMPTY = 0  # gap states: 0 empty, 1 open, 2 touched (engine.structure.gap_kernel)
_KINDS = tuple(f"fvg_{d}" for d in DIRECTIONS)
_STEPS = ("touched", "mitigated", "invalidated", "merged", "evicted", "created")  # by the kernel's codes
_STEP_RANK = np.array([_STEP_ORDER[step] for step in _STEPS])
_FIRST_CODE = KIND_CODE["fvg_bull_touched"]  # kind codes run direction-major, then by step as in _STEPS


def _events(markets: list[str], ints: np.ndarray, floats: np.ndarray) -> EventBatch:
    """Events from the kernel's event fields (already in order).

    gap_id = stable_id(market, tf, kind, ts); id = stable_id(gap_id, step).
    """
    m, tf, confirmed, d, step, ts, joined = ints
    meta = np.column_stack([floats[1], floats[2], joined.astype(np.float64)])
    return event_columns(markets, m, tf, _FIRST_CODE + d * len(_STEPS) + step, ts, confirmed, floats[0], meta, None)


class FVGOperator(KeyedArrayOperator):
    """Keyed fair-value-gap detector and lifecycle tracker over closed candles."""

    packed = True  # the kernel takes the state as one record array
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

    def update(self, batch: FeatureBatch) -> FeatureBatch:
        """Advance every key by its bars in order; append the FVG columns and the events these bars confirm."""
        from engine.structure.gap_kernel import N_FLOATS, N_INTS, gap_rows

        c = batch.candles
        n_in = batch.values.shape[1]
        out = np.empty((len(c), n_in + len(FVG_COLUMNS)))
        events = EventBatch.empty()
        if len(c):
            join, body = self.join_consecutive, self.require_body

            def kernel(*convention):  # see engine.structure.kernel_buffers
                return gap_rows(*convention, c.market, c.tf, c.open_ts, c.open, c.high, c.low, c.close, c.gap,
                                batch.values, out, self.rows, join, body)

            ints, floats, ordered = self.run_kernel(c, kernel, N_INTS, N_FLOATS)
            if ints.shape[1]:
                # within one bar of one key: by step, then gap, then direction
                order = None if ordered else event_order(c.markets, ints[0], ints[1], ints[2],
                                                         _STEP_RANK[ints[4]], ints[5], ints[3])
                if order is not None:
                    ints, floats = ints[:, order], floats[:, order]
                events = _events(c.markets, ints, floats)
        else:
            out[:, :n_in] = batch.values
        return FeatureBatch(c, batch.names + FVG_COLUMNS, out, EventBatch.concat([batch.events, events]))

    def settings(self) -> dict:
        return {"join_consecutive": self.join_consecutive, "max_open": self.max_open,
                "require_body": self.require_body}
