"""Compiled core of ``engine.candles.CandleAggregator``: a batch's trades applied one by one, in arrival order.

State is per key (``market * n_timeframes + timeframe index``): the key's open buckets, sorted by start, in rows
``key * slots .. key * slots + nopen[key] - 1`` of ``bi`` (start, first and last trade time, rolled flag), ``bf``
(open, close, high, low) and ``bs``: the fixed-point sums of ``engine.candle_partials`` kept by side (buy, sell and
unknown volume, notional, count), so a trade adds to 9 of them; volume is the sum of the three sides.

A trade goes into its bucket of the finest timeframe and of every timeframe that is not a multiple of it. A bucket
of a multiple ("nested" timeframe) is the merge of the buckets of its *source*, the coarsest finer timeframe it is a
multiple of (5m for 15m among 1m, 5m, 15m): each of those is rolled up into it when it closes, which is never after
it, so a trade costs about the same however many timeframes there are. A bucket flagged *rolled* is already counted
in its targets' buckets (``roll_all`` rolls every bucket early; buckets loaded from ``Partials`` come that way): the
trades it gets later go into them directly. Applying trades in arrival order gives the tie rules (open: first
arrival among the earliest trades, close: last arrival among the latest) without a sort.

Buckets close, oldest first, once their market's watermark reaches ``start + tf + lateness``: at the end of the
batch for the markets it touched, or earlier when a key runs out of slots. They go straight into the output rows
(``rows_i``: key, start, count; ``rows_f``: open, high, low, close, volume, buy and sell volume, vwap); flagging
gaps, the empty buckets since the key's closed-until mark come out with them. When the rows or a key's slots run
out, the kernel stops before the trade (or the closing) that needs them and says which; the caller grows them and
calls again from there. What was done before the stop is kept and the retry picks up after it, so it is exact.

Numba counts the references to each array a compiled function takes, atomically, at every call the optimiser does
not inline away: that costs more than a trade's work. So the per-trade and per-bucket paths are written out inside
``apply_trades`` and ``_close``, and the helpers they call per trade or per bucket take scalars or stay tiny.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from engine.candle_partials import COUNT, LIMBS, MAX_VALUE

NO_TS = np.iinfo(np.int64).min  # "nothing seen yet" for watermarks and closed-until marks
NEVER = np.iinfo(np.int64).max
SKIP = NEVER  # in ``where``: a timeframe the trade does not go into directly
B, FTS, LTS, ROLLED = 0, 1, 2, 3  # columns of ``bi``
OPEN, CLOSE, HIGH, LOW = 0, 1, 2, 3  # columns of ``bf``
BUY, SELL, UNKNOWN, NOTIONAL = 0, LIMBS, 2 * LIMBS, 3 * LIMBS  # limbs of ``bs``; the count is column COUNT
N_ROW_FLOATS = 8
DONE, NEED_ROWS, NEED_SLOTS = 0, 1, 2  # statuses
UNSUMMABLE, BAD_MARKET, ZERO_PRICE = 1, 2, 4  # flags of ``scan``
# fields of ``counters``: rows used, accepted and late trades, gap rows, markets touched, resume position, rows
# needed, whether rows were emitted other than market by market in name order (then they need a full sort)
USED, TRADES, LATE, GAPS, N_TOUCHED, POS, NEED, MIXED = range(8)
N_COUNTERS = 8

_SHIFT = 31
_RADIX = float(2 ** _SHIFT)
_MASK = (1 << _SHIFT) - 1
_CARRY_EVERY = (1 << 30) - 1  # carry a bucket whose count is a multiple of 2**30: limbs stay below 2**62


def sources(tfs: list[int]) -> np.ndarray:
    """Per timeframe (ascending), the index of the one its buckets roll up from, or -1 (the finest, and those that
    are not multiples of it: they take trades directly)."""
    src = np.full(len(tfs), -1, np.int64)
    for k in range(1, len(tfs)):
        if tfs[k] % tfs[0] == 0:
            src[k] = max(j for j in range(k) if (j == 0 or src[j] >= 0) and tfs[k] % tfs[j] == 0)
    return src


# ---- scalars ------------------------------------------------------------------------------------
@njit(cache=True)
def scan(market, n_local, price, size) -> int:
    """Flags of a batch: UNSUMMABLE where ``engine.candle_partials.check_summable`` refuses it, BAD_MARKET for a
    market index outside its dictionary, ZERO_PRICE for a price of +-0 (which of +0.0 and -0.0 numpy's max or min
    keeps depends on the array layout, so only the vectorised path reproduces it). No branches: it vectorises."""
    summable, zero, bad = True, False, False
    for i in range(len(size)):
        s, p = size[i], price[i]
        summable &= (abs(s) < MAX_VALUE) & (abs(p * s) < MAX_VALUE)  # NaN fails too
        zero |= p == 0.0
        bad |= (market[i] < 0) | (market[i] >= n_local)
    return (0 if summable else UNSUMMABLE) | (BAD_MARKET if bad else 0) | (ZERO_PRICE if zero else 0)


@njit(cache=True)
def _limbs(x):
    """Integer part and three 31-bit fraction digits of ``x``, as ``candle_partials._limbs`` (every step exact)."""
    whole = np.floor(x)
    f = (x - whole) * _RADIX
    d1 = np.floor(f)
    f = (f - d1) * _RADIX
    d2 = np.floor(f)
    f = (f - d2) * _RADIX
    return np.int64(whole), np.int64(d1), np.int64(d2), np.int64(np.floor(f))


@njit(cache=True)
def _carry4(a0, a1, a2, a3):
    """Fraction limbs into [0, 2**31): the canonical form of ``candle_partials.carry_limbs``."""
    a2 += a3 >> _SHIFT
    a1 += a2 >> _SHIFT
    a0 += a1 >> _SHIFT
    return a0, a1 & _MASK, a2 & _MASK, a3 & _MASK


@njit(cache=True)
def _total(a0, a1, a2, a3) -> float:
    """Canonical limbs as float64, rounding as ``Partials.total`` does."""
    return float(a0) + (float(a1) + (float(a2) + float(a3) / _RADIX) / _RADIX) / _RADIX


@njit(cache=True)
def _is_late(t, w, late_tf, lateness) -> bool:
    """Whether a bucket of ``t`` closed before the market's watermark ``w`` (``t < w``) was reached."""
    late = False
    for tf in late_tf:
        late |= t - t % tf + tf + lateness <= w
    return late


# ---- bucket rows --------------------------------------------------------------------------------
@njit(cache=True)
def _shift(bi, bf, bs, src, dst, n) -> None:
    """Move rows ``src .. src + n - 1`` to ``dst ..`` (the ranges may overlap)."""
    for r in range(n) if dst < src else range(n - 1, -1, -1):
        for c in range(bi.shape[1]):
            bi[dst + r, c] = bi[src + r, c]
        for c in range(bf.shape[1]):
            bf[dst + r, c] = bf[src + r, c]
        for c in range(bs.shape[1]):
            bs[dst + r, c] = bs[src + r, c]


@njit(cache=True)
def _empty(bi, bf, bs, r, b) -> None:
    """An empty bucket at row ``r``: whatever is folded in first sets every field."""
    bi[r, B], bi[r, FTS], bi[r, LTS], bi[r, ROLLED] = b, NEVER, NO_TS, 0
    bf[r, HIGH], bf[r, LOW] = -np.inf, np.inf
    for q in range(bs.shape[1]):
        bs[r, q] = 0


@njit(cache=True)
def _limbs_at(bs, r, q):
    return bs[r, q], bs[r, q + 1], bs[r, q + 2], bs[r, q + 3]


@njit(cache=True)
def _carry_row(bs, r) -> None:
    for q in range(0, COUNT, LIMBS):
        bs[r, q], bs[r, q + 1], bs[r, q + 2], bs[r, q + 3] = _carry4(*_limbs_at(bs, r, q))


@njit(cache=True)
def _roll_up(m, reach, tf, source, slots, nopen, bi, bf, bs, where) -> bool:
    """Fold the market's buckets that end at ``reach`` or before and have targets, not rolled yet, into their
    targets' buckets (as ``candle_partials.merge`` combines a later arrival), and on into the targets of those that
    are rolled themselves; finest timeframe first. Flags them rolled; False when a target key needs a slot it lacks
    (what was rolled stays rolled). ``where`` is scratch."""
    ntf = len(tf)
    for j in range(ntf - 1):
        first = (m * ntf + j) * slots
        for r in range(first, first + nopen[m * ntf + j]):
            if bi[r, B] + tf[j] > reach:
                break
            if bi[r, ROLLED]:
                continue
            b = bi[r, B]
            where[j] = r
            for k in range(j + 1, ntf):  # the buckets it goes into (searched by hand, see the module notes)
                s = source[k]
                if s < j or not (s == j or 0 <= where[s] < SKIP and bi[where[s], ROLLED]):
                    where[k] = SKIP
                    continue
                key = m * ntf + k
                lo, bk = key * slots, b - b % tf[k]
                d = lo + nopen[key] - 1
                while d >= lo and bi[d, B] > bk:
                    d -= 1
                where[k] = d if d >= lo and bi[d, B] == bk else -2 - d
                if where[k] < 0 and nopen[key] == slots:
                    return False
            for k in range(j + 1, ntf):
                d = where[k]
                if d == SKIP:
                    continue
                if d < 0:
                    d = -1 - d
                    key = m * ntf + k
                    _shift(bi, bf, bs, d, d + 1, key * slots + nopen[key] - d)
                    nopen[key] += 1
                    _empty(bi, bf, bs, d, b - b % tf[k])
                if bi[r, FTS] < bi[d, FTS]:
                    bi[d, FTS], bf[d, OPEN] = bi[r, FTS], bf[r, OPEN]
                if bi[r, LTS] >= bi[d, LTS]:
                    bi[d, LTS], bf[d, CLOSE] = bi[r, LTS], bf[r, CLOSE]
                bf[d, HIGH] = max(bf[d, HIGH], bf[r, HIGH])
                bf[d, LOW] = min(bf[d, LOW], bf[r, LOW])
                for q in range(bs.shape[1]):
                    bs[d, q] += bs[r, q]
                _carry_row(bs, d)
            bi[r, ROLLED] = 1
    return True


# ---- closing ------------------------------------------------------------------------------------
@njit(cache=True)
def _gap_rows(rows_i, rows_f, counters, key, start, tf, n) -> bool:
    """``n`` gap rows from ``start``: no prices, zero volumes; False, with none written, if they don't fit."""
    u = counters[USED]
    if u + n > len(rows_i):
        counters[NEED] = u + n
        return False
    for g in range(u, u + n):
        rows_i[g, 0], rows_i[g, 1], rows_i[g, 2] = key, start + (g - u) * tf, 0
        for f in range(N_ROW_FLOATS):
            rows_f[g, f] = 0.0 if 4 <= f < 7 else np.nan  # the volumes are sums of nothing
    counters[USED] = u + n
    counters[GAPS] += n
    return True


@njit(cache=True, error_model="numpy")
def _close(markets, everything, trailing, tf, source, lateness, flag_gaps, wm, nopen, cu, bi, bf, bs, rows_i,
           rows_f, counters) -> int:
    """Close the buckets of ``markets`` that end at their watermark minus ``lateness`` or before (``everything``:
    all), oldest first, rolled up before they go; ``trailing``: then the gap rows up to the watermark. DONE, or the
    buffer that ran out: what closed so far stays closed and a retry goes on."""
    ntf = len(tf)
    slots = bi.shape[0] // len(nopen)
    where = np.empty(ntf, np.int64)
    for m in markets:
        reach = NEVER if everything else wm[m] - lateness
        rolls = False  # any bucket due that has targets
        for j in range(ntf - 1):
            rolls |= nopen[m * ntf + j] > 0 and bi[(m * ntf + j) * slots, B] + tf[j] <= reach
        if rolls and not _roll_up(m, reach, tf, source, slots, nopen, bi, bf, bs, where):
            return NEED_SLOTS
        for k in range(ntf):
            key = m * ntf + k
            first = key * slots
            due = 0
            while due < nopen[key] and bi[first + due, B] + tf[k] <= reach:
                r = first + due
                if flag_gaps and cu[key] != NO_TS:  # the empty buckets since the closed-until mark
                    if not _gap_rows(rows_i, rows_f, counters, key, cu[key], tf[k],
                                     max((bi[r, B] - cu[key]) // tf[k], 0)):
                        break
                    cu[key] = bi[r, B]
                u = counters[USED]
                if u == len(rows_i):
                    counters[NEED] = u + 1
                    break
                if flag_gaps:
                    cu[key] = bi[r, B] + tf[k]
                # its candle, from canonical limbs; volume is the sum of the three sides
                _carry_row(bs, r)
                b0, b1, b2, b3 = _limbs_at(bs, r, BUY)
                s0, s1, s2, s3 = _limbs_at(bs, r, SELL)
                u0, u1, u2, u3 = _limbs_at(bs, r, UNKNOWN)
                volume = _total(*_carry4(b0 + s0 + u0, b1 + s1 + u1, b2 + s2 + u2, b3 + s3 + u3))
                rows_i[u, 0], rows_i[u, 1], rows_i[u, 2] = key, bi[r, B], bs[r, COUNT]
                rows_f[u, 0], rows_f[u, 1], rows_f[u, 2], rows_f[u, 3] = bf[r, OPEN], bf[r, HIGH], bf[r, LOW], bf[r, CLOSE]
                rows_f[u, 4], rows_f[u, 5], rows_f[u, 6] = volume, _total(b0, b1, b2, b3), _total(s0, s1, s2, s3)
                rows_f[u, 7] = _total(*_limbs_at(bs, r, NOTIONAL)) / volume  # a bucket holds a trade: no 0 / 0
                counters[USED] = u + 1
                due += 1
            if due:  # the open ones move down
                _shift(bi, bf, bs, first + due, first, nopen[key] - due)
                nopen[key] -= due
            if nopen[key] and bi[first, B] + tf[k] <= reach:
                return NEED_ROWS
            if trailing and flag_gaps and cu[key] != NO_TS:  # gap rows up to what the watermark closed
                frontier = reach - reach % tf[k]
                if not _gap_rows(rows_i, rows_f, counters, key, cu[key], tf[k],
                                 max((frontier - cu[key]) // tf[k], 0)):
                    return NEED_ROWS
                cu[key] = max(cu[key], frontier)
    return DONE


# ---- entry points -------------------------------------------------------------------------------
@njit(cache=True)
def apply_trades(lut, market, ts, price, size, side, start, tf, source, only_finest, late_tf, lateness, flag_gaps,
                 close_when_full, rank, wm, touched, nopen, cu, bi, bf, bs, rows_i, rows_f, counters) -> int:
    """Apply trades ``start ..`` of a batch that ``scan`` passed (market id ``lut[market[i]]``), then close what
    their watermarks reached; DONE, or NEED_ROWS or NEED_SLOTS with the trade to resume at in ``counters[POS]``
    (``len(ts)``: the closing). ``only_finest``: every timeframe rolls up (from the finest, at the bottom). A key
    without a free slot asks for more, or with ``close_when_full`` first closes its market's due buckets.
    ``touched`` (2 x market capacity: a flag per market, then a list) collects the markets with accepted trades,
    closed at the end in the order of ``rank`` (of their names)."""
    n = len(ts)
    ntf = len(tf)
    slots = bi.shape[0] // len(nopen)  # open buckets a key can hold
    where = np.empty(ntf, np.int64)
    for i in range(start, n):
        m = lut[market[i]]
        t = ts[i]
        w = wm[m]
        if t >= w:  # never late: a trade cannot close its own bucket
            wm[m] = t
        elif _is_late(t, w, late_tf, lateness):
            counters[LATE] += 1
            continue
        if not touched[0, m]:
            touched[0, m] = 1
            touched[1, counters[N_TOUCHED]] = m
            counters[N_TOUCHED] += 1
        # The trade's bucket in each timeframe it goes into directly: ``where[k]`` is its row, or -1 - the row a
        # new one goes to, or SKIP. Usually that is only the finest timeframe, into the key's newest bucket.
        key0 = m * ntf
        r = key0 * slots + nopen[key0] - 1
        targets = 1
        where[0] = r
        if not (only_finest and nopen[key0] and bi[r, B] <= t and t - bi[r, B] < tf[0] and not bi[r, ROLLED]):
            targets = ntf
            for attempt in range(2):
                room = True
                for k in range(ntf):
                    s = source[k]  # a rolled source bucket passes the trade on
                    if s >= 0 and not (0 <= where[s] < SKIP and bi[where[s], ROLLED]):
                        where[k] = SKIP
                        continue
                    first, held = (key0 + k) * slots, nopen[key0 + k]
                    b = t - t % tf[k]
                    r = first + held - 1  # searched by hand (see the module notes)
                    while r >= first and bi[r, B] > b:
                        r -= 1
                    found = r >= first and bi[r, B] == b
                    where[k] = r if found else -2 - r  # -1 - the row after r
                    room &= found or held < slots
                if room or attempt or not close_when_full:
                    break
                counters[MIXED] = 1
                status = _close(np.full(1, m), False, False, tf, source, lateness, flag_gaps, wm, nopen, cu, bi, bf,
                                bs, rows_i, rows_f, counters)  # frees the slots of what is due
                if status != DONE:
                    counters[POS] = i
                    return status
            if not room:
                counters[POS] = i
                return NEED_SLOTS
        p = price[i]
        v0, v1, v2, v3 = _limbs(size[i])
        n0, n1, n2, n3 = _limbs(p * size[i])
        g = BUY if side[i] == 1 else SELL if side[i] == -1 else UNKNOWN
        for k in range(targets):
            r = where[k]
            if r == SKIP:
                continue
            if r < 0:  # a new bucket: after the newest, or between two (a trade out of order)
                r = -1 - r
                end = (key0 + k) * slots + nopen[key0 + k]
                if r < end:
                    _shift(bi, bf, bs, r, r + 1, end - r)
                nopen[key0 + k] += 1
                _empty(bi, bf, bs, r, t - t % tf[k])
            if t < bi[r, FTS]:  # equal times: the open keeps the first arrival, the close the last
                bi[r, FTS] = t
                bf[r, OPEN] = p
            if t >= bi[r, LTS]:
                bi[r, LTS] = t
                bf[r, CLOSE] = p
            bf[r, HIGH] = max(bf[r, HIGH], p)
            bf[r, LOW] = min(bf[r, LOW], p)
            bs[r, g] += v0
            bs[r, g + 1] += v1
            bs[r, g + 2] += v2
            bs[r, g + 3] += v3
            bs[r, NOTIONAL] += n0
            bs[r, NOTIONAL + 1] += n1
            bs[r, NOTIONAL + 2] += n2
            bs[r, NOTIONAL + 3] += n3
            bs[r, COUNT] += 1
            if (bs[r, COUNT] & _CARRY_EVERY) == 0:
                _carry_row(bs, r)
        counters[TRADES] += 1
    markets = touched[1, :counters[N_TOUCHED]]
    status = _close(markets[np.argsort(rank[markets])], False, True, tf, source, lateness, flag_gaps, wm, nopen, cu,
                    bi, bf, bs, rows_i, rows_f, counters)
    if status != DONE:
        counters[POS] = n
        return status
    for j in range(counters[N_TOUCHED]):
        touched[0, touched[1, j]] = 0
    counters[N_TOUCHED] = 0
    return DONE


@njit(cache=True)
def roll_all(n_markets, tf, source, nopen, bi, bf, bs) -> int:
    """Roll every bucket that has targets into them (this changes no candle); then each key's open buckets hold all
    their trades, as ``Partials`` rows do. DONE or NEED_SLOTS (call again)."""
    slots = bi.shape[0] // max(len(nopen), 1)
    where = np.empty(len(tf), np.int64)
    for m in range(n_markets):
        if not _roll_up(m, NEVER, tf, source, slots, nopen, bi, bf, bs, where):
            return NEED_SLOTS
    return DONE


@njit(cache=True)
def flush_all(n_markets, tf, source, lateness, flag_gaps, rank, wm, nopen, cu, bi, bf, bs, rows_i, rows_f,
              counters) -> int:
    """End of stream: close every open bucket and move each watermark past its last one. Call after ``roll_all``;
    DONE or NEED_ROWS (call again: watermarks only rise and closed buckets are gone)."""
    ntf = len(tf)
    slots = bi.shape[0] // max(len(nopen), 1)
    for m in range(n_markets):
        end = NO_TS
        for k in range(ntf):
            key = m * ntf + k
            if nopen[key]:
                end = max(end, bi[key * slots + nopen[key] - 1, B] + tf[k])
        if end != NO_TS:
            wm[m] = max(wm[m], end + lateness)
    return _close(np.argsort(rank[:n_markets]), True, False, tf, source, lateness, flag_gaps, wm, nopen, cu, bi, bf,
                  bs, rows_i, rows_f, counters)


@njit(cache=True)
def sorted_rows(rows_i, rows_f, used, tf, rank, tf_gcd, grouped):
    """The output rows ordered by (close time, market rank, timeframe), as columns: ints (market, timeframe, open
    time, count) and floats (open, high, low, close, volume, buy and sell volume, vwap). ``grouped``: the rows are
    by (market rank, timeframe, start) already, so a stable sort by close time is enough."""
    ntf = len(tf)
    key, b = rows_i[:used, 0], rows_i[:used, 1]
    close = b + tf[key % ntf]
    order = _by_close(close, tf_gcd) if grouped else _order(close, rank[key // ntf] * ntf + key % ntf,
                                                            len(rank) * ntf, tf_gcd)
    ints = np.empty((4, used), np.int64)
    floats = np.empty((N_ROW_FLOATS, used))
    for r in range(used):
        src = order[r]
        ints[0, r], ints[1, r], ints[2, r], ints[3, r] = key[src] // ntf, tf[key[src] % ntf], b[src], rows_i[src, 2]
        for f in range(N_ROW_FLOATS):
            floats[f, r] = rows_f[src, f]
    return ints, floats


@njit(cache=True)
def _by_close(close, tf_gcd):
    """Stable order by close time: a counting sort when the closes span few multiples of the timeframes' gcd."""
    if not len(close):
        return np.empty(0, np.int64)
    slot = (close - close.min()) // tf_gcd  # closes are multiples of the gcd
    span = slot.max() + 1
    if span > 4 * len(close) + 64:
        return np.argsort(slot, kind="mergesort")
    start = np.zeros(span + 1, np.int64)
    for s in slot:
        start[s + 1] += 1
    for s in range(span):
        start[s + 1] += start[s]
    order = np.empty(len(close), np.int64)
    for r in range(len(close)):
        order[start[slot[r]]] = r
        start[slot[r]] += 1
    return order


@njit(cache=True)
def _order(close, minor, n_minor, tf_gcd):
    """Order by (close, minor) with ``0 <= minor < n_minor``: one sort of a packed key when it fits in int64."""
    if not len(close):
        return np.empty(0, np.int64)
    low = close.min()
    span = (close.max() - low) // tf_gcd + 1  # closes are multiples of the timeframes' gcd
    if span < (1 << 62) // n_minor:
        return np.argsort((close - low) // tf_gcd * n_minor + minor)  # keys are unique: any sort is exact
    first = np.argsort(minor, kind="mergesort")
    return first[np.argsort(close[first], kind="mergesort")]
