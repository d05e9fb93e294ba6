"""Keyed operator computing a set of indicators on closed candles for many (market, timeframe) keys."""

from __future__ import annotations

import numpy as np

from engine.indicators.base import Bars, Indicator
from engine.indicators.registry import parse_specs
from engine.keyed import SlotMap, rounds, row_keys
from engine.operator import pack_state, unpack_state
from schemas.batches import CandleBatch, FeatureBatch


class IndicatorOperator:
    """Advances every configured indicator by each closed candle, one vectorised step per bar boundary.

    Gap candles (no trades) leave indicator state untouched and get NaN values.
    """

    name = "indicators"
    version = "1"

    def __init__(self, specs: str | list[str]) -> None:
        text = specs if isinstance(specs, str) else ",".join(specs)
        self.specs = text
        self.indicators: list[Indicator] = parse_specs(text)
        self.names: list[str] = [c for ind in self.indicators for c in ind.column_names()]
        self.keys = SlotMap()

    def update(self, batch: CandleBatch) -> FeatureBatch:
        values = np.full((len(batch), len(self.names)), np.nan)
        if len(batch):
            keys, inverse = row_keys(batch.markets, batch.market, batch.tf)
            slots = self.keys.lookup(keys)[inverse]
            live = np.flatnonzero(~batch.gap)
            for part in rounds(slots[live]):
                rows = live[part]
                bars = Bars(batch.open_ts[rows], batch.open[rows], batch.high[rows], batch.low[rows],
                            batch.close[rows], batch.volume[rows])
                col = 0
                for ind in self.indicators:
                    out = ind.update(slots[rows], bars)
                    values[rows, col:col + out.shape[1]] = out
                    col += out.shape[1]
        return FeatureBatch(batch, list(self.names), values)

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
