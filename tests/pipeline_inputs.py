"""Real inputs shared by the pipeline tests: trades of three markets and 5m candles of altcoins."""

from __future__ import annotations

from functools import lru_cache

from engine.sources.files import load_any
from tests.data_paths import SHARED_DATA


@lru_cache(maxsize=None)
def real_inputs(small: bool = False) -> tuple:
    """(TradeBatch | CandleBatch, ...) loaded from tests/data; ``small`` trims them for slow paths."""
    trades = [SHARED_DATA / "trades" / "XRP_ETH-trades.parquet", SHARED_DATA / "trades" / "btcusdt-trades.parquet"]
    candles = sorted((SHARED_DATA / "candles").glob("*_BTC-5m.feather"))[: 2 if small else 4]
    out = []
    for p in trades + candles:
        batch, _ = load_any(str(p))
        if small:
            batch = batch.take(slice(0, 1500 if p in trades else 400))
        out.append(batch)
    return tuple(out)


def signal_bytes(signals) -> bytes:
    """The canonical serialised signal stream (what --out writes)."""
    from engine.sinks.jsonl import record_line
    return "".join(record_line(s) for s in signals).encode()
