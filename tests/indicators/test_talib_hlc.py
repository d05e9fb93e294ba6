"""High/low/close(/volume) indicators agree with TA-Lib on real bars after its warm-up.

Tolerance: 1e-9 relative to TA-Lib's value. Outputs that can be zero or cross zero (DI, ADX,
oscillators, Aroon, OBV, the stochastic smoothing) also get an absolute allowance of
1e-9 x max|TA-Lib value| of that series: near zero both sides carry rounding residue of running
sums (TA-Lib's are add-then-subtract too), so a purely relative bound would compare noise.
NaN warm-up rows must match exactly, and our ``lookback`` must equal TA-Lib's.
TA-Lib is a test-only reference; the product never imports it.
"""

from __future__ import annotations

import numpy as np
import pytest
import talib
from talib import abstract

from engine.indicators.base import Bars
from engine.indicators.registry import parse_spec
from tests.indicators.contract import STREAM_VS_BATCH_RTOL, assert_close, stream_many
from tests.indicators.series import all_series

RTOL = 1e-9

# spec -> (TA-Lib function, its parameters); outputs come back in our output order
CASES: dict[str, tuple[str, dict]] = {
    "atr": ("ATR", {"timeperiod": 14}),
    "atr:7": ("ATR", {"timeperiod": 7}),
    "natr": ("NATR", {"timeperiod": 14}),
    "natr:5": ("NATR", {"timeperiod": 5}),
    "adx": ("ADX", {"timeperiod": 14}),
    "adx:20": ("ADX", {"timeperiod": 20}),
    "plus_di": ("PLUS_DI", {"timeperiod": 14}),
    "plus_di:7": ("PLUS_DI", {"timeperiod": 7}),
    "minus_di": ("MINUS_DI", {"timeperiod": 14}),
    "minus_di:21": ("MINUS_DI", {"timeperiod": 21}),
    "stoch": ("STOCH", {"fastk_period": 14, "slowk_period": 3, "slowd_period": 3}),
    "stoch:5:3:3": ("STOCH", {"fastk_period": 5, "slowk_period": 3, "slowd_period": 3}),
    "stoch:9:1:4": ("STOCH", {"fastk_period": 9, "slowk_period": 1, "slowd_period": 4}),
    "willr": ("WILLR", {"timeperiod": 14}),
    "willr:30": ("WILLR", {"timeperiod": 30}),
    "cci": ("CCI", {"timeperiod": 20}),
    "cci:9": ("CCI", {"timeperiod": 9}),
    "mfi": ("MFI", {"timeperiod": 14}),
    "mfi:7": ("MFI", {"timeperiod": 7}),
    "obv": ("OBV", {}),
    "ultosc": ("ULTOSC", {"timeperiod1": 7, "timeperiod2": 14, "timeperiod3": 28}),
    "ultosc:20:5:10": ("ULTOSC", {"timeperiod1": 20, "timeperiod2": 5, "timeperiod3": 10}),
    "aroon": ("AROON", {"timeperiod": 14}),
    "aroon:25": ("AROON", {"timeperiod": 25}),
    "sar": ("SAR", {"acceleration": 0.02, "maximum": 0.2}),
    "sar:0.01:0.1": ("SAR", {"acceleration": 0.01, "maximum": 0.1}),
}
# strictly positive on real prices: compared with the relative tolerance alone
POSITIVE = {"atr", "atr:7", "natr", "natr:5", "sar", "sar:0.01:0.1"}
SERIES = [name for name, _ in all_series()]


def _inputs(b: Bars) -> dict[str, np.ndarray]:
    return {"open": b.open, "high": b.high, "low": b.low, "close": b.close, "volume": b.volume}


def _talib(spec: str, b: Bars) -> np.ndarray:
    func, params = CASES[spec]
    out = abstract.Function(func, **params)(_inputs(b))
    return np.column_stack(out if isinstance(out, list) else [out])


def _assert_matches(ours: np.ndarray, ref: np.ndarray, spec: str, what: str) -> None:
    for j in range(ref.shape[1]):
        atol = 0.0 if spec in POSITIVE else 1e-9 * np.nanmax(np.abs(ref[:, j]))
        assert_close(ours[:, j], ref[:, j], RTOL, f"{what} output {j}", atol=atol)


@pytest.mark.parametrize("spec", sorted(CASES))
@pytest.mark.parametrize("series", SERIES)
def test_agrees_with_talib(spec: str, series: str) -> None:
    bars = dict(all_series())[series]
    _assert_matches(parse_spec(spec).batch(bars), _talib(spec, bars), spec, f"{spec} on {series}")


@pytest.mark.parametrize("spec", sorted(CASES))
def test_lookback_is_talibs(spec: str) -> None:
    func, params = CASES[spec]
    assert parse_spec(spec).lookback == abstract.Function(func, **params).lookback


@pytest.mark.parametrize("spec", sorted(s for s in CASES if ":" in s))
def test_streaming_non_default_params_agrees_with_talib(spec: str) -> None:
    """The contract test streams default parameters only; these stream the other cases."""
    series = [b.take(slice(0, 1200)) for _, b in all_series()[:3]]
    streamed = stream_many(parse_spec(spec), series)
    for k, bars in enumerate(series):
        assert_close(streamed[k], parse_spec(spec).batch(bars), STREAM_VS_BATCH_RTOL,
                     f"{spec} streamed, series {k}", atol=1e-300)
        _assert_matches(streamed[k], _talib(spec, bars), spec, f"{spec} streamed, series {k}")


def _keltner_reference(b: Bars, ema: int, atr: int, mult: float) -> np.ndarray:
    middle = talib.EMA(b.close, ema)
    width = mult * talib.ATR(b.high, b.low, b.close, atr)
    ref = np.column_stack((middle + width, middle, middle - width))
    ref[np.isnan(width)] = np.nan  # all three bands start together
    return ref


@pytest.mark.parametrize("spec,params", [("keltner", (20, 10, 2.0)), ("keltner:10:20:1.5", (10, 20, 1.5))])
@pytest.mark.parametrize("series", SERIES)
def test_keltner_is_talib_ema_and_atr(spec: str, params: tuple, series: str) -> None:
    """Keltner with its default seeding is EMA(close) +/- multiplier x ATR, both from TA-Lib."""
    bars = dict(all_series())[series]
    ref = _keltner_reference(bars, *params)
    assert_close(parse_spec(spec).batch(bars), ref, RTOL, f"{spec} on {series}")
