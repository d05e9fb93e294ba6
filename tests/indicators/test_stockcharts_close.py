"""KAMA, RSI and StochRSI against StockCharts' worked spreadsheets (an independent reference).

The sheets print values rounded to 6 decimals (StochRSI to 7), so the tolerances are the
half-unit of that rounding plus a small margin for our own float error (~1e-14 here).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from engine.indicators.base import Bars
from engine.indicators.registry import available, parse_spec
from tests.data_paths import SHARED_DATA
from tests.indicators.contract import assert_close

SHEETS = SHARED_DATA / "indicators" / "stockcharts"
HALF_UNIT_6DP = 0.5e-6


def _sheet(name: str) -> pd.DataFrame:
    return pd.read_csv(SHEETS / name)


def _flat_prefix(close: np.ndarray, n: int) -> np.ndarray:
    """``n`` copies of the first close ahead of the series.

    StockCharts starts Wilder's average gain/loss at 0 on the first bar, where TA-Lib (and we)
    seed them with the mean of the first ``n`` changes. After ``n`` flat bars that mean is exactly
    0 on the sheet's first bar, so both definitions then run the identical recursion.
    """
    return np.concatenate((np.full(n, close[0]), close))


def test_kama_matches_stockcharts() -> None:
    """Same definition as TA-Lib: ER over 10 bars, fast 2, slow 30, seeded with the prior close."""
    sheet = _sheet("cs-kama.csv")
    close = sheet["Close"].to_numpy()
    ours = parse_spec("kama:10").batch(Bars.from_close(close))[:, 0]
    ref = sheet["KAMA"].to_numpy().copy()
    # the sheet lists its seed (the close itself) one bar before the first KAMA; TA-Lib and we don't
    assert ref[9] == close[9]
    ref[9] = np.nan
    assert_close(ours, ref, 0.0, "kama:10 vs StockCharts", atol=HALF_UNIT_6DP + 1e-12)


def test_rsi_matches_stockcharts() -> None:
    sheet = _sheet("cs-rsi.csv")
    close = sheet["Close"].to_numpy()
    ours = parse_spec("rsi:14").batch(Bars.from_close(_flat_prefix(close, 14)))[14:, 0]
    ref = sheet["RSI"].to_numpy()
    shown = ~np.isnan(ref)
    assert np.flatnonzero(shown)[0] == 14  # the sheet's first RSI, 14 changes in
    assert_close(ours[shown], ref[shown], 0.0, "rsi:14 vs StockCharts", atol=HALF_UNIT_6DP + 1e-12)


def test_stochrsi_matches_stockcharts() -> None:
    """StockCharts' StochRSI(14) is TA-Lib's %K with fastk 14 and no %D smoothing, on a 0..1 scale.

    The sheet prints 7 decimals and takes the high/low from RSI values rounded to 6 decimals,
    worth up to 5e-7 / (high - low ~ 30) in %K: 1e-7 covers both.
    """
    sheet = _sheet("cs-stochrsi.csv")
    close = sheet["Close"].to_numpy()
    ours = parse_spec("stochrsi:14:14:1").batch(Bars.from_close(_flat_prefix(close, 14)))[14:, 0] / 100
    ref = sheet["StochRSI(14)"].to_numpy()
    shown = ~np.isnan(ref)
    assert_close(ours[shown], ref[shown], 0.0, "stochrsi:14:14:1 vs StockCharts", atol=1e-7)


def test_kama_smoothing_constant_matches_stockcharts() -> None:
    """The efficiency ratio and smoothing constant on their own, before the recursion.

    Imported here, after ``available()``: importing an indicator module before the registry's
    first lookup leaves the registry holding only that module (see registry.available).
    """
    available()
    from engine.indicators.kama import smoothing_constant

    sheet = _sheet("cs-kama.csv")
    close = sheet["Close"].to_numpy()
    change = close[10:] - close[:-10]
    moves = np.abs(np.diff(close))
    path = np.array([moves[i - 10:i].sum() for i in range(10, len(close))])
    nonzero = np.array([np.count_nonzero(moves[i - 10:i]) for i in range(10, len(close))])
    sc = smoothing_constant(change, path, nonzero)
    assert_close(sc, sheet["SC"].to_numpy()[10:], 0.0, "KAMA SC vs StockCharts", atol=HALF_UNIT_6DP + 1e-12)
