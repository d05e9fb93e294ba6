"""Partial candles as columns: built from sorted trades, rolled up to coarser buckets, merged.

A ``Partials`` row is the running aggregate of one (market, bucket). Rows built from trades sorted
by (market, ts, arrival) keep the invariants the merge relies on: ``open`` belongs to the earliest
trade (ties: first arrival) and ``close`` to the latest (ties: last arrival).

Volumes and notional are summed as fixed-point integers (an integer part and three 31-bit
fraction limbs, a grid of 2**-93) because float addition is not associative: integer sums make a
candle bit-identical however its trades were split into batches.

``vectorised_step`` applies a whole batch this way (sorts, ``reduceat``, merges). ``engine.candles`` runs it only for
the batches its compiled kernel leaves alone, and keeps its open buckets in this form for snapshots.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from engine.ordering import segment_keys, segmented_cummax
from schemas.errors import InputError

FIELDS = ("key", "b", "fts", "o", "lts", "c", "h", "lo", "s")
LIMBS = 4
SUM_NAMES = ("volume", "buy_volume", "sell_volume", "notional")
COUNT = LIMBS * len(SUM_NAMES)  # column of ``s`` holding the trade count
N_SUMS = COUNT + 1
MAX_VALUE = 2.0 ** 62  # the integer limb is int64; larger sizes or notionals cannot be summed exactly
_SHIFT = 31
_RADIX = float(2 ** _SHIFT)
_MASK = (1 << _SHIFT) - 1
NO_TS = np.iinfo(np.int64).min  # "nothing seen yet" for watermarks and closed-until marks
SUMMABLE_HINT = ("candles: trade sizes and price*size must be finite and below 2**62; "
                 "clean the input with engine.validation.clean_trades first")


class Partials:
    """Struct of arrays, one row per (``key``, bucket start ``b``); ``s`` holds the sums.

    ``key`` names a (market, timeframe) pair as ``market_id * n_timeframes + timeframe_index``.
    """

    __slots__ = FIELDS

    def __init__(self, key, b, fts, o, lts, c, h, lo, s) -> None:
        self.key, self.b, self.fts, self.o, self.lts, self.c, self.h, self.lo = key, b, fts, o, lts, c, h, lo
        self.s = s  # int64, shape (rows, N_SUMS)

    def __len__(self) -> int:
        return len(self.b)

    @classmethod
    def empty(cls) -> "Partials":
        i, f = np.empty(0, np.int64), np.empty(0, np.float64)
        return cls(i, i, i, f, i, f, f, f, np.empty((0, N_SUMS), np.int64))

    def take(self, idx) -> "Partials":
        return Partials(*(getattr(self, k)[idx] for k in FIELDS))

    def to_dict(self) -> dict[str, np.ndarray]:
        return {k: _canonical(getattr(self, k)) for k in FIELDS}

    @classmethod
    def from_dict(cls, d: dict[str, np.ndarray]) -> "Partials":
        return cls(*(_canonical(d[k]) for k in FIELDS))

    @classmethod
    def concat(cls, parts: list["Partials"]) -> "Partials":
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        if len(parts) == 1:
            return parts[0]
        return cls(*(np.concatenate([getattr(p, k) for p in parts]) for k in FIELDS))

    @property
    def count(self) -> np.ndarray:
        return self.s[:, COUNT]

    def total(self, name: str) -> np.ndarray:
        """One of ``SUM_NAMES`` as float64."""
        q = LIMBS * SUM_NAMES.index(name)
        s = self.s
        frac = (s[:, q + 1] + (s[:, q + 2] + s[:, q + 3] / _RADIX) / _RADIX) / _RADIX
        return s[:, q].astype(np.float64) + frac


def _canonical(a: np.ndarray) -> np.ndarray:
    """A C-ordered copy with numpy's shared dtype instance (unpickled arrays carry private ones), so a
    snapshot of a restored operator is byte-identical to the snapshot it was restored from."""
    out = np.empty(a.shape, np.dtype(a.dtype.str))  # np.array(a, dtype=...) would keep a's instance
    out[...] = a
    return out


def check_summable(price: np.ndarray, size: np.ndarray) -> None:
    """Raise InputError unless sizes and notionals are finite and fit the fixed-point sums."""
    # NaN fails both comparisons, so non-finite input is refused here too
    if len(size) and not (np.abs(size).max() < MAX_VALUE and np.abs(price * size).max() < MAX_VALUE):
        raise InputError(SUMMABLE_HINT)


def trade_sums(price: np.ndarray, size: np.ndarray, side: np.ndarray) -> np.ndarray:
    """Fixed-point limbs of volume, buy/sell volume and notional per trade, shape (N_SUMS, n)."""
    out = np.empty((N_SUMS, len(size)), np.int64)
    _limbs(size, out[0:LIMBS])
    _limbs(price * size, out[3 * LIMBS:4 * LIMBS])
    np.multiply(out[0:LIMBS], side == 1, out=out[LIMBS:2 * LIMBS])
    np.multiply(out[0:LIMBS], side == -1, out=out[2 * LIMBS:3 * LIMBS])
    out[COUNT] = 1
    return out


def _limbs(x: np.ndarray, out: np.ndarray) -> None:
    """Split floats into an integer part and three 31-bit fraction digits (exact to 2**-93)."""
    whole = np.floor(x)
    out[0] = whole
    f = x - whole
    for k in (1, 2, 3):
        f *= _RADIX
        digit = np.floor(f)
        out[k] = digit
        f -= digit


def carry_limbs(s: np.ndarray) -> np.ndarray:
    """Normalise fraction limbs into [0, 2**31) in place (the canonical form: one per value), so repeated merges
    never overflow them."""
    q = s[:, :COUNT].reshape(len(s), len(SUM_NAMES), LIMBS)  # a view: updates land in ``s``
    for k in (3, 2, 1):
        q[:, :, k - 1] += q[:, :, k] >> _SHIFT
        q[:, :, k] &= _MASK
    return s


def _starts(key: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row index where each run of equal (key, b) begins."""
    change = (b[1:] != b[:-1]) | (key[1:] != key[:-1])
    return np.concatenate(([0], np.flatnonzero(change) + 1))


def from_trades(key, ts, price, sums, tf: int) -> Partials:
    """Aggregate trades sorted by (key, ts, arrival) into one row per (key, bucket of ``tf``)."""
    b = ts - ts % tf
    st = _starts(key, b)
    last = np.append(st[1:], len(ts)) - 1
    s = carry_limbs(np.add.reduceat(sums, st, axis=1).T.copy())
    return Partials(key[st].astype(np.int64), b[st], ts[st], price[st], ts[last], price[last],
                    np.maximum.reduceat(price, st), np.minimum.reduceat(price, st), s)


def rollup(p: Partials, tf: int, key_offset: int) -> Partials:
    """Rows sorted by (key, b) with buckets nested in ``tf``: one row per (key, coarser bucket)."""
    if not len(p):
        return p
    b = p.b - p.b % tf
    st = _starts(p.key, b)
    if len(st) == len(p):
        return Partials(p.key + key_offset, b, p.fts, p.o, p.lts, p.c, p.h, p.lo, p.s)
    last = np.append(st[1:], len(p)) - 1
    return Partials(p.key[st] + key_offset, b[st], p.fts[st], p.o[st], p.lts[last], p.c[last],
                    np.maximum.reduceat(p.h, st), np.minimum.reduceat(p.lo, st),
                    carry_limbs(np.add.reduceat(p.s, st, axis=0)))


def merge(old: Partials, new: Partials) -> Partials:
    """Combine open rows with rows from later arrivals (each unique per (key, b)); sorted by (key, b)."""
    if not len(old):
        return new.take(np.lexsort((new.b, new.key)))
    if not len(new):
        return old
    both = Partials.concat([old, new])
    src = np.concatenate((np.zeros(len(old), np.int8), np.ones(len(new), np.int8)))
    both = both.take(np.lexsort((src, both.b, both.key)))
    a = np.flatnonzero((both.key[1:] == both.key[:-1]) & (both.b[1:] == both.b[:-1]))
    if not len(a):
        return both
    z = a + 1  # the later arrival of each pair (ties sort old first)
    take_open = both.fts[z] < both.fts[a]
    take_close = both.lts[z] >= both.lts[a]
    both.fts[a] = np.where(take_open, both.fts[z], both.fts[a])
    both.o[a] = np.where(take_open, both.o[z], both.o[a])
    both.lts[a] = np.where(take_close, both.lts[z], both.lts[a])
    both.c[a] = np.where(take_close, both.c[z], both.c[a])
    both.h[a] = np.maximum(both.h[a], both.h[z])
    both.lo[a] = np.minimum(both.lo[a], both.lo[z])
    both.s[a] = carry_limbs(both.s[a] + both.s[z])
    keep = np.ones(len(both), bool)
    keep[z] = False
    return both.take(keep)


# ---- a whole batch, vectorised ---------------------------------------------------------------------
class Timeframes(NamedTuple):
    """Bucket lengths in ns (ascending) and what the vectorised step derives from them."""

    tfs: list[int]
    tf: np.ndarray  # the same, int64
    nested: list[bool]  # a multiple of the finest: rolled up from its rows
    late_tfs: list[int]  # the timeframes whose buckets decide lateness
    lateness: int
    flag_gaps: bool

    @classmethod
    def of(cls, tfs: list[int], lateness: int, flag_gaps: bool) -> "Timeframes":
        base = tfs[0]
        nested = [tf % base == 0 for tf in tfs]
        # The finest bucket ends first when all nest; otherwise every timeframe decides lateness.
        late_tfs = [base] if all(nested) else list(tfs)
        return cls(list(tfs), np.array(tfs, np.int64), nested, late_tfs, lateness, flag_gaps)


def accepted_order(m: np.ndarray, ts: np.ndarray, wm: np.ndarray, t: Timeframes) -> tuple[np.ndarray | None, int]:
    """Positions of the non-late trades sorted by (market, ts, arrival) (None: all, as they are) and the late count.

    ``m`` and ``ts`` are grouped by market, in arrival order within each.
    """
    n = len(ts)
    prev = wm[m]
    disorder = (ts[1:] < ts[:-1]) & (m[1:] == m[:-1])
    if disorder.any():
        running = np.maximum(prev, segmented_cummax(m, ts))
        packed = segment_keys(m, ts)
        # stable: equal times keep arrival order; the packed key is nearly sorted, cheap for timsort
        resort = np.lexsort((ts, m)) if packed is None else np.argsort(packed[0], kind="stable")
    else:
        running, resort = prev, None  # a trade never closes its own bucket
    late = late_positions(ts, running, t)
    if late is None and resort is None:
        return None, 0
    pos = np.arange(n) if resort is None else resort
    if late is None:
        return pos, 0
    keep = np.ones(n, bool)
    keep[late] = False
    return pos[keep[pos]], len(late)


def late_positions(ts: np.ndarray, running: np.ndarray, t: Timeframes) -> np.ndarray | None:
    """Positions of trades one of whose buckets closed before they arrived, or None."""
    cand = np.flatnonzero(ts < running)
    if not len(cand):
        return None
    tc = ts[cand]
    end = np.min([tc - tc % tf + tf for tf in t.late_tfs], axis=0)
    late = cand[end + t.lateness <= running[cand]]
    return late if len(late) else None


def vectorised_step(open_: Partials, m, ts, price, size, side, wm: np.ndarray, closed_until: np.ndarray,
                    t: Timeframes) -> tuple[Partials, Partials, int]:
    """Apply accepted trades sorted by (market, ts, arrival) to the open rows; raises ``wm`` and, flagging gaps,
    ``closed_until`` in place. Returns the open rows, the closed ones (gap rows included) and the gap count."""
    sums = trade_sums(price, size, side)
    ntf = len(t.tfs)
    base = from_trades(m, ts, price, sums, t.tfs[0])
    np.maximum.at(wm, base.key, base.lts)
    touched = np.unique(base.key)
    base.key *= ntf
    parts = [base]
    for k in range(1, ntf):
        if t.nested[k]:
            parts.append(rollup(base, t.tfs[k], k))
        else:
            part = from_trades(m, ts, price, sums, t.tfs[k])
            part.key = part.key * ntf + k
            parts.append(part)
    state = merge(open_, Partials.concat(parts))
    closed = state.b + t.tf[state.key % ntf] + t.lateness <= wm[state.key // ntf]
    if closed.any():
        done, open_ = state.take(closed), state.take(~closed)
    else:
        done, open_ = Partials.empty(), state
    if not t.flag_gaps:
        return open_, done, 0
    keys = (touched[:, None] * ntf + np.arange(ntf)).ravel()
    if len(done):
        keys = np.union1d(keys, done.key)
    tf = t.tf[keys % ntf]
    reach = wm[keys // ntf] - t.lateness
    done, n_gaps = with_gaps(done, keys, reach - reach % tf, closed_until, t)
    return open_, done, n_gaps


def with_gaps(done: Partials, keys: np.ndarray, frontier: np.ndarray, closed_until: np.ndarray,
              t: Timeframes) -> tuple[Partials, int]:
    """Add gap rows for empty buckets between closed ones, up to each key's ``frontier``; and how many.

    ``keys`` are sorted and hold every key of ``done``; a key's gaps start after its first closed bucket ever, so
    nothing is emitted before a market's first trade. Moves ``closed_until`` of those keys to their frontier.
    """
    cu = closed_until
    ntf = len(t.tfs)
    old = cu[keys]
    tf_key = t.tf[keys % ntf]
    pos = np.searchsorted(keys, done.key)
    first = np.full(len(keys), NO_TS, np.int64)
    prev_end = np.empty(len(done), np.int64)
    last_end = np.full(len(keys), NO_TS, np.int64)
    if len(done):
        new_key = np.ones(len(done), bool)
        new_key[1:] = done.key[1:] != done.key[:-1]
        firsts = np.flatnonzero(new_key)
        first[pos[firsts]] = done.b[firsts]
    begin = np.where(old != NO_TS, old, first)
    started = begin != NO_TS
    last_end[:] = begin
    if len(done):
        tf_row = tf_key[pos]
        prev_end[1:] = done.b[:-1] + tf_row[:-1]
        prev_end[firsts] = begin[pos[firsts]]
        lasts = np.append(firsts[1:], len(done)) - 1
        last_end[pos[lasts]] = done.b[lasts] + tf_row[lasts]
    # Empty buckets lie in [start, stop): before each closed row, then up to the frontier.
    starts = np.concatenate((prev_end, last_end[started]))
    stops = np.concatenate((done.b, frontier[started]))
    steps = np.concatenate((tf_key[pos], tf_key[started]))
    counts = np.maximum((stops - starts) // steps, 0)
    cu[keys[started]] = np.maximum(old[started], frontier[started])
    total = int(counts.sum())
    if not total:
        return done, 0
    rows = np.repeat(np.arange(len(counts)), counts)
    offset = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    b = starts[rows] + offset * steps[rows]
    nan = np.full(total, np.nan)
    gaps = Partials(np.concatenate((done.key, keys[started]))[rows], b, b, nan, b, nan, nan, nan,
                    np.zeros((total, N_SUMS), np.int64))
    both = Partials.concat([done, gaps])
    return both.take(np.lexsort((both.b, both.key))), total
