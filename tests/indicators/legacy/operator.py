"""The round-based streaming computation the row kernels replaced, as a reference."""

from __future__ import annotations

import numpy as np

from engine.keyed import SlotMap, row_keys
from schemas.batches import CandleBatch
from tests.indicators.legacy.base import Bars, Indicator
from tests.indicators.legacy.registry import parse_specs


def rounds(slots: np.ndarray) -> list[np.ndarray]:
    """Split row indices into rounds where each slot appears at most once, preserving per-slot order."""
    n = len(slots)
    if n == 0:
        return []
    order = np.argsort(slots, kind="stable")
    sorted_slots = slots[order]
    starts = np.flatnonzero(np.r_[True, sorted_slots[1:] != sorted_slots[:-1]])
    if len(starts) == n:
        return [np.arange(n)]
    group_start = np.repeat(starts, np.diff(np.r_[starts, n]))
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n) - group_start
    if rank.max() == 0:
        return [np.arange(n)]
    by_rank = np.argsort(rank, kind="stable")
    bounds = np.flatnonzero(np.diff(rank[by_rank])) + 1
    return np.split(by_rank, bounds)


class LegacyIndicatorOperator:
    """IndicatorOperator.update as it was: one vectorised numpy step per indicator per round."""

    def __init__(self, specs: str) -> None:
        self.indicators: list[Indicator] = parse_specs(specs)
        self.names = [c for ind in self.indicators for c in ind.column_names()]
        self.keys = SlotMap()

    def update(self, batch: CandleBatch) -> np.ndarray:
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
        return values
