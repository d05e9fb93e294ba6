"""Building blocks shared by indicators: rolling windows and linear recursions, streaming and batch.

These are state holders used as children of indicators (they share the slot layout) and the
matching batch functions, so every indicator's two forms are built from the same two primitives.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter

from tests.indicators.legacy.base import Bars, Indicator, StateSpec


class RollingSum(Indicator):
    """Running sum over the last ``n`` values per slot: a ring buffer plus an O(1) running total.

    Not registered: a primitive other indicators hold. ``push`` returns (sum, window_full).
    """

    name = "rolling_sum"
    defaults = (1,)
    param_types = (int,)

    def state_spec(self) -> StateSpec:
        n = self.params[0]
        return {"buf": ((n,), np.float64, 0.0), "sum": ((), np.float64, 0.0), "count": ((), np.int64, 0)}

    @property
    def lookback(self) -> int:
        return self.params[0] - 1

    def push(self, slots: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if len(slots) and slots.max() >= self.capacity:
            self.grow(int(slots.max()) + 1)
        n = self.params[0]
        s = self.s
        count = s["count"][slots]
        pos = count % n
        old = s["buf"][slots, pos]
        total = s["sum"][slots] + x - old
        s["buf"][slots, pos] = x
        s["sum"][slots] = total
        s["count"][slots] = count + 1
        return total, count + 1 >= n

    def step(self, slots: np.ndarray, bars: Bars) -> np.ndarray:
        total, full = self.push(slots, bars.close)
        return np.where(full, total, np.nan)[:, None]

    def batch(self, bars: Bars) -> np.ndarray:
        out = np.full((len(bars), 1), np.nan)
        n = self.params[0]
        if len(bars) >= n:
            out[n - 1:, 0] = rolling_sum(bars.close, n)
        return out


def rolling_sum(x: np.ndarray, n: int) -> np.ndarray:
    """Sums of every full window of ``n`` (length len(x)-n+1), rounded exactly as RollingSum.push."""
    return running_sums(x, n)[n - 1:]


def linear_recursion(x: np.ndarray, alpha: float, seed: float) -> np.ndarray:
    """y[i] = y[i-1] + alpha * (x[i] - y[i-1]) with y[-1] = seed, run in C by scipy's lfilter."""
    x = np.asarray(x, np.float64)
    if len(x) == 0:
        return x.copy()
    y, _ = lfilter([alpha], [1.0, alpha - 1.0], x, zi=[(1.0 - alpha) * seed])
    return y


# ---- primitives of high/low/close indicators --------------------------------------------------


def shift(x: np.ndarray) -> np.ndarray:
    """``x`` delayed by one bar with NaN first: the batch twin of PrevBar."""
    out = np.empty(len(x))
    out[:1] = np.nan
    out[1:] = x[:-1]
    return out


def true_range(high: np.ndarray, low: np.ndarray, prev_close: np.ndarray) -> np.ndarray:
    """TA-Lib's TRANGE: max(high-low, |high-prev close|, |low-prev close|); NaN without a prev close."""
    # max(max(high - low, |high - prev|), |low - prev|), in two buffers instead of five temporaries
    out = np.subtract(high, low)
    part = np.subtract(high, prev_close)
    np.maximum(out, np.abs(part, out=part), out=out)
    np.subtract(low, prev_close, out=part)
    return np.maximum(out, np.abs(part, out=part), out=out)


def directional_movement(high: np.ndarray, low: np.ndarray, prev_high: np.ndarray,
                         prev_low: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Wilder's (+DM, -DM): only the larger of the up and down moves counts; ties count neither."""
    up = high - prev_high
    down = prev_low - low
    # finite moves times their 0/1 condition: no data-dependent branch as in np.where on this mask
    plus = up * ((up > 0) & (up > down))
    minus = down * ((down > 0) & (down > up))
    return plus, minus


def _sliding_extreme(x: np.ndarray, n: int, pick: np.ufunc) -> np.ndarray:
    """``pick`` (np.maximum / np.minimum) of every full window of ``n``, by doubling: windows of 1, 2,
    4, ... values, then two overlapping power-of-two windows cover n. About log2(n) whole-array
    ops; exact, as extremes do not round."""
    x = np.asarray(x, np.float64)
    m = len(x) - n + 1
    if m <= 0:
        return np.empty(0)
    cur, width = x, 1  # cur[i]: extreme of x[i:i + width]
    while 2 * width <= n:
        cur = pick(cur[:-width], cur[width:])
        width *= 2
    if width == n:
        return cur[:m] if len(cur) > m else cur
    return pick(cur[:m], cur[n - width:n - width + m])


def rolling_max(x: np.ndarray, n: int) -> np.ndarray:
    """Max of every full window of ``n`` (length len(x)-n+1) in O(len(x) log n)."""
    return _sliding_extreme(x, n, np.maximum)


def rolling_min(x: np.ndarray, n: int) -> np.ndarray:
    """Min of every full window of ``n`` (length len(x)-n+1) in O(len(x) log n)."""
    return _sliding_extreme(x, n, np.minimum)


def running_sums(x: np.ndarray, n: int) -> np.ndarray:
    """Window sums along axis 0 rounded exactly as RollingSum/RollingSums accumulate them.

    The streaming total is ``(total + new) - old``; accumulating the interleaved sequence
    new_0, -old_0, new_1, -old_1, ... performs the same additions in the same order, so one
    cumsum reproduces the streaming values bit for bit (a window sum that should be zero
    carries the same residue in both forms). Rows before the first full window are partial sums.
    """
    x = np.asarray(x, np.float64)
    pairs = np.empty((len(x), 2, *x.shape[1:]))
    pairs[:, 0] = x
    pairs[:n, 1] = -0.0  # the streaming buffer starts at 0.0; adding -0.0 equals subtracting 0.0
    np.negative(x[:max(len(x) - n, 0)], out=pairs[n:, 1])
    # accumulated in place (no second full-length buffer); the odd rows are the window sums
    flat = pairs.reshape(2 * len(x), *x.shape[1:])
    np.cumsum(flat, axis=0, out=flat)
    return pairs[:, 1]


def wilder_sums(x: np.ndarray, n: int) -> np.ndarray:
    """Batch twin of WilderSums along axis 0: NaN before row n-1, then S = x + (1 - 1/n) S."""
    x = np.asarray(x, np.float64)
    if x.ndim > 1:
        # one contiguous 1-D filter per column runs faster than a filter along axis 0 of the
        # matrix, with the same arithmetic per column; returned as a (len, ...) view
        cols = x.reshape(len(x), -1)
        out = np.empty((cols.shape[1], len(x)))
        for k in range(cols.shape[1]):
            out[k] = wilder_sums(cols[:, k], n)
        return out.T.reshape(x.shape)
    out = np.full(x.shape, np.nan)
    if len(x) >= n:
        decay = 1.0 - 1.0 / n
        seed = np.cumsum(x[:n - 1], axis=0)[-1] if n > 1 else np.zeros(x.shape[1:])
        zi = (decay * seed)[None, ...]
        out[n - 1:], _ = lfilter([1.0], [1.0, -decay], x[n - 1:], axis=0, zi=zi)
    return out


def ensure_capacity(ind: Indicator, slots: np.ndarray) -> None:
    """Grow ``ind`` and its children so every slot in ``slots`` has state (primitives' ``push``)."""
    if len(slots) and slots.max() >= ind.capacity:
        ind.grow(int(slots.max()) + 1)


class PrevBar(Indicator):
    """The previous bar's high, low and close per slot (NaN before a slot's first bar); not registered."""

    name = "prev_bar"
    outputs = ("high", "low", "close")

    def state_spec(self) -> StateSpec:
        return {"hlc": ((3,), np.float64, np.nan)}

    @property
    def lookback(self) -> int:
        return 1

    def push(self, slots: np.ndarray, bars: Bars) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Remember this bar; return the previous one's (high, low, close)."""
        ensure_capacity(self, slots)
        prev = self.s["hlc"][slots]
        self.s["hlc"][slots] = np.column_stack((bars.high, bars.low, bars.close))
        return prev[:, 0], prev[:, 1], prev[:, 2]

    def step(self, slots: np.ndarray, bars: Bars) -> np.ndarray:
        return np.column_stack(self.push(slots, bars))

    def batch(self, bars: Bars) -> np.ndarray:
        return np.column_stack((shift(bars.high), shift(bars.low), shift(bars.close)))


class RollingSums(Indicator):
    """Running sums of ``width`` series over the last ``n`` values per slot (RollingSum, several columns).

    Not registered. ``push`` returns (sums (k, width), window_full); ``running_sums`` is its batch twin.
    """

    name = "rolling_sums"
    defaults = (1,)
    param_types = (int,)

    def __init__(self, period: int = 1, width: int = 1) -> None:
        self.width = width
        super().__init__(period)

    def state_spec(self) -> StateSpec:
        n, w = self.params[0], self.width
        return {"buf": ((n, w), np.float64, 0.0), "sum": ((w,), np.float64, 0.0),
                "count": ((), np.int64, 0)}

    @property
    def lookback(self) -> int:
        return self.params[0] - 1

    def push(self, slots: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ensure_capacity(self, slots)
        n = self.params[0]
        s = self.s
        count = s["count"][slots]
        pos = count % n
        old = s["buf"][slots, pos]
        total = s["sum"][slots] + x - old
        s["buf"][slots, pos] = x
        s["sum"][slots] = total
        s["count"][slots] = count + 1
        return total, count + 1 >= n

    def step(self, slots: np.ndarray, bars: Bars) -> np.ndarray:
        total, full = self.push(slots, np.repeat(bars.close[:, None], self.width, axis=1))
        return np.where(full[:, None], total, np.nan)

    def batch(self, bars: Bars) -> np.ndarray:
        out = running_sums(np.repeat(bars.close[:, None], self.width, axis=1), self.params[0])
        out[:self.params[0] - 1] = np.nan
        return out


class WilderSums(Indicator):
    """Wilder's running sums S = x + (1 - 1/n) S of ``width`` series, seeded with the plain sum of the
    first n-1 values as TA-Lib seeds its +DM, -DM and TR sums. Not registered; valid from the n-th value.
    """

    name = "wilder_sums"
    defaults = (14,)
    param_types = (int,)

    def __init__(self, period: int = 14, width: int = 1) -> None:
        self.width = width
        super().__init__(period)
        self.decay = 1.0 - 1.0 / period

    def state_spec(self) -> StateSpec:
        return {"sum": ((self.width,), np.float64, 0.0), "count": ((), np.int64, 0)}

    @property
    def lookback(self) -> int:
        return self.params[0] - 1

    def push(self, slots: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Feed one row of ``width`` values per slot; return (sums, valid)."""
        ensure_capacity(self, slots)
        n = self.params[0]
        prev = self.s["sum"][slots]
        count = self.s["count"][slots] + 1
        # same expression as lfilter's update in wilder_sums, so both forms round identically
        total = np.where((count < n)[:, None], prev + x, x + self.decay * prev)
        self.s["sum"][slots] = total
        self.s["count"][slots] = count
        return total, count >= n

    def step(self, slots: np.ndarray, bars: Bars) -> np.ndarray:
        total, valid = self.push(slots, np.repeat(bars.close[:, None], self.width, axis=1))
        return np.where(valid[:, None], total, np.nan)

    def batch(self, bars: Bars) -> np.ndarray:
        return wilder_sums(np.repeat(bars.close[:, None], self.width, axis=1), self.params[0])


class RollingWindow(Indicator):
    """The last ``n`` values per slot, oldest first, for window reductions (extremes, deviations).

    Not registered. Kept in time order (one row shift per push) so a reduction over the window sees
    the same row as ``sliding_window_view`` does in batch and rounds identically.
    """

    name = "rolling_window"
    defaults = (1,)
    param_types = (int,)

    def state_spec(self) -> StateSpec:
        return {"buf": ((self.params[0],), np.float64, np.nan), "count": ((), np.int64, 0)}

    @property
    def lookback(self) -> int:
        return self.params[0] - 1

    def push(self, slots: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Append one value per slot; return (windows (k, n) oldest first, window_full)."""
        ensure_capacity(self, slots)
        window = np.empty((len(slots), self.params[0]))
        window[:, :-1] = self.s["buf"][slots, 1:]
        window[:, -1] = x
        self.s["buf"][slots] = window
        count = self.s["count"][slots] + 1
        self.s["count"][slots] = count
        return window, count >= self.params[0]

    def step(self, slots: np.ndarray, bars: Bars) -> np.ndarray:
        window, full = self.push(slots, bars.close)
        return np.where(full, window.max(axis=1), np.nan)[:, None]

    def batch(self, bars: Bars) -> np.ndarray:
        out = np.full((len(bars), 1), np.nan)
        n = self.params[0]
        if len(bars) >= n:
            out[n - 1:, 0] = rolling_max(bars.close, n)
        return out


class DirectionalSums(Indicator):
    """Wilder sums of +DM, -DM and true range per slot: the state shared by +DI, -DI and ADX.

    Not registered. The first bar only supplies the previous high/low/close (TA-Lib's convention),
    so the sums are valid from bar ``n``.
    """

    name = "directional_sums"
    outputs = ("plus_dm", "minus_dm", "tr")
    defaults = (14,)
    param_types = (int,)

    def setup(self) -> None:
        self.prev = PrevBar()
        self.sums = WilderSums(self.params[0], 3)
        self.children = [self.prev, self.sums]

    @property
    def lookback(self) -> int:
        return self.params[0]

    def push(self, slots: np.ndarray, bars: Bars) -> np.ndarray:
        """(k, 3) sums of +DM, -DM and TR; NaN rows until valid."""
        ph, pl, pc = self.prev.push(slots, bars)
        out = np.full((len(slots), 3), np.nan)
        seen = ~np.isnan(pc)
        h, low = bars.high[seen], bars.low[seen]
        x = np.column_stack((*directional_movement(h, low, ph[seen], pl[seen]),
                             true_range(h, low, pc[seen])))
        total, valid = self.sums.push(slots[seen], x)
        out[seen] = np.where(valid[:, None], total, np.nan)
        return out

    def step(self, slots: np.ndarray, bars: Bars) -> np.ndarray:
        return self.push(slots, bars)

    def batch(self, bars: Bars) -> np.ndarray:
        h, low = bars.high[1:], bars.low[1:]
        columns = (*directional_movement(h, low, bars.high[:-1], bars.low[:-1]),
                   true_range(h, low, bars.close[:-1]))
        # built column by column (contiguous columns: faster filters and downstream reads)
        out = np.empty((3, len(bars)))
        out[:, :1] = np.nan
        for k, x in enumerate(columns):
            out[k, 1:] = wilder_sums(x, self.params[0])
        return out.T


def directional_indicators(sums: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(+DI, -DI) from DirectionalSums rows; 0 where the true-range sum is 0 (as TA-Lib)."""
    tr = sums[:, 2]
    flat = tr == 0
    denom = np.where(flat, 1.0, tr)
    plus = np.where(flat, 0.0, 100.0 * (sums[:, 0] / denom))
    minus = np.where(flat, 0.0, 100.0 * (sums[:, 1] / denom))
    return plus, minus


# ---- close-only primitives (MACD, TRIX, StochRSI, KAMA, BBANDS, STDDEV) -----------------------
# Differences of nearly equal quantities (MACD, TRIX, stochastics) turn last-bit rounding
# differences into large relative errors near zero; where that matters these make the streaming
# step perform the very same floating-point operations, in the same order, as the batch twin.


def mean_pstd(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population standard deviation of each row (k, n) of a streamed window, two-pass."""
    # Two passes avoid the cancellation of sum-of-squares formulas on quiet, high-priced windows,
    # and offsets from the row's first value (exact for nearby prices) make a flat window's
    # deviation exactly 0 rather than the residue of a rounded mean.
    n = rows.shape[-1]
    offset = rows - rows[:, :1]
    mean_offset = offset.sum(axis=1) / n
    dev = offset - mean_offset[:, None]
    return rows[:, 0] + mean_offset, np.sqrt(np.einsum("ij,ij->i", dev, dev) / n)


def sliding_mean_pstd(x: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Batch twin of ``mean_pstd`` for every full window of ``x`` (length len(x)-n+1), to ~1e-15."""
    # The loops run over the n offsets within a window, each step one in-place numpy op over all
    # windows: several times faster than reducing a (windows, n) matrix.
    x = np.asarray(x, np.float64)
    m = len(x) - n + 1
    first = x[:m]
    total = np.zeros(m)
    dev = np.empty(m)  # one scratch buffer for every step: no temporaries
    for j in range(1, n):
        np.subtract(x[j:j + m], first, out=dev)
        total += dev
    mean_offset = total
    mean_offset /= n
    squares = np.zeros(m)
    for j in range(n):
        np.subtract(x[j:j + m], first, out=dev)
        dev -= mean_offset
        dev *= dev
        squares += dev
    squares /= n
    np.add(first, mean_offset, out=dev)  # the scratch buffer becomes the mean
    return dev, np.sqrt(squares, out=squares)


def push_where(child: Indicator, slots: np.ndarray, x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Feed ``x[mask]`` to a smoother child (``push(slots, x) -> values``); NaN for other slots."""
    # chained smoothers start late (DEMA's second EMA waits for the first): only slots with input advance
    out = np.full(len(slots), np.nan)
    if mask.any():
        out[mask] = child.push(slots[mask], x[mask])
    return out


def series_after_nan(child: Indicator, x: np.ndarray) -> np.ndarray:
    """Batch twin of ``push_where``: the child's ``series`` over ``x`` from its first non-NaN value."""
    out = np.full(len(x), np.nan)
    missing = np.isnan(x)
    start = int(missing.argmin())  # first False, or 0 when all are missing
    if len(x) and not missing[start]:
        out[start:] = child.series(x[start:])
    return out


def varying_linear_recursion(a: np.ndarray, b: np.ndarray, seed: float) -> np.ndarray:
    """y[i] = a[i] * y[i-1] + b[i] with y[-1] = seed, for coefficients that change every step."""
    # lfilter needs constant coefficients, so the series is cut into ~sqrt(len) blocks solved side
    # by side: a loop over positions within a block (each step one numpy op across all blocks),
    # a scalar loop carrying each block's end value into the next, and one vectorised correction.
    # For 0 <= a <= 1 and same-signed b (adaptive averages of prices) rounding stays within ulps.
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    size = len(b)
    if size == 0:
        return b.copy()
    # balances the per-op cost of the block loop against the per-block scalar carry loop
    width = max(1, int(np.sqrt(0.075 * size)))
    lanes = -(-size // width)
    # row i holds position i of every block, so each step below is one contiguous op; filled
    # through the transposed view (a padded last block: coefficient 1, input 0)
    full, rest = divmod(size, width)
    coef = np.ones((width, lanes))
    y = np.zeros((width, lanes))
    coef.T[:full] = a[:full * width].reshape(full, width)
    y.T[:full] = b[:full * width].reshape(full, width)
    if rest:
        coef[:rest, full] = a[full * width:]
        y[:rest, full] = b[full * width:]
    for i in range(1, width):
        y[i] += coef[i] * y[i - 1]  # block-local solution, started from 0
        coef[i] *= coef[i - 1]  # product of coefficients since the block start
    carry = np.empty(lanes)
    value = float(seed)
    for k, (gain, end) in enumerate(zip(coef[-1].tolist(), y[-1].tolist())):
        carry[k] = value
        value = gain * value + end
    coef *= carry  # coef is not needed again
    y += coef
    return y.T.reshape(-1)[:size]


def near_zero(v: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """|v| <= 1e-14 * scale: TA-Lib's scale-aware dead zone for a difference of numbers of size ``scale``.

    About 90 ulps of the operands, so values equal in exact arithmetic but rounded differently
    (a sum taken in another order) count as equal, whatever the price scale.
    """
    return np.abs(v) <= 1e-14 * scale


def window_counts(flags: np.ndarray, n: int) -> np.ndarray:
    """How many of the last ``n`` rows are true, per column (partial counts first): exact integers,
    so they equal RollingSums' running counts of the same 0/1 values."""
    # counted in doubles (a float cumsum runs about twice as fast as a bool-to-int64 one): every
    # partial sum is an integer far below 2**53, so each addition and difference is exact
    out = np.asarray(flags).astype(np.float64)
    np.cumsum(out, axis=0, out=out)
    out[n:] -= out[:len(out) - n].copy()
    return out
