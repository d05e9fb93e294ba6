"""Real freqtrade candles as risk-test inputs: single-market arrays and multi-market candle batches."""

from __future__ import annotations

import numpy as np

from engine.indicators.base import Bars
from schemas.batches import CandleBatch
from tests.indicators.series import DATA, load_bars

MARKETS = ("ADA_BTC", "LTC_BTC", "XMR_BTC", "ZEC_BTC")
TF_5M = 300 * 1_000_000_000


def bars(market: str) -> Bars:
    """5m bars of one freqtrade market."""
    return load_bars(DATA / "candles" / f"{market}-5m.feather")


def candle_batch(market: str, b: Bars, tf: int = TF_5M) -> CandleBatch:
    """One market's bars as a closed-candle batch (no gaps)."""
    n = len(b)
    zeros = np.zeros(n)
    return CandleBatch([market], np.zeros(n, np.int32), np.full(n, tf, np.int64), b.ts, b.open, b.high, b.low,
                       b.close, b.volume, zeros, zeros, b.close.copy(), np.zeros(n, np.int64), np.zeros(n, bool))


def interleaved(markets=MARKETS, limit: int | None = None) -> CandleBatch:
    """Several markets' bars in one batch, rows ordered by time as a live stream would deliver them."""
    parts = [candle_batch(mk, bars(mk).take(slice(0, limit))) for mk in markets]
    both = CandleBatch.concat(parts)
    return both.take(np.argsort(both.open_ts, kind="stable"))
