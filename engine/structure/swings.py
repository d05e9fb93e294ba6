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

from engine.keyed import KeyedArrayOperator, SlotMap
from engine.structure.events import event_columns, event_order
from schemas.batches import KIND_CODE, EventBatch, FeatureBatch

STRUCTURE_COLUMNS = ["swing_high", "swing_low", "last_swing_high", "last_swing_low", "trend", "bos", "choch"]
BREAK_MODES = ("close", "wick")
# event kinds by the kernel's codes (engine.structure.swing_kernel), and each one's rank in text order
_KINDS = ("swing_high", "swing_low", "bos_bull", "choch_bull", "bos_bear", "choch_bear")
_KIND_RANK = np.array([sorted(_KINDS).index(kind) for kind in _KINDS])
_CODES = np.array([KIND_CODE[k] for k in _KINDS], np.int16)


class SwingOperator(KeyedArrayOperator):
    """Keyed swing detector over closed candles; adds structure columns and StructureEvents."""

    packed = True  # the kernel takes the state as one record array
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
        """Advance every key by its bars in order; append the structure columns and the events these bars confirm."""
        from engine.structure.swing_kernel import N_FLOATS, N_INTS, swing_rows

        c = batch.candles
        n_in = batch.values.shape[1]
        out = np.empty((len(c), n_in + len(STRUCTURE_COLUMNS)))
        events = EventBatch.empty()
        if len(c):
            left, by_close = self.left, self.break_by == "close"

            def kernel(*convention):  # see engine.structure.kernel_buffers
                return swing_rows(*convention, c.market, c.tf, c.open_ts, c.high, c.low, c.close, c.gap,
                                  batch.values, out, self.rows, left, by_close)

            ints, floats, ordered = self.run_kernel(c, kernel, N_INTS, N_FLOATS)
            if ints.shape[1]:
                order = None if ordered else event_order(c.markets, ints[2], ints[3], ints[4],
                                                         _KIND_RANK[ints[0]], ints[1])
                if order is not None:
                    ints, floats = ints[:, order], floats[:, order]
                events = self._events(c.markets, ints, floats)
        else:
            out[:, :n_in] = batch.values
        return FeatureBatch(c, batch.names + STRUCTURE_COLUMNS, out, EventBatch.concat([batch.events, events]))

    def _events(self, markets: list[str], ints: np.ndarray, floats: np.ndarray) -> EventBatch:
        """Events from the kernel's event fields (already in order); id = stable_id(market, tf, kind, ts)."""
        kind, ts, market, tf, confirmed = ints
        swing = kind <= 1
        meta = np.where(swing[:, None], np.array([[self.left, self.right]], np.float64),
                        np.column_stack([floats[1], np.full(len(ts), np.nan)]))
        return event_columns(markets, market, tf, _CODES[kind], ts, confirmed, floats[0], meta, None)

    def settings(self) -> dict:
        return {"left": self.left, "right": self.right, "break_by": self.break_by}
