"""Minus directional indicator: Wilder's -DM sum as a percentage of the true-range sum."""

from __future__ import annotations

from tests.indicators.legacy.plus_di import PlusDI
from tests.indicators.legacy.registry import register


@register
class MinusDI(PlusDI):
    """-DI as TA-Lib's MINUS_DI: 100 * sum(-DM) / sum(TR), Wilder sums over ``period`` bars."""

    name = "minus_di"
    side = 1
