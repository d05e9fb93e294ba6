"""Batch indicator time against TA-Lib on the same real bars (ratio; target <= 3x TA-Lib)."""

from __future__ import annotations

import time

import numpy as np
import talib

from engine.indicators.base import Bars
from engine.indicators.registry import available, parse_spec
from tests.indicators.series import all_series

TARGET = 3.0

# our spec -> TA-Lib call on Bars
REFERENCE = {
    "sma:30": lambda b: talib.SMA(b.close, 30), "ema:30": lambda b: talib.EMA(b.close, 30),
    "wma:30": lambda b: talib.WMA(b.close, 30), "dema:30": lambda b: talib.DEMA(b.close, 30),
    "tema:30": lambda b: talib.TEMA(b.close, 30), "kama:30": lambda b: talib.KAMA(b.close, 30),
    "rsi:14": lambda b: talib.RSI(b.close, 14), "macd:12:26:9": lambda b: talib.MACD(b.close, 12, 26, 9),
    "bbands:20:2": lambda b: talib.BBANDS(b.close, 20, 2, 2), "stddev:20": lambda b: talib.STDDEV(b.close, 20),
    "linreg_slope:14": lambda b: talib.LINEARREG_SLOPE(b.close, 14), "roc:10": lambda b: talib.ROC(b.close, 10),
    "mom:10": lambda b: talib.MOM(b.close, 10), "trix:30": lambda b: talib.TRIX(b.close, 30),
    "stochrsi:14:5:3": lambda b: talib.STOCHRSI(b.close, 14, 5, 3),
    "atr:14": lambda b: talib.ATR(b.high, b.low, b.close, 14), "natr:14": lambda b: talib.NATR(b.high, b.low, b.close, 14),
    "adx:14": lambda b: talib.ADX(b.high, b.low, b.close, 14),
    "plus_di:14": lambda b: talib.PLUS_DI(b.high, b.low, b.close, 14),
    "minus_di:14": lambda b: talib.MINUS_DI(b.high, b.low, b.close, 14),
    "stoch:14:3:3": lambda b: talib.STOCH(b.high, b.low, b.close, 14, 3, 0, 3, 0),
    "willr:14": lambda b: talib.WILLR(b.high, b.low, b.close, 14), "cci:20": lambda b: talib.CCI(b.high, b.low, b.close, 20),
    "mfi:14": lambda b: talib.MFI(b.high, b.low, b.close, b.volume, 14), "obv": lambda b: talib.OBV(b.close, b.volume),
    "ultosc:7:14:28": lambda b: talib.ULTOSC(b.high, b.low, b.close, 7, 14, 28),
    "aroon:14": lambda b: talib.AROON(b.high, b.low, 14), "sar:0.02:0.2": lambda b: talib.SAR(b.high, b.low, 0.02, 0.2),
}


def _best(fn, repeat: int = 7) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _bars() -> Bars:
    series = [b for _, b in all_series()]
    cat = lambda f: np.concatenate([getattr(b, f) for b in series])  # noqa: E731
    return Bars(cat("ts"), cat("open"), cat("high"), cat("low"), cat("close"), cat("volume"))


def main() -> None:
    bars = _bars()
    print(f"{len(bars):,} real bars (freqtrade 5m/30m candles, concatenated); best of 7 runs each")
    print(f"  {'indicator':<18}{'ours ms':>10}{'TA-Lib ms':>11}{'ratio':>8}")
    ratios = []
    registered = available()
    for spec, ref in REFERENCE.items():
        if spec.split(":")[0] not in registered:
            print(f"  {spec:<18} not implemented")
            continue
        ind = parse_spec(spec)
        ours = _best(lambda: ind.batch(bars))
        theirs = _best(lambda: ref(bars))
        ratio = ours / theirs
        ratios.append(ratio)
        flag = "" if ratio <= TARGET else "  > target"
        print(f"  {spec:<18}{ours * 1e3:>10.3f}{theirs * 1e3:>11.3f}{ratio:>8.2f}{flag}")
    if ratios:
        gm = float(np.exp(np.mean(np.log(ratios))))
        met = sum(r <= TARGET for r in ratios)
        print(f"  geometric mean ratio {gm:.2f}; {met}/{len(ratios)} within {TARGET}x TA-Lib; "
              f"worst {max(ratios):.1f}x")
