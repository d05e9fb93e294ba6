"""Kernel of ``engine.structure.order_blocks.OrderBlockOperator``: block lifecycle and creation, one row at a time."""

from __future__ import annotations

import numpy as np
from numba import njit

from engine.structure.kernel_buffers import resolve_slots, sort_events

EMPTY, LIVE, TOUCHED, BREAKER = 0, 1, 2, 3  # block states, as engine.structure.order_blocks keeps them
# event steps; the codes are also the order of steps within one bar of one key
STEP_BREAKER_INVALIDATED, STEP_TOUCHED, STEP_MITIGATED, STEP_BREAKER_CREATED, STEP_EVICTED, STEP_CREATED = range(6)
# SwingOperator's event kinds (engine.structure.swing_kernel codes), applied within a bar in this order
SWING_HIGH, SWING_LOW = 0, 1
# event fields: (market, tf, confirmed_ts, direction, step, block ts), (price, top, bottom, the five meta values)
N_INTS, N_FLOATS = 6, 8


@njit(cache=True)
def _mark_order(kind):
    """Swing highs, then swing lows, then upward breaks, then downward ones (as SwingOperator finds them)."""
    return kind if kind < 2 else 2 + (kind - 2) // 2


@njit(cache=True)
def _nan_min(a, b):
    return np.nan if np.isnan(a) or np.isnan(b) else (a if a < b else b)


@njit(cache=True)
def _nan_max(a, b):
    return np.nan if np.isnan(a) or np.isnan(b) else (a if a > b else b)


@njit(cache=True)
def _emit(ints, floats, used, market, tf, confirmed, d, step, price, st, g):
    """Append an event about block ``g`` of side ``d`` of the key whose state is ``st``."""
    ints[0, used], ints[1, used], ints[2, used] = market, tf, confirmed
    ints[3, used], ints[4, used], ints[5, used] = d, step, st.ts[d, g]
    floats[0, used], floats[1, used], floats[2, used] = price, st.top[d, g], st.bot[d, g]
    for j in range(5):
        floats[3 + j, used] = st.meta[d, g, j]
    return used + 1


@njit(cache=True)
def _rows_of_marks(market, tf, open_ts, e_market, e_tf, e_conf):
    """CSR lists of the marks of each row (``head[r]:head[r+1]`` into the returned order), in event order.

    A mark belongs to the last row of its key whose bar closes at the mark's confirmation time.
    """
    n, n_marks = len(market), len(e_market)
    head = np.zeros(n + 1, np.int64)
    order = np.empty(n_marks, np.int64)
    if n_marks == 0:
        return head, order
    close = open_ts + tf
    by_close = np.argsort(close, kind="mergesort")
    sorted_close = close[by_close]
    row = np.full(n_marks, -1, np.int64)
    for e in range(n_marks):
        i = np.searchsorted(sorted_close, e_conf[e], side="left")
        stop = np.searchsorted(sorted_close, e_conf[e], side="right")
        for q in range(i, stop):
            r = by_close[q]
            if market[r] == e_market[e] and tf[r] == e_tf[e] and r > row[e]:
                row[e] = r
        if row[e] >= 0:
            head[row[e] + 1] += 1
    for r in range(n):
        head[r + 1] += head[r]
    fill = head[:-1].copy()
    for e in range(n_marks):
        if row[e] >= 0:
            order[fill[row[e]]] = e
            fill[row[e]] += 1
    return head, order


@njit(cache=True)
def _create(ints, floats, used, m, t, confirmed, st, d, level, choch):
    """Block for a break of direction ``d`` at the newest buffered bar; returns (events used, created)."""
    n_lb = len(st.bts)
    size = min(st.count, n_lb)
    base = st.count - size  # window index i is ring position (base + i) % n_lb, oldest first
    swing = st.swing_ts[d]
    # the bars after the broken swing and before the break bar; a swing older than the buffer keeps them all
    pick, best = -1, 0.0
    for i in range(size - 1):
        pos = (base + i) % n_lb
        if swing >= 0 and not st.bts[pos] > swing:
            continue
        v = st.blow[pos] if d == 0 else -st.bhigh[pos]
        if pick < 0 or v <= best:  # ties go to the latest bar
            pick, best = i, v
    if pick < 0:
        if size < 2:
            return used, False
        pick = size - 2
    pos = (base + pick) % n_lb
    kmax = st.state.shape[1]
    for g in range(kmax):
        if st.state[d, g] != EMPTY and st.ts[d, g] == st.bts[pos]:
            return used, False
    # the displacement: volume of the break bar and the one before, and of the bar before those
    late = 0.0  # NaN volumes count as 0, as numpy's nansum has them
    n_vol = len(st.bvol)  # only the last three bars' volumes are kept: bar index j sits at j % 3
    for i in range(max(size - 2, 0), size):
        v = st.bvol[(base + i) % n_vol]
        if not np.isnan(v):
            late += v
    early = 0.0
    if size >= 3:
        v = st.bvol[(base + size - 3) % n_vol]
        early = 0.0 if np.isnan(v) else v
    biggest = early if early > late else late  # max / min as Python has them
    balance = 100.0 * (early if early < late else late) / biggest if biggest > 0 else 100.0
    place = -1
    for g in range(kmax):
        if st.state[d, g] == EMPTY:
            place = g
            break
    if place < 0:  # bounded state: the oldest block of this direction makes room
        place = 0
        for g in range(1, kmax):
            if st.seq[d, g] < st.seq[d, place]:
                place = g
        used = _emit(ints, floats, used, m, t, confirmed, d, STEP_EVICTED,
                     st.bot[d, place] if d == 0 else st.top[d, place], st, place)
    st.state[d, place], st.top[d, place], st.bot[d, place] = LIVE, st.bhigh[pos], st.blow[pos]
    st.ts[d, place] = st.bts[pos]
    st.meta[d, place, 0], st.meta[d, place, 1], st.meta[d, place, 2] = late + early, balance, level
    st.meta[d, place, 3] = 1.0 if choch else 0.0
    st.meta[d, place, 4] = float(st.bts[(base + size - 1) % n_lb])
    st.seq[d, place] = st.next_seq
    st.next_seq += 1
    used = _emit(ints, floats, used, m, t, confirmed, d, STEP_CREATED, (st.bhigh[pos] + st.blow[pos]) / 2, st, place)
    return used, True


@njit(cache=True)
def block_rows(table, tf0, slots, ranks, start, ints, floats, used,
               market, tf, open_ts, open_, high, low, close, volume, gap, values, out, marks, prices, rows, by_wick):
    """Advance each row's key by that row, in row order; write ``values`` then the 4 block columns to ``out``.

    ``marks`` are SwingOperator's swing and break events of the batch, one row each (market index, tf,
    confirmed_ts, kind code, ts), and ``prices`` their prices; ``rows`` holds the operator's state, one record
    per slot. Follows the convention of ``engine.structure.kernel_buffers``; events are sorted by (confirmed_ts,
    market, step, block ts, direction).
    """
    if len(table) and not resolve_slots(table, tf0, market, tf, slots):
        return -1, 0
    n, k = values.shape
    n_lb, kmax = len(rows[0].bts), rows[0].state.shape[1]
    e_kind, e_ts = marks[:, 3], marks[:, 4]
    head, order = _rows_of_marks(market, tf, open_ts, marks[:, 0], marks[:, 1], marks[:, 2])
    for r in range(start, n):
        first, last = head[r], head[r + 1]
        # every block may step three times; each break may evict one block and create one
        if used + 6 * kmax + 2 * (last - first) > ints.shape[1]:
            return r, used
        for j in range(k):
            out[r, j] = values[r, j]
        st = rows[slots[r]]
        if not gap[r]:  # gap bars neither move blocks nor enter the buffer
            h, lo, m, t = high[r], low[r], market[r], tf[r]
            confirmed = open_ts[r] + t
            through = lo if by_wick else _nan_min(open_[r], close[r])
            through_up = h if by_wick else _nan_max(open_[r], close[r])
            changed = False
            for d in range(2):
                for g in range(kmax):
                    state = st.state[d, g]
                    if state == EMPTY:
                        continue
                    b_top, b_bot = st.top[d, g], st.bot[d, g]
                    if state == BREAKER:
                        # a breaker dies when price trades through its other side
                        if (h > b_top) if d == 0 else (lo < b_bot):
                            used = _emit(ints, floats, used, m, t, confirmed, d, STEP_BREAKER_INVALIDATED,
                                         b_top if d == 0 else b_bot, st, g)
                            st.state[d, g] = EMPTY
                            changed = True
                        continue
                    near = (lo <= b_top) if d == 0 else (h >= b_bot)
                    far = (through < b_bot) if d == 0 else (through_up > b_top)
                    if state == LIVE and (near or far):
                        used = _emit(ints, floats, used, m, t, confirmed, d, STEP_TOUCHED,
                                     b_top if d == 0 else b_bot, st, g)
                        st.state[d, g] = TOUCHED
                        changed = True
                    if far:  # live or touched: mitigated, and a breaker from now on
                        edge = b_bot if d == 0 else b_top
                        used = _emit(ints, floats, used, m, t, confirmed, d, STEP_MITIGATED, edge, st, g)
                        used = _emit(ints, floats, used, m, t, confirmed, d, STEP_BREAKER_CREATED, edge, st, g)
                        st.state[d, g] = BREAKER
                        changed = True
            pos = st.count % n_lb
            st.bts[pos], st.bhigh[pos], st.blow[pos] = open_ts[r], h, lo
            st.bvol[st.count % len(st.bvol)] = volume[r]
            st.count += 1
            # this row's swings and breaks, stably in the order SwingOperator found them
            for a in range(first + 1, last):
                e = order[a]
                b = a
                while b > first and _mark_order(e_kind[order[b - 1]]) > _mark_order(e_kind[e]):
                    order[b] = order[b - 1]
                    b -= 1
                order[b] = e
            for a in range(first, last):
                e = order[a]
                kind = e_kind[e]
                if kind == SWING_HIGH or kind == SWING_LOW:
                    st.swing_ts[kind] = e_ts[e]
                    continue
                d = 0 if kind < 4 else 1  # bos_bull / choch_bull, then bos_bear / choch_bear
                used, made = _create(ints, floats, used, m, t, confirmed, st, d, prices[e], kind % 2 == 1)
                changed = changed or made
            if changed:
                _newest_live(st)
        for j in range(4):
            out[r, k + j] = st.cols[j]
    if len(ranks) and used > 1:
        keys = np.empty((5, used), np.int64)
        for e in range(used):
            keys[0, e], keys[1, e], keys[2, e] = ints[2, e], ranks[ints[0, e]], ints[4, e]
            keys[3, e], keys[4, e] = ints[5, e], ints[3, e]
        sort_events(ints, floats, keys)
    return n, used


@njit(cache=True)
def _newest_live(st):
    """``st.cols`` = top and bottom of the newest live (not mitigated) block of each side, NaN if none."""
    for d in range(2):
        best, place = -1, -1
        for g in range(st.state.shape[1]):
            state = st.state[d, g]
            if (state == LIVE or state == TOUCHED) and st.seq[d, g] > best:
                best, place = st.seq[d, g], g
        if place < 0:
            st.cols[2 * d], st.cols[2 * d + 1] = np.nan, np.nan
        else:
            st.cols[2 * d], st.cols[2 * d + 1] = st.top[d, place], st.bot[d, place]
