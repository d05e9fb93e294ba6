"""Keyed operator computing a set of indicators on closed candles for many (market, timeframe) keys."""

from __future__ import annotations

import numpy as np

from engine.indicators.base import Indicator
from engine.indicators.registry import parse_specs
from engine.indicators.rows import Rows
from engine.keyed import SlotMap, row_keys
from engine.operator import pack_state, unpack_state
from schemas.batches import CandleBatch, FeatureBatch


class IndicatorOperator:
    """Advances every configured indicator by each closed candle: one compiled call per indicator per
    batch, walking the rows in order (each key sees its bars in order).

    Gap candles (no trades) leave indicator state untouched and get NaN values.
    """

    name = "indicators"
    version = "2"  # 2: the row kernels' state (ring positions, tracked window extremes)

    def __init__(self, specs: str | list[str]) -> None:
        text = specs if isinstance(specs, str) else ",".join(specs)
        self.specs = text
        self.indicators: list[Indicator] = parse_specs(text)
        self.names: list[str] = [c for ind in self.indicators for c in ind.column_names()]
        self.keys = SlotMap()

    def update(self, batch: CandleBatch) -> FeatureBatch:
        values = np.full((len(batch), len(self.names)), np.nan)
        if len(batch):
            rows = Rows.of(self._slots(batch), batch.gap, batch.open_ts, batch.high, batch.low, batch.close,
                           batch.volume)
            col = 0
            for ind in self.indicators:
                ind.run(rows, values, col)
                col += len(ind.outputs)
        return FeatureBatch(batch, list(self.names), values)

    def _slots(self, batch: CandleBatch) -> np.ndarray:
        """The slot of each row, allocating slots for new keys."""
        tf0 = int(batch.tf[0])
        if (batch.tf == tf0).all():  # the common case: one timeframe, every key known
            table, _ranks = self.keys.table(batch.markets, tf0)
            slots = table[batch.market]
            if slots.min() >= 0:
                return slots
        keys, inverse = row_keys(batch.markets, batch.market, batch.tf)
        return self.keys.lookup(keys)[inverse]

    def flush(self) -> None:
        """Nothing is pending: every closed candle was already computed."""
        return None

    def drop(self, market: str, tf_ns: int) -> None:
        """Forget one key's state (explicit eviction)."""
        slot = self.keys.release((market, tf_ns))
        if slot is not None:
            for ind in self.indicators:
                if slot < ind.capacity:
                    ind.reset(np.array([slot]))

    def snapshot(self) -> bytes:
        return pack_state(self, {"specs": self.specs, "keys": self.keys.state(),
                                 "indicators": [i.get_state() for i in self.indicators]})

    def restore(self, data: bytes) -> None:
        state = unpack_state(self, data)
        self.__init__(state["specs"])
        self.keys.load(state["keys"])
        for ind, s in zip(self.indicators, state["indicators"]):
            ind.set_state(s)

    def reset(self) -> None:
        self.__init__(self.specs)
