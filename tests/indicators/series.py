"""Real bar series the indicator tests run on (freqtrade's altcoin/BTC 5m candles and more)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pyarrow.feather as feather

from engine.indicators.base import Bars
from tests.data_paths import SHARED_DATA as DATA

CANDLE_FILES = sorted((DATA / "candles").glob("*_BTC-5m.feather")) + [
    DATA / "candles" / "UNITTEST_BTC-30m.feather",
    DATA / "candles" / "futures" / "XRP_USDT_USDT-5m-futures.feather",
]


@lru_cache(maxsize=None)
def load_bars(path: Path) -> Bars:
    t = feather.read_table(path)
    ts = t.column("date").cast("int64").to_numpy()
    col = lambda n: t.column(n).to_numpy().astype(np.float64)  # noqa: E731
    return Bars(ts.astype(np.int64), col("open"), col("high"), col("low"), col("close"), col("volume"))


def all_series() -> list[tuple[str, Bars]]:
    """(name, bars) for every real candle file used in indicator tests."""
    return [(p.stem, load_bars(p)) for p in CANDLE_FILES]
