"""Hash partitioning of batches onto shards: a market always lands on the same shard of a stage."""

from __future__ import annotations

import zlib

import numpy as np

from schemas.batches import (
    CandleBatch,
    FeatureBatch,
    TradeBatch,
    concat_features,
    take_features,
)


def shard_of(market: str, n: int) -> int:
    """Stable shard index of a market key (crc32, identical across processes and machines)."""
    return zlib.crc32(market.encode()) % n


def _markets_and_codes(batch) -> tuple[list[str], np.ndarray]:
    if isinstance(batch, FeatureBatch):
        return batch.candles.markets, batch.candles.market
    return batch.markets, batch.market


def partition(batch, n: int) -> list[tuple[int, object]]:
    """Split a TradeBatch, CandleBatch or FeatureBatch into (shard, sub-batch) pairs, empty parts omitted."""
    markets, codes = _markets_and_codes(batch)
    if n == 1:
        return [(0, batch)] if len(batch) or getattr(batch, "events", None) else []
    lut = np.array([shard_of(m, n) for m in markets], np.int64)
    row_shard = lut[codes] if len(markets) else np.empty(0, np.int64)
    out = []
    for shard in range(n):
        idx = np.flatnonzero(row_shard == shard)
        mine = {m for m, s in zip(markets, lut) if s == shard}
        if isinstance(batch, FeatureBatch):
            part = take_features(batch, idx, mine)
            if len(part) or part.events:
                out.append((shard, part))
        elif len(idx):
            out.append((shard, batch.take(idx)))
    return out


def merge(batches: list):
    """Concatenate batches of one type (lingering parts sent on together); the merged batch keeps the
    oldest ingest stamp, so latency counts from the row that waited longest."""
    if len(batches) == 1:
        return batches[0]
    first = batches[0]
    if isinstance(first, TradeBatch):
        out = TradeBatch.concat(batches)
        out.ts_init = min(b.ts_init for b in batches)
    elif isinstance(first, CandleBatch):
        out = CandleBatch.concat(batches)
        out.ts_init = min(b.ts_init for b in batches)
    elif isinstance(first, FeatureBatch):
        out = concat_features(batches)
        out.candles.ts_init = min(b.candles.ts_init for b in batches)
    else:
        raise TypeError(f"cannot merge batches of type {type(first).__name__}")
    return out
