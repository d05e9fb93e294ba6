"""Kernel of ``engine.structure.liquidity.LiquidityOperator``: pools, sweeps and reference levels, one row at a time."""

from __future__ import annotations

import numpy as np
from numba import njit

from engine.structure.kernel_buffers import resolve_slots, sort_events
from engine.structure.ranges import DAY, MINUTE, MONDAY_OFFSET, WEEK

# event steps, as indices into engine.structure.liquidity's step names (the order of the kind codes)
STEP_CREATED, STEP_GROWN, STEP_SWEPT, STEP_EVICTED = range(4)
STEP_RANK = np.array([2, 2, 0, 1])  # within one bar of one key: sweeps, then evictions, then joins
TOL_ABS, TOL_ATR, TOL_PCT = range(3)  # how an anchor's tolerance is set
NO_PERIOD = np.iinfo(np.int64).min  # "no bar seen yet" for day/week/session ids
# event fields: (market, tf, confirmed_ts, side, step, pool ts, members), (price, anchor, tolerance, top, bottom)
N_INTS, N_FLOATS = 7, 5
# columns of ``cols``: where the kernel reads its inputs in ``values`` (-1: no ATR column)
COL_SWING_HIGH, COL_SWING_LOW, COL_RANGE_HIGH, COL_RANGE_LOW, COL_ATR = range(5)


@njit(cache=True)
def _fmax(a, b):
    """numpy's fmax: NaN only when both are."""
    if np.isnan(a):
        return b
    if np.isnan(b):
        return a
    return a if a >= b else b


@njit(cache=True)
def _fmin(a, b):
    if np.isnan(a):
        return b
    if np.isnan(b):
        return a
    return a if a <= b else b


@njit(cache=True)
def _sorted_marks(marks):
    """Mark indices sorted by (confirmed_ts, market, tf, side), ties in batch order."""
    perm = np.arange(len(marks))
    for f in (3, 1, 0, 2):  # minor key first; mergesort is stable
        perm = perm[np.argsort(marks[:, f][perm], kind="mergesort")]
    return perm


@njit(cache=True)
def _mark_after(marks, e, confirmed, m, t, d):
    """Whether mark ``e`` sorts after (confirmed, m, t, d) by (confirmed_ts, market, tf, side)."""
    if marks[e, 2] != confirmed:
        return marks[e, 2] > confirmed
    if marks[e, 0] != m:
        return marks[e, 0] > m
    if marks[e, 1] != t:
        return marks[e, 1] > t
    return marks[e, 3] > d


@njit(cache=True)
def _swing_ts(marks, perm, m, t, confirmed, d, fallback):
    """Open time of the swing bar of the last swing event of this key, side and confirmation time;
    ``fallback`` when the batch carries none."""
    lo, hi = 0, len(perm)
    while lo < hi:  # the first mark sorting after the query
        mid = (lo + hi) // 2
        if _mark_after(marks, perm[mid], confirmed, m, t, d):
            hi = mid
        else:
            lo = mid + 1
    if lo > 0:
        e = perm[lo - 1]
        if marks[e, 2] == confirmed and marks[e, 0] == m and marks[e, 1] == t and marks[e, 3] == d:
            return marks[e, 4]
    return fallback


@njit(cache=True)
def _emit(ints, floats, used, m, t, confirmed, d, step, st, g):
    """Append an event about anchor ``g`` of side ``d`` of the key whose state is ``st``."""
    n = st.count[d, g]
    ints[0, used], ints[1, used], ints[2, used], ints[3, used] = m, t, confirmed, d
    ints[4, used], ints[5, used], ints[6, used] = step, st.ts[d, g], n
    floats[0, used], floats[1, used], floats[2, used] = st.sum[d, g] / n, st.anchor[d, g], st.tol[d, g]
    floats[3, used], floats[4, used] = st.top[d, g], st.bottom[d, g]
    return used + 1


@njit(cache=True)
def _join(ints, floats, used, m, t, confirmed, st, d, level, ts, tol):
    """A newly confirmed swing joins the earliest open anchor whose band holds it, or becomes an anchor."""
    span = st.span[d]
    g = -1
    for q in range(span):
        if st.open[d, q] != 0 and abs(level - st.anchor[d, q]) <= st.tol[d, q]:
            if g < 0 or st.seq[d, q] < st.seq[d, g]:
                g = q
    if g >= 0:
        st.sum[d, g] += level
        st.count[d, g] += 1
        if level > st.top[d, g]:  # max(top, level) and min(bottom, level) as Python has them
            st.top[d, g] = level
        if level < st.bottom[d, g]:
            st.bottom[d, g] = level
        step = STEP_CREATED if st.count[d, g] == 2 else STEP_GROWN
        return _emit(ints, floats, used, m, t, confirmed, d, step, st, g)
    for q in range(span):
        if st.open[d, q] == 0:
            g = q
            break
    if g < 0 and span < st.open.shape[1]:  # every slot below the span is open: the next one
        g = span
        st.span[d] = span + 1
    if g < 0:  # bounded state: the oldest anchor of this side makes room
        g = 0
        for q in range(1, span):
            if st.seq[d, q] < st.seq[d, g]:
                g = q
        if st.count[d, g] >= 2:
            used = _emit(ints, floats, used, m, t, confirmed, d, STEP_EVICTED, st, g)
    st.open[d, g], st.anchor[d, g], st.tol[d, g] = 1, level, tol
    st.sum[d, g], st.count[d, g] = level, 1
    st.top[d, g], st.bottom[d, g] = level, level
    st.ts[d, g], st.seq[d, g] = ts, st.next_seq
    st.next_seq += 1
    return used


@njit(cache=True)
def _refresh(st, d):
    """Recompute side ``d``'s cached values from its anchors: the level of the newest open pool (NaN when none),
    the price that reaches the nearest band (highs: the lowest ``anchor + tol``, lows: the highest
    ``anchor - tol``), so bars that reach no band skip the anchors, and the span of slots holding open anchors."""
    span = st.span[d]
    while span > 0 and st.open[d, span - 1] == 0:
        span -= 1
    st.span[d] = span
    place = -1
    reach = np.inf if d == 0 else -np.inf
    for g in range(span):
        if st.open[d, g] == 0:
            continue
        if st.count[d, g] >= 2 and (place < 0 or st.seq[d, g] > st.seq[d, place]):
            place = g
        if d == 0:
            v = st.anchor[d, g] + st.tol[d, g]
            if v < reach:
                reach = v
        else:
            v = st.anchor[d, g] - st.tol[d, g]
            if v > reach:
                reach = v
    st.level[d] = np.nan if place < 0 else st.sum[d, place] / st.count[d, place]
    if d == 0:
        st.reach_high = reach
    else:
        st.reach_low = reach


@njit(cache=True)
def _periods(st, open_ts, o, h, lo, real, sessions, out, r, at):
    """Advance the day, week and session state by one bar; write PERIOD_COLUMNS then the session columns
    (see engine.structure.ranges) to ``out[r, at:]``."""
    for p in range(2):
        pid = open_ts // DAY if p == 0 else (open_ts - MONDAY_OFFSET) // WEEK
        hi, low = st.p_hi[p], st.p_lo[p]
        if pid != st.p_id[p]:
            # a period closes when a bar of a later one arrives; one without real bars keeps the older values
            if st.p_id[p] != NO_PERIOD and not np.isnan(hi):
                st.p_prev_hi[p], st.p_prev_lo[p] = hi, low
            hi, low = np.nan, np.nan
        if real:
            hi, low = _fmax(hi, h), _fmin(low, lo)
        st.p_id[p], st.p_hi[p], st.p_lo[p] = pid, hi, low
        out[r, at + 2 * p], out[r, at + 2 * p + 1] = st.p_prev_hi[p], st.p_prev_lo[p]
    minute = (open_ts % DAY) // MINUTE
    day_start = open_ts - open_ts % DAY
    c = at + 4
    for k in range(len(sessions)):
        start, end = sessions[k, 0], sessions[k, 1]
        inside = (minute >= start and minute < end) if start < end else (minute >= start or minute < end)
        if inside:
            # the instance's start time tells one day's session from the next
            begun = day_start + start * MINUTE if minute >= start else day_start - DAY + start * MINUTE
            if begun != st.ss_start[k]:
                st.ss_open[k], st.ss_hi[k], st.ss_lo[k] = np.nan, np.nan, np.nan
            st.ss_start[k] = begun
            if real:
                if np.isnan(st.ss_open[k]):
                    st.ss_open[k] = o
                st.ss_hi[k], st.ss_lo[k] = _fmax(st.ss_hi[k], h), _fmin(st.ss_lo[k], lo)
            # the open of the latest session that began is kept after it ends; high/low only while inside
            out[r, c], out[r, c + 1], out[r, c + 2], out[r, c + 3] = st.ss_open[k], 1.0, st.ss_hi[k], st.ss_lo[k]
        else:
            out[r, c], out[r, c + 1], out[r, c + 2], out[r, c + 3] = st.ss_open[k], 0.0, np.nan, np.nan
        c += 4


@njit(cache=True)
def liquidity_rows(table, tf0, slots, ranks, start, ints, floats, used,
                   market, tf, open_ts, open_, high, low, close, gap, values, out, cols, marks, rows, sessions,
                   tol_mode, tol_value, tol_pct):
    """Advance each row's key by that row, in row order; write ``values`` then the liquidity, range, period and
    session columns to ``out``.

    ``cols`` locates the swing, range and ATR inputs in ``values``; ``marks`` are SwingOperator's swing events
    of the batch, one row each (market index, tf, confirmed_ts, side, ts); ``rows`` holds the operator's state,
    one record per slot; ``sessions`` the sessions' (start, end) minutes. The tolerance of a new anchor is
    ``tol_value`` (TOL_ABS), ``tol_value`` x ATR when finite (TOL_ATR), else ``tol_pct`` x |level|. Follows the
    convention of ``engine.structure.kernel_buffers``; events are sorted by (confirmed_ts, market, step rank,
    side, pool ts).
    """
    if len(table) and not resolve_slots(table, tf0, market, tf, slots):
        return -1, 0
    n, k = values.shape
    kmax = rows[0].open.shape[1]
    perm = _sorted_marks(marks)
    c_sh, c_sl, c_rh, c_rl, c_atr = cols[COL_SWING_HIGH], cols[COL_SWING_LOW], cols[COL_RANGE_HIGH], \
        cols[COL_RANGE_LOW], cols[COL_ATR]
    for r in range(start, n):
        # every anchor may be swept; each side may evict one pool or step one
        if used + 2 * kmax + 2 > ints.shape[1]:
            return r, used
        for j in range(k):
            out[r, j] = values[r, j]
        st = rows[slots[r]]
        real = not gap[r]
        h, lo, m, t = high[r], low[r], market[r], tf[r]
        _periods(st, open_ts[r], open_[r], h, lo, real, sessions, out, r, k + 8)
        swept_high = swept_low = False
        if real:
            confirmed = open_ts[r] + t
            for d in range(2):
                if not ((h >= st.reach_high) if d == 0 else (lo <= st.reach_low)):
                    continue
                for g in range(st.span[d]):
                    # an anchor closes at the first bar trading at or beyond its band; only pools are events
                    if st.open[d, g] != 0 and ((h >= st.anchor[d, g] + st.tol[d, g]) if d == 0
                                               else (lo <= st.anchor[d, g] - st.tol[d, g])):
                        st.open[d, g] = 0
                        if st.count[d, g] >= 2:
                            used = _emit(ints, floats, used, m, t, confirmed, d, STEP_SWEPT, st, g)
                            if d == 0:
                                swept_high = True
                            else:
                                swept_low = True
                _refresh(st, d)
            for d in range(2):
                level = values[r, c_sh if d == 0 else c_sl]
                if not np.isfinite(level):
                    continue
                ts = _swing_ts(marks, perm, m, t, confirmed, d, open_ts[r])
                if tol_mode == TOL_ABS:
                    tol = tol_value
                elif tol_mode == TOL_ATR and c_atr >= 0 and np.isfinite(values[r, c_atr]):
                    tol = tol_value * values[r, c_atr]
                else:
                    tol = tol_pct * abs(level)
                used = _join(ints, floats, used, m, t, confirmed, st, d, level, ts, tol)
                _refresh(st, d)
        out[r, k], out[r, k + 1] = st.level[0], st.level[1]
        out[r, k + 2] = 1.0 if swept_high else 0.0
        out[r, k + 3] = 1.0 if swept_low else 0.0
        # the close's position in the dealing range: 0 at its low, 1 at its high; zone +1 premium, -1 discount
        rh, rl = values[r, c_rh], values[r, c_rl]
        width = rh - rl
        pos = (close[r] - rl) / width if width > 0 else np.nan
        out[r, k + 4], out[r, k + 5], out[r, k + 6] = rh, rl, pos
        out[r, k + 7] = 1.0 if pos > 0.5 else (-1.0 if pos < 0.5 else 0.0)
    if len(ranks) and used > 1:
        keys = np.empty((5, used), np.int64)
        for e in range(used):
            keys[0, e], keys[1, e], keys[2, e] = ints[2, e], ranks[ints[0, e]], STEP_RANK[ints[4, e]]
            keys[3, e], keys[4, e] = ints[3, e], ints[5, e]
        sort_events(ints, floats, keys)
    return n, used
