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

from engine.keyed import KeyedArrayOperator, SlotMap
from engine.structure.events import event_columns, event_order
from schemas.batches import KIND_CODE, EventBatch, FeatureBatch
from schemas.errors import ConfigError

OB_COLUMNS = ["ob_bull_top", "ob_bull_bottom", "ob_bear_top", "ob_bear_bottom"]
DIRECTIONS = ("bull", "bear")
MITIGATE_MODES = ("wick", "close")
# SwingOperator's events this operator reads, by the kernels' kind codes (engine.structure.swing_kernel)
_MARK_CODES = {"swing_high": 0, "swing_low": 1, "bos_bull": 2, "choch_bull": 3, "bos_bear": 4, "choch_bear": 5}
assert all(KIND_CODE[k] == code for k, code in _MARK_CODES.items())  # the kernels' codes are the batch's codes
_NO_MARKS, _NO_PRICES = np.empty((0, 5), np.int64), np.empty(0, np.float64)
# steps by the kernel's codes, which are also their order within one bar of one key (touched before mitigated)
_STEPS = ("breaker_invalidated", "touched", "mitigated", "breaker_created", "evicted", "created")
_EMPTY = 0  # block states: 0 empty, 1 live, 2 touched, 3 breaker (engine.structure.block_kernel)
_KINDS = tuple(f"ob_{d}" for d in DIRECTIONS)
_FIRST_CODE = KIND_CODE["ob_bull_breaker_invalidated"]  # kind codes run direction-major, then by step


def _events(markets: list[str], ints: np.ndarray, floats: np.ndarray) -> EventBatch:
    """Events from the kernel's event fields (already in order).

    block_id = stable_id(market, tf, kind, ts, break_ts); id = stable_id(block_id, step).
    """
    m, tf, confirmed, d, step, ts = ints
    # meta: top, bottom, volume, balance, level, choch, break_ts
    return event_columns(markets, m, tf, _FIRST_CODE + d * len(_STEPS) + step, ts, confirmed, floats[0],
                         floats[1:8].T, None)


class OrderBlockOperator(KeyedArrayOperator):
    """Keyed order-block detector and lifecycle tracker, fed by SwingOperator's output."""

    packed = True  # the kernel takes the state as one record array
    name = "order_blocks"
    version = "2"  # 2: volumes of the last three bars only

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
            # ring buffer of the last `lookback` real bars; volumes of the last three only (the displacement)
            "bts": ((n,), np.int64, 0), "bhigh": ((n,), np.float64, np.nan), "blow": ((n,), np.float64, np.nan),
            "bvol": ((3,), np.float64, np.nan), "count": ((), np.int64, 0),
            # open time of the latest confirmed swing high / low (the level a break refers to), -1 none
            "swing_ts": ((2,), np.int64, -1),
            "state": ((2, k), np.int8, _EMPTY), "top": ((2, k), np.float64, np.nan),
            "bot": ((2, k), np.float64, np.nan), "ts": ((2, k), np.int64, 0), "meta": ((2, k, 5), np.float64, np.nan),
            "seq": ((2, k), np.int64, 0), "next_seq": ((), np.int64, 0),
            "cols": ((len(OB_COLUMNS),), np.float64, np.nan),  # cached output row, refreshed on change
        }
        self.grow_state(spec, capacity)

    def update(self, batch: FeatureBatch) -> FeatureBatch:
        """Advance every key by its bars in order; append the order-block columns and the events these bars confirm."""
        from engine.structure.block_kernel import N_FLOATS, N_INTS, block_rows

        c = batch.candles
        n_in = batch.values.shape[1]
        out = np.empty((len(c), n_in + len(OB_COLUMNS)))
        events = EventBatch.empty()
        if len(c):
            marks, prices = self._marks(batch)
            by_wick = self.mitigate_by == "wick"

            def kernel(*convention):  # see engine.structure.kernel_buffers
                return block_rows(*convention, c.market, c.tf, c.open_ts, c.open, c.high, c.low, c.close,
                                  c.volume, c.gap, batch.values, out, marks, prices, self.rows, by_wick)

            ints, floats, ordered = self.run_kernel(c, kernel, N_INTS, N_FLOATS)
            if ints.shape[1]:
                # within one bar of one key: by step (the codes are in step order), then block, then direction
                order = None if ordered else event_order(c.markets, ints[0], ints[1], ints[2], ints[4], ints[5],
                                                         ints[3])
                if order is not None:
                    ints, floats = ints[:, order], floats[:, order]
                events = _events(c.markets, ints, floats)
        else:
            out[:, :n_in] = batch.values
        return FeatureBatch(c, batch.names + OB_COLUMNS, out, EventBatch.concat([batch.events, events]))

    def _marks(self, batch: FeatureBatch) -> tuple[np.ndarray, np.ndarray]:
        """SwingOperator's swing and break events of this batch for the kernel: rows of (market index, tf,
        confirmed_ts, kind code, ts) and their prices.

        Events, not the ``bos``/``choch`` columns, because a bar breaking both ways as two CHoCHs nets to 0 there.
        """
        c = batch.candles
        wanted = batch.events.of_kinds(_MARK_CODES.values())
        if not len(wanted):
            return _NO_MARKS, _NO_PRICES
        market = wanted.market.astype(np.int64)
        if wanted.markets is not c.markets and wanted.markets != c.markets:  # events of another dictionary
            index = {m: i for i, m in enumerate(c.markets)}
            market = np.array([index.get(m, -1) for m in wanted.markets], np.int64)[market]
        marks = np.column_stack([market, wanted.tf, wanted.confirmed_ts, wanted.kind.astype(np.int64), wanted.ts])
        return marks, wanted.price

    def settings(self) -> dict:
        return {"lookback": self.lookback, "max_blocks": self.max_blocks, "mitigate_by": self.mitigate_by}
