"""Kernel of ``engine.structure.gaps.FVGOperator``: gap lifecycle, detection and joining, one row at a time."""

from __future__ import annotations

import numpy as np
from numba import njit

from engine.structure.kernel_buffers import resolve_slots, sort_events

EMPTY, OPEN, TOUCHED = 0, 1, 2  # gap states, as engine.structure.gaps keeps them
# event steps, as indices into engine.structure.gaps's step names
STEP_TOUCHED, STEP_MITIGATED, STEP_INVALIDATED, STEP_MERGED, STEP_EVICTED, STEP_CREATED = range(6)
STEP_RANK = np.array([0, 1, 1, 2, 3, 4])  # within one bar of one key a gap is touched, filled, merged, evicted
N_INTS, N_FLOATS = 7, 3  # event fields: (market, tf, confirmed_ts, direction, step, ts, joined), (price, top, bottom)


@njit(cache=True)
def _emit(ints, floats, used, market, tf, confirmed, d, step, ts, joined, price, top, bot):
    ints[0, used], ints[1, used], ints[2, used], ints[3, used] = market, tf, confirmed, d
    ints[4, used], ints[5, used], ints[6, used] = step, ts, joined
    floats[0, used], floats[1, used], floats[2, used] = price, top, bot
    return used + 1


@njit(cache=True)
def _reaches(st, high, low):
    """Whether the bar reaches the next edge of any live gap: bull gaps need low <= top while open and
    <= bottom once touched, bear gaps the mirror; NaN bounds propagate as through numpy's max/min."""
    lim_bull, lim_bear = -np.inf, np.inf
    for g in range(st.gstate.shape[1]):
        state = st.gstate[0, g]
        if state != EMPTY:
            v = st.gtop[0, g] if state == OPEN else st.gbot[0, g]
            if np.isnan(v) or np.isnan(lim_bull):
                lim_bull = np.nan
            elif v > lim_bull:
                lim_bull = v
        state = st.gstate[1, g]
        if state != EMPTY:
            v = st.gbot[1, g] if state == OPEN else st.gtop[1, g]
            if np.isnan(v) or np.isnan(lim_bear):
                lim_bear = np.nan
            elif v < lim_bear:
                lim_bear = v
    return low <= lim_bull or high >= lim_bear


@njit(cache=True)
def _newest_columns(st):
    """``st.cols`` = top and bottom of the newest open gap of each side, NaN if none."""
    for d in range(2):
        best, place = -1, -1
        for g in range(st.gstate.shape[1]):
            if st.gstate[d, g] != EMPTY and st.gseq[d, g] > best:
                best, place = st.gseq[d, g], g
        if place < 0:
            st.cols[2 * d], st.cols[2 * d + 1] = np.nan, np.nan
        else:
            st.cols[2 * d], st.cols[2 * d + 1] = st.gtop[d, place], st.gbot[d, place]


@njit(cache=True)
def gap_rows(table, tf0, slots, ranks, start, ints, floats, used,
             market, tf, open_ts, open_, high, low, close, gap, values, out, rows, join, require_body):
    """Advance each row's key by that row, in row order; write ``values`` then the 4 gap columns to ``out``.

    ``rows`` holds FVGOperator's state, one record per slot. Follows the convention of
    ``engine.structure.kernel_buffers``; events are sorted by (confirmed_ts, market, step, gap ts, direction).
    """
    if len(table) and not resolve_slots(table, tf0, market, tf, slots):
        return -1, 0
    n, k = values.shape
    kmax = rows[0].gstate.shape[1]
    for r in range(start, n):
        # every gap may step twice, one may merge, one be evicted and one created
        if used + 5 * kmax + 2 > ints.shape[1]:
            return r, used
        for j in range(k):
            out[r, j] = values[r, j]
        st = rows[slots[r]]
        if gap[r]:
            # a gap bar breaks the three consecutive bars and any join run; open gaps wait for prices
            st.run, st.pdir = 0, -1
            for j in range(4):
                out[r, k + j] = st.cols[j]
            continue
        h, lo, cl, m, t = high[r], low[r], close[r], market[r], tf[r]
        confirmed = open_ts[r] + t
        changed = False
        if _reaches(st, h, lo):
            for d in range(2):
                for g in range(kmax):
                    state = st.gstate[d, g]
                    if state == EMPTY:
                        continue
                    top, bot = st.gtop[d, g], st.gbot[d, g]
                    if d == 0:  # bull: near edge top, far edge bottom
                        touched, filled, broken, near, far = state == OPEN and lo <= top, lo <= bot, cl < bot, top, bot
                    else:  # bear: near edge bottom, far edge top
                        touched, filled, broken, near, far = state == OPEN and h >= bot, h >= top, cl > top, bot, top
                    if touched:
                        used = _emit(ints, floats, used, m, t, confirmed, d, STEP_TOUCHED, st.gts[d, g],
                                     st.gjoined[d, g], near, top, bot)
                        st.gstate[d, g] = TOUCHED
                    if filled:
                        used = _emit(ints, floats, used, m, t, confirmed, d,
                                     STEP_INVALIDATED if broken else STEP_MITIGATED, st.gts[d, g],
                                     st.gjoined[d, g], far, top, bot)
                        st.gstate[d, g] = EMPTY
                        changed = True
        # a gap whose middle bar is the previous bar, confirmed by this one
        hp, lp = st.high[0], st.low[0]
        ready = st.run >= 2
        bull = ready and lo > hp
        bear = ready and h < lp
        if require_body:
            bull = bull and st.close > st.open
            bear = bear and st.close < st.open
        if bull or bear:
            d = 0 if bull else 1
            top, bot = (lo, hp) if d == 0 else (lp, h)
            ts, joined = st.ts, 1
            if join and st.pdir == d:
                top = st.ptop if st.ptop > top else top  # max(top, ptop), min(bot, pbot) as Python has them
                bot = st.pbot if st.pbot < bot else bot
                joined = st.pjoined + 1
                for g in range(kmax):
                    if st.gstate[d, g] != EMPTY and st.gts[d, g] == st.pts:
                        t_, b_ = st.gtop[d, g], st.gbot[d, g]
                        used = _emit(ints, floats, used, m, t, confirmed, d, STEP_MERGED, st.gts[d, g],
                                     st.gjoined[d, g], (t_ + b_) / 2, t_, b_)
                        st.gstate[d, g] = EMPTY
            place = -1
            for g in range(kmax):
                if st.gstate[d, g] == EMPTY:
                    place = g
                    break
            if place < 0:  # bounded state: the oldest open gap of this direction makes room
                place = 0
                for g in range(1, kmax):
                    if st.gseq[d, g] < st.gseq[d, place]:
                        place = g
                t_, b_ = st.gtop[d, place], st.gbot[d, place]
                used = _emit(ints, floats, used, m, t, confirmed, d, STEP_EVICTED, st.gts[d, place],
                             st.gjoined[d, place], (t_ + b_) / 2, t_, b_)
            st.gstate[d, place], st.gtop[d, place], st.gbot[d, place] = OPEN, top, bot
            st.gts[d, place], st.gjoined[d, place], st.gseq[d, place] = ts, joined, st.seq
            st.seq += 1
            used = _emit(ints, floats, used, m, t, confirmed, d, STEP_CREATED, ts, joined, (top + bot) / 2, top, bot)
            st.pdir, st.ptop, st.pbot, st.pjoined, st.pts = d, top, bot, joined, ts
            changed = True
        else:
            st.pdir = -1
        # shift the three-bar window: this bar becomes the middle candidate
        st.high[0], st.low[0] = st.high[1], st.low[1]
        st.high[1], st.low[1] = h, lo
        st.open, st.close, st.ts = open_[r], cl, open_ts[r]
        st.run = min(st.run + 1, 2)
        if changed:
            _newest_columns(st)
        for j in range(4):
            out[r, k + j] = st.cols[j]
    if len(ranks) and used > 1:
        keys = np.empty((5, used), np.int64)
        for e in range(used):
            keys[0, e], keys[1, e], keys[2, e] = ints[2, e], ranks[ints[0, e]], STEP_RANK[ints[4, e]]
            keys[3, e], keys[4, e] = ints[5, e], ints[3, e]
        sort_events(ints, floats, keys)
    return n, used
