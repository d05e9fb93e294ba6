"""Indicators that TA-Lib has agree with TA-Lib to 1e-9 relative on real bars after its warm-up.

TA-Lib is a test-only reference; the product never imports it.
"""

from __future__ import annotations

import numpy as np
import pytest
import talib

from engine.indicators.base import Bars
from engine.indicators.registry import parse_spec
from tests.indicators.contract import assert_close
from tests.indicators.series import all_series

RTOL = 1e-9


def _hlc(b: Bars):
    return b.high, b.low, b.close


# spec -> function of Bars giving TA-Lib's outputs in our output order
CASES: dict[str, callable] = {
    "sma:20": lambda b: [talib.SMA(b.close, 20)],
    "ema:20": lambda b: [talib.EMA(b.close, 20)],
}


@pytest.mark.parametrize("spec", sorted(CASES))
@pytest.mark.parametrize("series", [name for name, _ in all_series()])
def test_agrees_with_talib(spec: str, series: str) -> None:
    bars = dict(all_series())[series]
    ours = parse_spec(spec).batch(bars)
    ref = np.column_stack(CASES[spec](bars))
    assert_close(ours, ref, RTOL, f"{spec} on {series}")
