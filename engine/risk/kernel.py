"""Kernel of ``engine.risk.operator.RiskOperator``: every risk measure of every row, one row at a time.

Each value is bit-identical to the numpy expression of ``engine.risk.measures`` / ``engine.risk.score`` over the
key's window, oldest bar first: sums follow numpy's pairwise summation, quantiles its 'linear' rule, clipping
and maxima its NaN and tie rules. The logarithms stay with numpy (the caller passes them in), since numpy's
vectorised log need not round like the C library's.

State rings hold their window twice over (value ``i`` at ``i % size`` and ``i % size + size``), so the window,
oldest first, is the contiguous slice starting at ``count % size``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from engine.structure.kernel_buffers import resolve_slots

PW_BLOCK = 128  # numpy's PW_BLOCKSIZE: blocks up to this size are summed with 8 accumulators
# what a pairwise sum adds up per value v, given a parameter p: v itself, (v - p)^2, or v where v <= p else 0.0
VALUE, SQUARED_DEVIATION, TAIL = 0, 1, 2


@njit(cache=True, inline="always")
def term(v, kind, p):
    """The summand of ``v`` for a sum of ``kind``."""
    if kind == SQUARED_DEVIATION:
        d = v - p
        return d * d
    if kind == TAIL:
        return v if v <= p else 0.0
    return v


@njit(cache=True)
def block_sum(a, lo, n, kind, p):
    """numpy's pairwise sum of a block of ``n <= 128`` terms: a plain loop from -0.0 below 8 terms, else 8
    interleaved accumulators combined as a tree, then the remainder one by one."""
    b = a[lo:lo + n]
    if n < 8:
        res = -0.0
        for i in range(n):
            res += term(b[i], kind, p)
        return res
    r0, r1, r2, r3 = term(b[0], kind, p), term(b[1], kind, p), term(b[2], kind, p), term(b[3], kind, p)
    r4, r5, r6, r7 = term(b[4], kind, p), term(b[5], kind, p), term(b[6], kind, p), term(b[7], kind, p)
    end = n - n % 8
    i = 8
    while i < end:
        r0 += term(b[i], kind, p)
        r1 += term(b[i + 1], kind, p)
        r2 += term(b[i + 2], kind, p)
        r3 += term(b[i + 3], kind, p)
        r4 += term(b[i + 4], kind, p)
        r5 += term(b[i + 5], kind, p)
        r6 += term(b[i + 6], kind, p)
        r7 += term(b[i + 7], kind, p)
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += term(b[i], kind, p)
        i += 1
    return res


@njit(cache=True)
def split(n):
    """Where numpy splits a run of more than 128 terms: half of it, rounded down to a multiple of 8."""
    half = n // 2
    return half - half % 8


@njit(cache=True)
def pairwise_sum(a, lo, n, kind, p):
    """numpy's pairwise sum (its ``DOUBLE_pairwise_sum``) of the terms of ``a[lo:lo + n]``, in numpy's exact order.

    numpy recurses: sum(first part) + sum(second part) at ``split(n)``, down to blocks. A cached numba function
    cannot recurse, so this walks that tree with an explicit stack of open runs (start, size, whether its first
    part is summed) and the first parts' sums.
    """
    if n <= PW_BLOCK:
        return block_sum(a, lo, n, kind, p)
    runs = np.empty((3, 64), np.int64)
    firsts = np.empty(64)
    top = 0
    runs[0, 0], runs[1, 0], runs[2, 0] = lo, n, 0
    while True:
        while runs[1, top] > PW_BLOCK:  # descend into first parts down to a block
            runs[0, top + 1], runs[1, top + 1], runs[2, top + 1] = runs[0, top], split(runs[1, top]), 0
            top += 1
        total = block_sum(a, runs[0, top], runs[1, top], kind, p)
        top -= 1
        while top >= 0 and runs[2, top]:  # both parts summed: add them and climb
            total = firsts[top] + total
            top -= 1
        if top < 0:
            return total
        firsts[top], runs[2, top] = total, 1  # first part summed: go on with the second
        half = split(runs[1, top])
        runs[0, top + 1], runs[1, top + 1], runs[2, top + 1] = runs[0, top] + half, runs[1, top] - half, 0
        top += 1


@njit(cache=True, inline="always")
def np_sum(a, lo, n, kind=VALUE, p=0.0):
    """``np.sum`` of the terms of ``a[lo:lo + n]``: numpy's add reduction starts from its identity 0.0, then adds
    the pairwise sum.

    O(n) per call, on purpose: a running or windowed-update sum would round differently from numpy's order.
    """
    return 0.0 + pairwise_sum(a, lo, n, kind, p)


@njit(cache=True, inline="always")
def np_mean(a, lo, n):
    """``np.mean`` of ``a[lo:lo + n]``: the sum divided by the count."""
    return np_sum(a, lo, n) / n


@njit(cache=True, error_model="numpy", inline="always")
def np_std1(a, lo, n):
    """``np.std(a[lo:lo + n], ddof=1)``: the mean, then the sum of squared deviations over n - 1, its root."""
    return np.sqrt(np_sum(a, lo, n, SQUARED_DEVIATION, np_mean(a, lo, n)) / (n - 1))


@njit(cache=True)
def np_max(a, lo, n):
    """``np.max`` of ``a[lo:lo + n]``, NaN if any value is NaN: an O(n) scan over 4 running maxima (tens of ns at
    the usual windows; a maximum is exact in any order)."""
    b = a[lo:lo + n]
    m0 = m1 = m2 = m3 = b[0]
    nan = False
    end = n - n % 4
    i = 0
    while i < end:
        v0, v1, v2, v3 = b[i], b[i + 1], b[i + 2], b[i + 3]
        nan |= (v0 != v0) | (v1 != v1) | (v2 != v2) | (v3 != v3)
        m0 = v0 if v0 > m0 else m0
        m1 = v1 if v1 > m1 else m1
        m2 = v2 if v2 > m2 else m2
        m3 = v3 if v3 > m3 else m3
        i += 4
    while i < n:
        v0 = b[i]
        nan |= v0 != v0
        m0 = v0 if v0 > m0 else m0
        i += 1
    if nan:
        for v in b:
            if v != v:
                return v
    m0 = m1 if m1 > m0 else m0
    m2 = m3 if m3 > m2 else m2
    return m2 if m2 > m0 else m0


@njit(cache=True, inline="always")
def nan_max(a, b):
    """``np.maximum(a, b)``: NaN if either is NaN."""
    if a != a:
        return a
    if b != b:
        return b
    return a if a > b else b


@njit(cache=True, inline="always")
def np_clip(x, lo, hi):
    """``np.clip(x, lo, hi)``: NaN stays NaN and a value equal to a bound is kept as it is (so -0.0 stays)."""
    if x != x:
        return x
    if x < lo:
        return lo
    if x > hi:
        return hi
    return x


@njit(cache=True, inline="always")
def sorts_before(a, b):
    """Whether ``a`` comes before ``b`` in ``np.sort`` order, where NaN sorts last (bitwise, so without branches)."""
    return (a < b) | ((b != b) & (a == a))


@njit(cache=True)
def ranks(arr, n, x, y):
    """How many values of sorted ``arr[:n]`` (n >= 1) sort before ``x``, and before ``y``: where each goes. Two
    branch-free binary searches (a window's comparisons are unpredictable) in one loop, so their steps overlap."""
    bx = by = 0
    while n > 1:
        half = n >> 1
        bx = bx + half if sorts_before(arr[bx + half - 1], x) else bx
        by = by + half if sorts_before(arr[by + half - 1], y) else by
        n -= half
    return bx + sorts_before(arr[bx], x), by + sorts_before(arr[by], y)


@njit(cache=True)
def shift(arr, lo, hi, step):
    """Move ``arr[lo:hi]`` one place right (``step`` 1) or left (-1)."""
    if step > 0:
        part = arr[lo:hi + 1]
        i = hi - lo
        while i > 0:
            part[i] = part[i - 1]
            i -= 1
    else:
        part = arr[lo - 1:hi]
        for i in range(hi - lo):
            part[i] = part[i + 1]


@njit(cache=True)
def insert_sorted(arr, n, x):
    """Insert ``x`` into sorted ``arr[:n]`` (which has room for one more)."""
    at = ranks(arr, n, x, x)[0] if n else 0
    shift(arr, at, n, 1)
    arr[at] = x


@njit(cache=True)
def replace_sorted(arr, n, old, new):
    """Replace a value equal to ``old`` by ``new`` in sorted ``arr[:n]``, keeping it sorted: the values between the
    two places move over by one, instead of a sort per bar."""
    gone, at = ranks(arr, n, old, new)
    if at > gone:
        shift(arr, gone + 1, at, -1)
        arr[at - 1] = new
    else:
        shift(arr, at, gone, 1)
        arr[at] = new


@njit(cache=True, inline="always")
def quantile_sorted(arr, n, q):
    """``np.quantile(x, q)`` (default 'linear' method) of the ``n`` values sorted into ``arr[:n]``."""
    if arr[n - 1] != arr[n - 1]:  # a NaN sorts last, and numpy returns it
        return arr[n - 1]
    virtual = (n - 1) * q  # q is in (0, 1), so virtual >= 0
    if virtual >= n - 1:  # numpy takes the last value (index -1) and measures gamma from -1
        below, above, base = n - 1, n - 1, -1.0
    else:
        base = np.floor(virtual)
        below = int(base)
        above = below + 1
    gamma = virtual - base
    a, b = arr[below], arr[above]
    diff = b - a  # numpy's _lerp: from the upper end when gamma >= 0.5
    if gamma >= 0.5:
        return b - diff * (1 - gamma)
    return a + diff * gamma


@njit(cache=True, inline="always")
def count_at_most(arr, n, x, guess):
    """How many values of sorted ``arr[:n]`` are <= ``x`` (none when ``x`` is NaN), walking from ``guess``, which
    for a quantile is one or two steps off."""
    i = guess
    while i > 0 and not arr[i - 1] <= x:
        i -= 1
    while i < n and arr[i] <= x:
        i += 1
    return i


@njit(cache=True, error_model="numpy", inline="always")
def var_cvar(window, lo, n, ordered, q):
    """Historical VaR and CVaR (``engine.risk.measures.var_cvar_of``) of ``window[lo:lo + n]``, whose values
    ``ordered`` holds sorted: the quantile and the tail's size come from the order statistics, the tail's sum
    (``np.where(tail, window, 0.0).sum()``) runs in time order."""
    cut = quantile_sorted(ordered, n, q)
    count = count_at_most(ordered, n, cut, min(int((n - 1) * q) + 1, n))
    return -cut, -np_sum(window, lo, n, TAIL, cut) / count


@njit(cache=True, inline="always")
def percentile_rank(a, lo, n, x):
    """``engine.risk.measures.percentile_rank_of``: the share of ``a[lo:lo + n]`` at or below ``x`` (numpy's mean of
    the booleans, an exact count over ``n``)."""
    part = a[lo:lo + n]
    below = 0
    for i in range(n):
        below += part[i] <= x
    return below / n


@njit(cache=True, inline="always")
def push(ring, count, value):
    """Append ``value`` to a doubled ring holding ``count`` values so far; return the new count."""
    size = len(ring) // 2
    at = count % size
    ring[at] = value
    ring[at + size] = value
    return count + 1


@njit(cache=True, inline="always")
def push_return(st, value):
    """Append a return to the return window and its sorted copy (which drops the return leaving the window)."""
    w = len(st.ret_sorted)
    n = st.n_ret
    if n >= w:
        replace_sorted(st.ret_sorted[:], w, st.ret[n % w], value)  # the oldest return leaves the window
    else:
        insert_sorted(st.ret_sorted[:], n, value)
    st.n_ret = push(st.ret, n, value)


@njit(cache=True)
def previous_closes(table, tf0, market, tf, slots, close, gap, rows, prev):
    """Resolve the rows' slots from ``table`` when it is not empty (False, untouched, when it cannot; see
    ``engine.structure.kernel_buffers``); then set ``prev`` to each live row's previous close of its key (NaN
    for gap rows and a key's first bar) and advance the keys' last closes."""
    if len(table) and not resolve_slots(table, tf0, market, tf, slots):
        return False
    for r in range(len(close)):
        if gap[r]:
            prev[r] = np.nan
            continue
        st = rows[slots[r]]
        prev[r] = st.prev_close
        st.prev_close = close[r]
    return True


@njit(cache=True, error_model="numpy", inline="always")
def score_row(row, k, dd_col, var_col, close, factors, scales):
    """``engine.risk.score.score`` of one row of risk columns: the score goes to ``dd_col + 2``, the four
    components (100 * weight * clipped measure, summed left to right as Python's ``sum`` does) after it."""
    p0 = factors[0] * np_clip(row[dd_col + 1], 0.0, 1.0)
    p1 = factors[1] * np_clip(row[var_col] / scales[0], 0.0, 1.0)
    p2 = factors[2] * np_clip(row[dd_col] / scales[1], 0.0, 1.0)
    p3 = factors[3] * np_clip(row[k + 3] / close / scales[2], 0.0, 1.0)
    row[dd_col + 2] = np_clip((((0.0 + p0) + p1) + p2) + p3, 0.0, 100.0)
    row[dd_col + 3], row[dd_col + 4], row[dd_col + 5], row[dd_col + 6] = p0, p1, p2, p3


@njit(cache=True, error_model="numpy")
def risk_rows(slots, tf, high, low, close, gap, prev, ret, hl, values, out, rows,
              quantiles, worst, stop_atr, annualise, year_ns, parkinson_denom, factors, scales):
    """Advance each live row's key by that row, in row order; write ``values`` then the risk columns to ``out``.

    ``prev`` comes from ``previous_closes``; ``ret`` = ln(close / prev) and ``hl`` = ln(high / low)^2 per row.
    ``quantiles`` holds 1 - level per confidence level and ``worst`` indexes the level the score uses;
    ``factors`` holds 100 * weight per score component and ``scales`` the var, drawdown and stop scales.
    Columns: vol_cc, vol_parkinson, atr, stop_distance, (var, cvar) per level, drawdown, vol_percentile,
    risk_score, then the four score components. Gap rows get NaN.
    """
    n, k = values.shape
    n_levels = len(quantiles)
    dd_col = k + 4 + 2 * n_levels
    w = len(rows[0].ret_sorted)
    n_atr = len(rows[0].tr) // 2
    n_hist = len(rows[0].vol) // 2
    # helpers get the state's windows as plain arrays ([:]), so they compile once, not once per window size
    for r in range(n):
        for j in range(k):
            out[r, j] = values[r, j]
        for j in range(k, out.shape[1]):
            out[r, j] = np.nan
        if gap[r]:
            continue
        st = rows[slots[r]]
        scale = np.sqrt(year_ns / np.float64(tf[r])) if annualise else 1.0
        push(st.hl, st.n_bar, hl[r])
        st.n_bar = push(st.close, st.n_bar, close[r])
        p = prev[r]
        if p == p:  # the key has a previous close: a return and a true range
            tr = nan_max(high[r] - low[r], nan_max(abs(high[r] - p), abs(low[r] - p)))
            push(st.tr, st.n_ret, tr)
            push_return(st, ret[r])
        if st.n_bar >= w:
            at = st.n_bar % w
            out[r, k + 1] = np.sqrt(np_mean(st.hl[:], at, w) / parkinson_denom) * scale
            out[r, dd_col] = 1.0 - close[r] / np_max(st.close[:], at, w)
        if st.n_ret >= n_atr:
            atr = np_mean(st.tr[:], st.n_ret % n_atr, n_atr)
            out[r, k + 2] = atr
            out[r, k + 3] = atr * stop_atr
        if st.n_ret >= w:
            at = st.n_ret % w
            ret_window = st.ret[:]
            vol = np_std1(ret_window, at, w) * scale
            out[r, k] = vol
            for j in range(n_levels):
                out[r, k + 4 + 2 * j], out[r, k + 5 + 2 * j] = var_cvar(ret_window, at, w, st.ret_sorted[:],
                                                                        quantiles[j])
            st.n_vol = push(st.vol, st.n_vol, vol)
            if st.n_vol >= n_hist:
                out[r, dd_col + 1] = percentile_rank(st.vol[:], st.n_vol % n_hist, n_hist, vol)
        score_row(out[r], k, dd_col, k + 4 + 2 * worst, close[r], factors, scales)
    return n
