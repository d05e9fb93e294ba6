"""High/low/close indicators against StockCharts' worked spreadsheets, jesse's expected values and
reference computations written here from the textbook definitions.

The spreadsheets round their columns; each comparison's absolute tolerance is half a unit of the
last printed digit, and each says where a sheet's definition differs from ours.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import talib

from engine.indicators.base import Bars
from engine.indicators.registry import available, parse_spec
from tests.indicators.contract import assert_close
from tests.indicators.series import DATA, all_series

SHEETS = DATA / "indicators" / "stockcharts"
JESSE = DATA / "indicators" / "jesse"
MINUTE_NS = 60_000_000_000
# classes through the registry: importing an indicator module first would stop it loading the rest
ATR = available()["atr"]
Keltner = available()["keltner"]


def _sheet(name: str, high: str = "High", low: str = "Low", close: str = "Close",
           volume: str | None = None) -> tuple[pd.DataFrame, Bars]:
    """A sheet and its bars, one per minute from the epoch (all in one UTC day)."""
    df = pd.read_csv(SHEETS / name).dropna(subset=[close])
    col = lambda c: df[c].to_numpy(np.float64)  # noqa: E731
    n = len(df)
    vol = np.nan_to_num(col(volume)) if volume else np.zeros(n)
    ts = np.arange(n, dtype=np.int64) * MINUTE_NS
    return df, Bars(ts, col(close), col(high), col(low), col(close), vol)


def test_keltner_first_bar_seeding_matches_sheet() -> None:
    """cs-kc.csv seeds the EMA with the first close and the ATR(10) with the mean of the first ten
    true ranges, the first being high-low: Keltner's ``from_first_bar``. Printed to 15 digits."""
    df, bars = _sheet("cs-kc.csv")
    ours = Keltner(20, 10, 2.0, from_first_bar=True).batch(bars)
    ref = df[["upper_band", "middle_band", "lower_band"]].to_numpy(np.float64, copy=True)
    ref[:9] = np.nan  # the sheet prints the EMA before the ATR exists; our bands start together
    assert_close(ours, ref, 1e-12, "keltner vs cs-kc.csv")


@pytest.mark.parametrize("name,period,atol", [("cs-atr.csv", 14, 5e-10), ("cs-atr2.csv", 10, 1e-12)])
def test_atr_first_bar_seeding_matches_sheet(name: str, period: int, atol: float) -> None:
    """The sheets count the first bar's high-low as a true range (ATR ``from_first_bar``);
    cs-atr.csv prints ten significant digits, cs-atr2.csv full precision. Zeros mark warm-up."""
    df, bars = _sheet(name)
    ref = df["ATR"].to_numpy(np.float64, copy=True)
    ref[:period - 1] = np.nan
    assert_close(ATR(period, from_first_bar=True).batch(bars)[:, 0], ref, 0.0, name, atol=atol)


def test_donchian_matches_sheets() -> None:
    """cs-dc.csv's 20-bar channel includes the current bar (ours); cs-dc2.csv excludes it, which
    is ours one bar later. Bands are printed to 2 decimals (the middle is rounded)."""
    cols = ["upper_band", "middle_band", "lower_band"]
    df, bars = _sheet("cs-dc.csv", "high", "low", "close")
    ours = parse_spec("donchian:20").batch(bars)
    atol = 0.005 + 1e-9
    assert_close(ours, df[cols].to_numpy(np.float64), 0.0, "donchian vs cs-dc.csv", atol=atol)
    df2, _ = _sheet("cs-dc2.csv", "high", "low", "close")
    shifted = np.vstack((np.full((1, 3), np.nan), ours[:-1]))
    assert_close(shifted, df2[cols].to_numpy(np.float64), 0.0, "donchian vs cs-dc2.csv", atol=atol)


def test_vwap_matches_sheet_while_its_window_is_cumulative() -> None:
    """cs-vwap.csv is a 14-bar rolling VWAP, cumulative from row 0 until the first bar leaves its
    window; those 14 rows are exactly a session-anchored VWAP (all bars here share one session)."""
    df, bars = _sheet("cs-vwap.csv", volume="Volume")
    ours = parse_spec("vwap").batch(bars)[:, 0]
    assert_close(ours[:14], df["vwap"].to_numpy(np.float64)[:14], 1e-12, "vwap vs cs-vwap.csv")


@pytest.mark.parametrize("spec,session", [("vwap", "D"), ("vwap:240", "4h")])
@pytest.mark.parametrize("series", [name for name, _ in all_series()])
def test_vwap_restarts_every_session(spec: str, session: str, series: str) -> None:
    """Reference computed here from the definition: per UTC day (or 4 hours from midnight),
    cumsum(TP * volume) / cumsum(volume)."""
    bars = dict(all_series())[series]
    tp = (bars.high + bars.low + bars.close) / 3.0
    start = pd.to_datetime(bars.ts, utc=True).floor(session)
    frame = pd.DataFrame({"pv": tp * bars.volume, "v": bars.volume, "session": start})
    sums = frame.groupby("session")[["pv", "v"]].cumsum()
    ref = (sums.pv / sums.v).to_numpy()
    assert_close(parse_spec(spec).batch(bars)[:, 0], ref, 1e-12, f"{spec} on {series}")


def _jesse_cases(*names: str) -> list[dict]:
    cases = json.loads((JESSE / "EXPECTED_indicators.json").read_text())["cases"]
    return [c for c in cases if c["indicator"] in names]


def _jesse_bars(candles: str) -> Bars:
    """jesse candles are [timestamp ms, open, close, high, low, volume]."""
    c = np.array(json.loads((JESSE / "candles.json").read_text())[candles], np.float64)
    return Bars(c[:, 0].astype(np.int64) * 1_000_000, c[:, 1], c[:, 3], c[:, 4], c[:, 2], c[:, 5])


JESSE_SPECS = {"atr": "atr:{period}", "adx": "adx:{period}", "mfi": "mfi:{period}",
               "cci": "cci:{period}", "willr": "willr:{period}",
               "stoch": "stoch:{fastk_period}:{slowk_period}:{slowd_period}",
               "obv": "obv", "vwap": "vwap", "supertrend": "supertrend:{period}:{factor}"}


@pytest.mark.parametrize("case", _jesse_cases(*JESSE_SPECS), ids=lambda c: c["indicator"])
def test_last_value_matches_jesse(case: dict) -> None:
    """jesse's asserted last values, rounded as jesse rounds them (its vwap anchors on UTC days,
    its supertrend also flags the trend change 16 bars before the end and none on the last bar)."""
    spec = JESSE_SPECS[case["indicator"]].format(**case["params"])
    out = parse_spec(spec).batch(_jesse_bars(case["candles"]))
    expect, ndigits = case["expect"], case["round"]
    last = dict(zip(parse_spec(spec).outputs, out[-1]))
    if case["indicator"] == "obv":
        assert round(last[""] / 1e6, ndigits) == expect["value_div_1e6"]
    elif case["indicator"] == "stoch":
        assert (round(last["k"], ndigits), round(last["d"], ndigits)) == (expect["k"], expect["d"])
    elif case["indicator"] == "supertrend":
        assert round(last[""], ndigits) == expect["trend"]
        assert (out[-16, 1] != out[-17, 1]) == expect["changed_at_index_-16"]
        assert (out[-1, 1] != out[-2, 1]) == expect["changed_at_index_-1"]
    else:
        assert round(last[""], ndigits) == expect["value"]


def _textbook_supertrend(b: Bars, period: int, mult: float) -> np.ndarray:
    """Written here from the textbook definition, on TA-Lib's ATR: final bands tighten unless the
    previous close broke them; the trend flips when the close crosses the opposite band."""
    atr = talib.ATR(b.high, b.low, b.close, period).tolist()
    high, low, close = b.high.tolist(), b.low.tolist(), b.close.tolist()
    out = np.full((len(b), 2), np.nan)
    upper = lower = trend = None
    for i in range(period, len(b)):
        mid = (high[i] + low[i]) / 2.0
        basic_up, basic_low = mid + mult * atr[i], mid - mult * atr[i]
        if trend is None:
            upper, lower = basic_up, basic_low
            trend = -1.0 if close[i] <= upper else 1.0
        else:
            upper = basic_up if basic_up < upper or close[i - 1] > upper else upper
            lower = basic_low if basic_low > lower or close[i - 1] < lower else lower
            if trend < 0 and close[i] > upper:
                trend = 1.0
            elif trend > 0 and close[i] < lower:
                trend = -1.0
        out[i] = (lower if trend > 0 else upper), trend
    return out


@pytest.mark.parametrize("spec,params", [("supertrend", (10, 3.0)), ("supertrend:7:2", (7, 2.0))])
@pytest.mark.parametrize("series", [name for name, _ in all_series()])
def test_supertrend_matches_textbook_reference(spec: str, params: tuple, series: str) -> None:
    bars = dict(all_series())[series]
    ref = _textbook_supertrend(bars, *params)
    assert_close(parse_spec(spec).batch(bars), ref, 1e-9, f"{spec} on {series}")


# ---- sheets whose definition is TA-Lib's: a second, independent check -------------------------

@pytest.mark.parametrize("name,spec,column,start,atol,volume", [
    ("cs-cci.csv", "cci:20", "CCI", 19, 5e-5, None),  # 4 decimals
    ("cs-percentr.csv", "willr:14", "Williams_%R", 13, 5e-7, None),  # 6 decimals
    ("cs-ultosc.csv", "ultosc:7:14:28", "Ult_Osc", 28, 5e-7, None),  # 6 decimals
    ("cs-mfi.csv", "mfi:14", "MFI", 14, 5e-6, "Volume"),  # 5 decimals
])
def test_oscillators_match_sheets(name: str, spec: str, column: str, start: int, atol: float,
                                  volume: str | None) -> None:
    df, bars = _sheet(name, volume=volume)
    ref = df[column].to_numpy(np.float64)
    ours = parse_spec(spec).batch(bars)[:, 0]
    assert np.isnan(ours[:start]).all()
    assert_close(ours[start:], ref[start:], 0.0, f"{spec} vs {name}", atol=atol)


def test_obv_matches_sheet() -> None:
    """The sheet's first row has no volume, so its OBV starts one bar later from 0; exact integers."""
    df, bars = _sheet("cs-obv.csv", "Close", "Close", volume="Volume")
    ours = parse_spec("obv").batch(bars)[:, 0]
    assert ours[0] == 0.0
    assert_close(ours[1:], df["OBV"].to_numpy(np.float64)[1:], 0.0, "obv vs cs-obv.csv")


def test_psar_matches_sheet_after_first_reversal() -> None:
    """The sheet starts short at bar 2 where TA-Lib starts at bar 1 from the first two bars'
    movement; from the first reversal (bar 8) both follow the same trend. 8 decimals printed."""
    df, bars = _sheet("cs-psar.csv")
    ref = df["psar_up"].fillna(df["psar_down"]).to_numpy(np.float64)
    assert_close(parse_spec("sar").batch(bars)[8:, 0], ref[8:], 0.0, "sar vs cs-psar.csv", atol=5e-9)


@pytest.mark.parametrize("spec,column", [("adx", "ADX"), ("plus_di", "+DI14"), ("minus_di", "-DI14")])
def test_directional_matches_sheet_once_seed_decays(spec: str, column: str) -> None:
    """The sheet seeds its Wilder sums with the sum of the first 14 values where TA-Lib sums 13 and
    smooths in the 14th; the difference decays by 13/14 a bar and falls below the sheet's 7-decimal
    rounding by bar 350 of its 504."""
    df, bars = _sheet("cs-adx.csv")
    ours = parse_spec(spec).batch(bars)[:, 0]
    ref = df[column].to_numpy(np.float64)
    assert_close(ours[350:], ref[350:], 1e-12, f"{spec} vs cs-adx.csv", atol=5e-8)
