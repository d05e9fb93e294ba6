"""Real bars from tests/data/candles as engine batches, repeated under new market names to
reach the row counts a load or fault test needs (row values stay real)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from schemas.batches import CandleBatch
from tests.data_paths import SHARED_DATA


@lru_cache(maxsize=1)
def _series() -> list[tuple[str, object]]:
    from tests.indicators.series import load_bars
    return [(p.stem.split("-")[0], load_bars(p)) for p in sorted((SHARED_DATA / "candles").glob("*_BTC-5m.feather"))]


def real_candles(min_rows: int = 0) -> CandleBatch:
    """Every real 5m bar, repeated under market names ``NAME#k`` until at least ``min_rows`` rows."""
    parts, total, k = [], 0, 0
    while total < max(min_rows, 1) or k == 0:
        for name, b in _series():
            n = len(b)
            parts.append(CandleBatch([f"BINANCE:{name}#{k}"], np.zeros(n, np.int32), np.full(n, 300_000_000_000),
                                     b.ts, b.open, b.high, b.low, b.close, b.volume, b.volume * 0.5,
                                     b.volume * 0.5, b.close, np.arange(n, dtype=np.int64) % 97,
                                     np.zeros(n, bool)))
            total += n
        k += 1
    return CandleBatch.concat(parts)


def chunks(batch: CandleBatch, size: int):
    """The batch in consecutive slices of ``size`` rows."""
    for start in range(0, len(batch), size):
        yield batch.take(slice(start, start + size))
