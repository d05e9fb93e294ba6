"""Building blocks shared by indicators, per slot: running sums, rolling windows and extremes, the
previous bar and the directional sums.

Each block owns state arrays (one row per slot) and has compiled ``*_push`` helpers that advance one
slot by one value, inlined into the kernels of the indicators that hold the block. A helper takes the
block's ``handle()``: its arrays and parameters as a tuple. Helpers return scalars, never views of the
state, and index windows in place.
"""

from __future__ import annotations

import numpy as np

from engine.indicators.base import SlotState, StateSpec
from engine.indicators.jit import inlined
from engine.indicators.reductions import offset_square_sum, offset_sum
from engine.indicators.scalar import true_range


@inlined
def _advance(pos, slot, n):
    """The slot's ring position, moved on by one (the ring's write position is kept rather than derived
    from the count: an integer division per push costs more than the rest of the push)."""
    p = pos[slot]
    pos[slot] = p + 1 if p + 1 < n else 0
    return p


class RollingSum(SlotState):
    """Running sum of the last ``n`` values per slot: a ring buffer plus an O(1) running total."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def state_spec(self) -> StateSpec:
        return {"buf": ((self.n,), np.float64, 0.0), "sum": ((), np.float64, 0.0), "count": ((), np.int64, 0),
                "pos": ((), np.int64, 0)}

    def handle(self) -> tuple:
        return self.s["buf"], self.s["sum"], self.s["count"], self.s["pos"]


@inlined
def rolling_sum_push(h, slot, x):
    """Add ``x`` to the slot's window; return (sum of the last n values, window full)."""
    buf, total, count, pos = h
    n = buf.shape[1]
    p = _advance(pos, slot, n)
    t = total[slot] + x - buf[slot, p]
    buf[slot, p] = x
    total[slot] = t
    c = count[slot] + 1
    count[slot] = c
    return t, c >= n


class RollingSums(SlotState):
    """Running sums of ``width`` series over the last ``n`` values per slot (RollingSum, several columns)."""

    def __init__(self, n: int, width: int = 1) -> None:
        super().__init__()
        self.n, self.width = n, width

    def state_spec(self) -> StateSpec:
        n, w = self.n, self.width
        return {"buf": ((n, w), np.float64, 0.0), "sum": ((w,), np.float64, 0.0), "count": ((), np.int64, 0),
                "pos": ((), np.int64, 0)}

    def handle(self) -> tuple:
        return self.s["buf"], self.s["sum"], self.s["count"], self.s["pos"]


@inlined
def rolling_sums_push(h, slot, xs):
    """Add the tuple ``xs`` (one value per series) to the slot's windows; return whether the window is
    full. The sums are then ``rolling_sums_value(h, slot, j)``."""
    buf, total, count, pos = h
    n = buf.shape[1]
    p = _advance(pos, slot, n)
    for j in range(len(xs)):
        total[slot, j] = total[slot, j] + xs[j] - buf[slot, p, j]
        buf[slot, p, j] = xs[j]
    c = count[slot] + 1
    count[slot] = c
    return c >= n


@inlined
def rolling_sums_value(h, slot, j):
    """The slot's sum of series ``j``."""
    return h[1][slot, j]


class WilderSums(SlotState):
    """Wilder's running sums S = x + (1 - 1/n) S of ``width`` series, seeded with the plain sum of the
    first n-1 values as TA-Lib seeds its +DM, -DM and TR sums; valid from the n-th value."""

    def __init__(self, n: int, width: int = 1) -> None:
        super().__init__()
        self.n, self.width = n, width
        self.decay = 1.0 - 1.0 / n

    def state_spec(self) -> StateSpec:
        return {"sum": ((self.width,), np.float64, 0.0), "count": ((), np.int64, 0)}

    def handle(self) -> tuple:
        return self.s["sum"], self.s["count"], self.n, self.decay


@inlined
def wilder_sums_push(h, slot, xs):
    """Feed the tuple ``xs`` to the slot's sums; return whether they are valid (``wilder_sums_value``)."""
    total, count, n, decay = h
    c = count[slot] + 1
    for j in range(len(xs)):
        total[slot, j] = total[slot, j] + xs[j] if c < n else xs[j] + decay * total[slot, j]
    count[slot] = c
    return c >= n


@inlined
def wilder_sums_value(h, slot, j):
    """The slot's sum of series ``j``."""
    return h[0][slot, j]


class RollingWindow(SlotState):
    """The last ``n`` values per slot, for window reductions that need them in time order.

    A ring written twice, at p and p + n: after a write at p the window, oldest first, is the
    contiguous run ``buf[slot, p + 1:p + 1 + n]``, so a push is O(1) and a reduction sums in time order.
    Positions not written yet hold NaN.
    """

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def state_spec(self) -> StateSpec:
        return {"buf": ((2 * self.n,), np.float64, np.nan), "count": ((), np.int64, 0),
                "pos": ((), np.int64, 0)}

    def handle(self) -> tuple:
        return self.s["buf"], self.s["count"], self.s["pos"]


@inlined
def window_push(h, slot, x):
    """Append ``x`` to the slot's window; return (start, full): the window is ``buf[slot, start:start + n]``."""
    buf, count, pos = h
    n = buf.shape[1] // 2
    p = _advance(pos, slot, n)
    buf[slot, p] = x
    buf[slot, p + n] = x
    c = count[slot] + 1
    count[slot] = c
    return p + 1, c >= n


@inlined
def mean_pstd(buf, slot, start, n, scratch):
    """Mean and population standard deviation of the window ``buf[slot, start:start + n]``, two-pass;
    ``scratch`` from ``sum_scratch``."""
    # Two passes avoid the cancellation of sum-of-squares formulas on quiet, high-priced windows,
    # and offsets from the window's first value (exact for nearby prices) make a flat window's
    # deviation exactly 0 rather than the residue of a rounded mean.
    first = buf[slot, start]
    mean_offset = offset_sum(buf, slot, start, n, first, scratch) / n
    return first + mean_offset, np.sqrt(offset_square_sum(buf, slot, start, n, first, mean_offset) / n)


_NEVER = np.iinfo(np.int64).min // 2  # the index of a value not seen


class RollingExtreme(SlotState):
    """The largest (or smallest) of the last ``n`` values per slot and how many bars ago it came (the
    latest occurrence on ties), in amortised O(1): the extreme and its index are kept, and the window
    (a ring) is scanned again only when that value leaves it. Exact, as extremes do not round; a NaN in
    the window makes the extreme NaN, as numpy's max and min answer."""

    def __init__(self, n: int, largest: bool) -> None:
        super().__init__()
        self.n, self.largest = n, largest

    def state_spec(self) -> StateSpec:
        return {"buf": ((self.n,), np.float64, np.nan), "count": ((), np.int64, 0), "pos": ((), np.int64, 0),
                "best": ((), np.float64, -np.inf if self.largest else np.inf),
                "best_at": ((), np.int64, _NEVER), "nan_at": ((), np.int64, _NEVER)}

    def handle(self) -> tuple:
        s = self.s
        return s["buf"], s["count"], s["pos"], s["best"], s["best_at"], s["nan_at"], self.largest


@inlined
def _beats(x, best, largest):
    """Whether ``x`` takes over from ``best``: at least as extreme (ties go to the later value); NaN never."""
    return x >= best if largest else x <= best


@inlined
def extreme_push(h, slot, x):
    """Append ``x``; return (extreme of the window, bars since it, window full)."""
    buf, count, pos, best_s, best_at_s, nan_at_s, largest = h
    n = buf.shape[1]
    c = count[slot]  # the index of x
    count[slot] = c + 1
    p = _advance(pos, slot, n)
    buf[slot, p] = x
    if np.isnan(x):
        nan_at_s[slot] = c
    best, best_at = best_s[slot], best_at_s[slot]
    if _beats(x, best, largest):
        best, best_at = x, c
    elif best_at <= c - n:  # the extreme left the window: scan what is left, oldest first
        best, best_at = -np.inf if largest else np.inf, _NEVER
        first = max(c - n + 1, 0)
        q = p + 1 - (c + 1 - first)  # the ring position of index ``first``
        if q < 0:
            q += n
        for i in range(first, c + 1):
            v = buf[slot, q]
            if _beats(v, best, largest):
                best, best_at = v, i
            q = q + 1 if q + 1 < n else 0
    best_s[slot], best_at_s[slot] = best, best_at
    if nan_at_s[slot] > c - n:
        return np.nan, 0, c + 1 >= n  # no value equals NaN: numpy's argmax of the ties answers 0
    return best, c - best_at, c + 1 >= n


class PrevBar(SlotState):
    """The previous bar's high, low and close per slot (NaN before a slot's first bar)."""

    def state_spec(self) -> StateSpec:
        return {"hlc": ((3,), np.float64, np.nan)}

    def handle(self) -> tuple:
        return (self.s["hlc"],)


@inlined
def prev_bar_push(h, slot, high, low, close):
    """Remember this bar; return the previous one's (high, low, close)."""
    hlc = h[0]
    ph, pl, pc = hlc[slot, 0], hlc[slot, 1], hlc[slot, 2]
    hlc[slot, 0], hlc[slot, 1], hlc[slot, 2] = high, low, close
    return ph, pl, pc


@inlined
def directional_movement(high, low, prev_high, prev_low):
    """Wilder's (+DM, -DM): only the larger of the up and down moves counts; ties count neither."""
    up = high - prev_high
    down = prev_low - low
    # the move times its 0/1 condition, as the vectorised form computed it (a falling move gives -0.0)
    plus = up * (1.0 if up > 0 and up > down else 0.0)
    minus = down * (1.0 if down > 0 and down > up else 0.0)
    return plus, minus


class DirectionalSums(SlotState):
    """Wilder sums of +DM, -DM and true range per slot: the state shared by +DI, -DI and ADX.

    The first bar only supplies the previous high/low/close (TA-Lib's convention), so the sums are
    valid from bar ``n``.
    """

    def __init__(self, n: int) -> None:
        super().__init__()
        self.prev = PrevBar()
        self.sums = WilderSums(n, 3)
        self.children = [self.prev, self.sums]

    def handle(self) -> tuple:
        return self.prev.handle(), self.sums.handle()


@inlined
def directional_sums_push(h, slot, high, low, close):
    """(+DM, -DM, TR) sums of the slot after this bar; NaN until valid."""
    prev, sums = h
    ph, pl, pc = prev_bar_push(prev, slot, high, low, close)
    if np.isnan(pc):
        return np.nan, np.nan, np.nan
    plus, minus = directional_movement(high, low, ph, pl)
    if not wilder_sums_push(sums, slot, (plus, minus, true_range(high, low, pc))):
        return np.nan, np.nan, np.nan
    return wilder_sums_value(sums, slot, 0), wilder_sums_value(sums, slot, 1), wilder_sums_value(sums, slot, 2)


@inlined
def directional_indicators(plus_dm, minus_dm, tr):
    """(+DI, -DI) from DirectionalSums; 0 where the true-range sum is 0 (as TA-Lib)."""
    if tr == 0:
        return 0.0, 0.0
    return 100.0 * (plus_dm / tr), 100.0 * (minus_dm / tr)
