"""Streaming update cost per market-update against talipp, with many markets per shard.

Ours advances every market of a shard in one vectorised call per bar; talipp updates one
indicator object per market. Target: >= 10x cheaper per market-update with >= 100 markets.
"""

from __future__ import annotations

import os
import time

import numpy as np
from talipp import indicators as tp
from talipp.ohlcv import OHLCV

from engine.indicators.base import Bars
from engine.indicators.registry import parse_spec
from tests.indicators.series import all_series

SHARD_SIZES = [int(x) for x in os.environ.get("BENCH_MARKETS", "100,1000").split(",")]
BARS = 500
TALIPP_MARKETS = 20  # its cost per update does not depend on how many markets there are
TARGET = 10.0

CASES = {  # our spec -> (talipp factory, input kind)
    "sma:20": (lambda: tp.SMA(20), "close"), "ema:20": (lambda: tp.EMA(20), "close"),
    "rsi:14": (lambda: tp.RSI(14), "close"), "macd:12:26:9": (lambda: tp.MACD(12, 26, 9), "close"),
    "bbands:20:2": (lambda: tp.BB(20, 2.0), "close"), "atr:14": (lambda: tp.ATR(14), "ohlcv"),
    "adx:14": (lambda: tp.ADX(14, 14), "ohlcv"), "stoch:14:3:3": (lambda: tp.Stoch(14, 3), "ohlcv"),
    "cci:20": (lambda: tp.CCI(20), "ohlcv"), "obv": (lambda: tp.OBV(), "ohlcv"),
    "kama:10": (lambda: tp.KAMA(10, 2, 30), "close"), "willr:14": (lambda: tp.Williams(14), "ohlcv"),
}


def _matrix(markets: int) -> dict[str, np.ndarray]:
    """(BARS, markets) arrays cut from real candles: each market is a different window of real bars."""
    series = [b for _, b in all_series()]
    out = {f: np.empty((BARS, markets)) for f in ("open", "high", "low", "close", "volume")}
    for m in range(markets):
        b = series[m % len(series)]
        start = (m * 37) % (len(b) - BARS)
        for f in out:
            out[f][:, m] = getattr(b, f)[start:start + BARS]
    return out


def _best(fn, repeat: int = 3) -> float:
    return min(fn() for _ in range(repeat))


def _ours(spec: str, data: dict[str, np.ndarray]) -> float:
    ind = parse_spec(spec)
    markets = data["close"].shape[1]
    slots = np.arange(markets)
    ts = np.zeros(markets, np.int64)
    t0 = time.perf_counter()
    for i in range(BARS):
        ind.update(slots, Bars(ts, data["open"][i], data["high"][i], data["low"][i], data["close"][i],
                               data["volume"][i]))
    return (time.perf_counter() - t0) / (BARS * markets)


def _talipp(factory, kind: str, data: dict[str, np.ndarray]) -> float:
    objs = [factory() for _ in range(TALIPP_MARKETS)]
    if kind == "close":
        rows = [[float(data["close"][i, m]) for m in range(TALIPP_MARKETS)] for i in range(BARS)]
    else:
        rows = [[OHLCV(*(float(data[f][i, m]) for f in ("open", "high", "low", "close", "volume")))
                 for m in range(TALIPP_MARKETS)] for i in range(BARS)]
    t0 = time.perf_counter()
    for i in range(BARS):
        row = rows[i]
        for m in range(TALIPP_MARKETS):
            objs[m].add(row[m])
    return (time.perf_counter() - t0) / (BARS * TALIPP_MARKETS)


def main() -> None:
    data = _matrix(max(SHARD_SIZES))
    talipp_cost = {spec: _best(lambda: _talipp(factory, kind, data)) for spec, (factory, kind) in CASES.items()}
    print(f"{BARS} bars; ours: one vectorised update per bar for all markets of a shard; "
          f"talipp: one object per market ({TALIPP_MARKETS} markets timed); best of 3 runs")
    header = "".join(f"{f'{m} mkts ns':>12}{'x':>7}" for m in SHARD_SIZES)
    print(f"  {'indicator':<16}{'talipp ns':>11}{header}")
    ups: dict[int, list[float]] = {m: [] for m in SHARD_SIZES}
    for spec in CASES:
        cells = ""
        for m in SHARD_SIZES:
            try:
                ours = _best(lambda: _ours(spec, {k: v[:, :m] for k, v in data.items()}))
            except Exception as e:  # an indicator not implemented yet is reported, not fatal
                cells = f"  unavailable: {e}"
                break
            ups[m].append(talipp_cost[spec] / ours)
            cells += f"{ours * 1e9:>12.0f}{talipp_cost[spec] / ours:>6.1f}x"
        print(f"  {spec:<16}{talipp_cost[spec] * 1e9:>11.0f}{cells}")
    for m, u in ups.items():
        if u:
            gm = float(np.exp(np.mean(np.log(u))))
            print(f"  {m} markets/shard: geometric mean speed-up {gm:.1f}x; "
                  f"{sum(x >= TARGET for x in u)}/{len(u)} at >= {TARGET:.0f}x (target)")
