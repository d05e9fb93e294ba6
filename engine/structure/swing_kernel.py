"""Kernel of ``engine.structure.swings.SwingOperator``: swing confirmation and BOS/CHoCH, one row at a time."""

from __future__ import annotations

import numpy as np
from numba import njit

from engine.structure.kernel_buffers import resolve_slots, sort_events

# event kinds, as indices into engine.structure.swings's kind names
SWING_HIGH, SWING_LOW, BOS_BULL, CHOCH_BULL, BOS_BEAR, CHOCH_BEAR = range(6)
KIND_RANK = np.array([4, 5, 1, 3, 0, 2])  # rank of each kind's name in text order (bos_bear first)
N_INTS, N_FLOATS = 5, 2  # event fields: (kind, ts, market, tf, confirmed_ts), (price, bar close)


@njit(cache=True)
def swing_rows(table, tf0, slots, ranks, start, ints, floats, used,
               market, tf, open_ts, high, low, close, gap, values, out, rows, left, by_close):
    """Advance each row's key by that row, in row order; write ``values`` then the 7 structure columns to ``out``.

    ``rows`` holds SwingOperator's state, one record per slot. Follows the convention of
    ``engine.structure.kernel_buffers``; events are sorted by (confirmed_ts, market, kind, ts).
    """
    if len(table) and not resolve_slots(table, tf0, market, tf, slots):
        return -1, 0
    n, k = values.shape
    w = len(rows[0].high)
    for r in range(start, n):
        if used + 4 > ints.shape[1]:
            return r, used
        for j in range(k):
            out[r, j] = values[r, j]
        st = rows[slots[r]]
        if gap[r]:  # a gap bar carries the levels forward as they stand at it, whatever the batch holds after it
            out[r, k], out[r, k + 1] = np.nan, np.nan
            out[r, k + 2], out[r, k + 3], out[r, k + 4] = st.last_high, st.last_low, st.trend
            out[r, k + 5], out[r, k + 6] = 0.0, 0.0
            continue
        cnt = st.count
        at = cnt % w
        st.high[at], st.low[at], st.ts[at] = high[r], low[r], open_ts[r]
        cnt += 1
        st.count = cnt
        # the window, oldest first, is ring[(cnt + p) % w] for p = 0 .. w-1; the candidate sits at p = left
        ci = (cnt + left) % w
        c_hi, c_lo = st.high[ci], st.low[ci]
        is_high = is_low = cnt >= w
        if is_high:
            for p in range(w):
                if p == left:
                    continue
                q = (cnt + p) % w
                h, lo = st.high[q], st.low[q]
                # written as "not (a > b)" so a NaN anywhere rejects the swing, as a NaN max would
                if p < left:
                    if not c_hi > h:
                        is_high = False
                    if not c_lo < lo:
                        is_low = False
                else:
                    if not c_hi >= h:
                        is_high = False
                    if not c_lo <= lo:
                        is_low = False
        if is_high:
            st.last_high = c_hi
            lvl_hi = c_hi
        else:
            lvl_hi = st.open_high
        if is_low:
            st.last_low = c_lo
            lvl_lo = c_lo
        else:
            lvl_lo = st.open_low
        trend = st.trend
        up = (close[r] if by_close else high[r]) > lvl_hi  # NaN (no open level) compares False
        down = (close[r] if by_close else low[r]) < lvl_lo
        up_choch = up and trend == -1
        if up:
            trend = 1
        down_choch = down and trend == 1
        if down:
            trend = -1
        st.trend = trend
        st.open_high = np.nan if up else lvl_hi
        st.open_low = np.nan if down else lvl_lo
        out[r, k] = c_hi if is_high else np.nan
        out[r, k + 1] = c_lo if is_low else np.nan
        out[r, k + 2], out[r, k + 3], out[r, k + 4] = st.last_high, st.last_low, trend
        out[r, k + 5] = (1.0 if up and not up_choch else 0.0) - (1.0 if down and not down_choch else 0.0)
        out[r, k + 6] = (1.0 if up_choch else 0.0) - (1.0 if down_choch else 0.0)
        if not (is_high or is_low or up or down):
            continue
        cand_ts = st.ts[ci]
        confirmed = open_ts[r] + tf[r]
        for kind, hit, ts, price in ((SWING_HIGH, is_high, cand_ts, c_hi), (SWING_LOW, is_low, cand_ts, c_lo),
                                     (CHOCH_BULL if up_choch else BOS_BULL, up, open_ts[r], lvl_hi),
                                     (CHOCH_BEAR if down_choch else BOS_BEAR, down, open_ts[r], lvl_lo)):
            if hit:
                ints[0, used], ints[1, used], ints[2, used] = kind, ts, market[r]
                ints[3, used], ints[4, used] = tf[r], confirmed
                floats[0, used], floats[1, used] = price, close[r]
                used += 1
    if len(ranks) and used > 1:
        keys = np.empty((4, used), np.int64)
        for e in range(used):
            keys[0, e], keys[1, e] = ints[4, e], ranks[ints[2, e]]
            keys[2, e], keys[3, e] = KIND_RANK[ints[0, e]], ints[1, e]
        sort_events(ints, floats, keys)
    return n, used
