"""Scalar forms of the numpy expressions indicators share, for compiled kernels.

Each performs the operations of the numpy expression it replaces, in the same order and with the same
NaN and tie rules, so a kernel's values equal the vectorised ones bit for bit.
"""

from __future__ import annotations

import numpy as np

from engine.indicators.jit import inlined


@inlined
def maximum(a, b):
    """``np.maximum``: NaN when either is NaN; ``b`` on ties (which tells signed zeros apart)."""
    if a > b or np.isnan(a):
        return a
    return b


@inlined
def minimum(a, b):
    """``np.minimum``: NaN when either is NaN; ``b`` on ties."""
    if a < b or np.isnan(a):
        return a
    return b


@inlined
def true_range(high, low, prev_close):
    """TA-Lib's TRANGE: max(max(high-low, |high-prev close|), |low-prev close|); NaN without a prev close."""
    out = maximum(high - low, abs(high - prev_close))
    return maximum(out, abs(low - prev_close))


@inlined
def near_zero(v, scale):
    """|v| <= 1e-14 * scale: TA-Lib's scale-aware dead zone for a difference of numbers of size ``scale``.

    About 90 ulps of the operands, so values equal in exact arithmetic but rounded differently
    (a sum taken in another order) count as equal, whatever the price scale.
    """
    return abs(v) <= 1e-14 * scale


@inlined
def percent_change(new, old):
    """100 * (new - old) / old, 0 where old is 0 (TA-Lib's convention), NaN where old is NaN."""
    # subtracting first keeps small changes exact instead of losing digits in ``new/old - 1``
    if old != 0.0:
        return 100.0 * (new - old) / old
    return 0.0
