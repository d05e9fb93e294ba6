"""Frozen copy of the vectorised candle aggregator (engine/candles.py and engine/candle_partials.py as they were
before the compiled kernel), the reference of tests/test_candles_kernel.py. Do not edit."""

from __future__ import annotations

import numpy as np

from engine.operator import pack_state, unpack_state
from schemas.batches import CandleBatch, TradeBatch
from schemas.errors import ConfigError, InputError, StateError
from schemas.timeframes import parse_timeframe


# ---- engine/ordering.py ---------------------------------------------------------------------------
def segment_keys(keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, int, int] | None:
    """``seg * width + (values - low)``: one int64 that orders by (run of ``keys``, value); None if too wide."""
    low, high = int(values.min()), int(values.max())
    width = high - low + 1
    seg = np.concatenate(([0], np.cumsum(keys[1:] != keys[:-1]))).astype(np.int64)
    if width * (int(seg[-1]) + 1) >= 2 ** 62:
        return None
    return seg * width + (values - low), width, low


def segmented_cummax(keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Running max of int64 ``values`` within each run of equal ``keys`` (runs must be contiguous)."""
    if not len(values):
        return values.copy()
    packed = segment_keys(keys, values)
    if packed is not None:  # values offset per run so one global running max stays inside each run
        v, width, low = packed
        return np.maximum.accumulate(v) - (v - (values - low)) + low
    uniq, rank = np.unique(values, return_inverse=True)  # spans too wide to pack: use ranks instead
    seg = np.concatenate(([0], np.cumsum(keys[1:] != keys[:-1]))).astype(np.int64)
    width = len(uniq)
    return uniq[np.maximum.accumulate(seg * width + rank) - seg * width]


# ---- engine/candle_partials.py ------------------------------------------------------------------
FIELDS = ("key", "b", "fts", "o", "lts", "c", "h", "lo", "s")
LIMBS = 4
SUM_NAMES = ("volume", "buy_volume", "sell_volume", "notional")
COUNT = LIMBS * len(SUM_NAMES)  # column of ``s`` holding the trade count
N_SUMS = COUNT + 1
MAX_VALUE = 2.0 ** 62  # the integer limb is int64; larger sizes or notionals cannot be summed exactly
_SHIFT = 31
_RADIX = float(2 ** _SHIFT)
_MASK = (1 << _SHIFT) - 1


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
        raise InputError("candles: trade sizes and price*size must be finite and below 2**62; "
                         "clean the input with engine.validation.clean_trades first")


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


def _carry(s: np.ndarray) -> np.ndarray:
    """Normalise fraction limbs into [0, 2**31) so repeated merges never overflow them."""
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
    s = _carry(np.add.reduceat(sums, st, axis=1).T.copy())
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
                    _carry(np.add.reduceat(p.s, st, axis=0)))


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
    both.s[a] = _carry(both.s[a] + both.s[z])
    keep = np.ones(len(both), bool)
    keep[z] = False
    return both.take(keep)


# ---- engine/candles.py ----------------------------------------------------------------------------
NO_TS = np.iinfo(np.int64).min  # "nothing seen yet" for watermarks and closed-until marks
GAP_POLICIES = ("skip", "flag")


class CandleAggregator:
    """Operator ``candles``: TradeBatch in, the candles that closed during it out (CandleBatch).

    ``stats`` counts accepted ``trades``, ``late`` (dropped) trades, emitted ``candles`` and ``gaps``.
    """

    name = "candles"
    version = "1"

    def __init__(self, timeframes: list[str], lateness: int = 0, gaps: str = "skip") -> None:
        if not timeframes:
            raise ConfigError("candles: give at least one timeframe, e.g. ['1m', '5m']")
        if gaps not in GAP_POLICIES:
            raise ConfigError(f"candles: gaps must be one of {GAP_POLICIES}, got {gaps!r}")
        if int(lateness) != lateness or lateness < 0:
            raise ConfigError(f"candles: lateness is a whole number of ns >= 0, got {lateness!r}")
        self.tfs = sorted({parse_timeframe(t) for t in timeframes})
        self.lateness = int(lateness)
        self.gaps = gaps
        self._ntf = len(self.tfs)
        self._tf = np.array(self.tfs, np.int64)
        base = self.tfs[0]
        # Buckets of every multiple of the finest timeframe nest in it: roll those up from its rows.
        self._nested = [tf % base == 0 for tf in self.tfs]
        # The finest bucket ends first when all nest; otherwise every timeframe decides lateness.
        self._late_tfs = [base] if all(self._nested) else list(self.tfs)
        self.reset()

    # ---- Operator contract -----------------------------------------------------------------
    def reset(self) -> None:
        """Forget every market, as if freshly built."""
        self._names: list[str] = []
        self._ids: dict[str, int] = {}
        self._out_names: list[str] = []
        self._rank = np.empty(0, np.int64)
        self._wm = np.empty(0, np.int64)  # per market
        self._closed_until = np.empty(0, np.int64)  # per key (market, timeframe); gap policy "flag"
        self._open = Partials.empty()  # open buckets of every key, sorted by (key, b)
        self.stats = {"trades": 0, "late": 0, "candles": 0, "gaps": 0}

    @property
    def initialized(self) -> bool:
        """True once any trade was seen."""
        return bool(self._names)

    def update(self, batch: TradeBatch | CandleBatch) -> CandleBatch:
        """Apply a batch of trades; return the candles it closed. Candle batches pass through."""
        if isinstance(batch, CandleBatch):
            return batch  # candle-file input is already closed
        if not isinstance(batch, TradeBatch):
            raise InputError(f"candles: expected TradeBatch or CandleBatch, got {type(batch).__name__}")
        if not len(batch):
            return CandleBatch.empty()
        check_summable(batch.price, batch.size)  # before any state changes
        m, ts, price, size, side = self._accept(batch)
        if not len(ts):
            return CandleBatch.empty()
        sums = trade_sums(price, size, side)
        ntf = self._ntf
        base = from_trades(m, ts, price, sums, self.tfs[0])
        np.maximum.at(self._wm, base.key, base.lts)
        touched = np.unique(base.key)
        base.key *= ntf
        parts = [base]
        for k in range(1, ntf):
            if self._nested[k]:
                parts.append(rollup(base, self.tfs[k], k))
            else:
                part = from_trades(m, ts, price, sums, self.tfs[k])
                part.key = part.key * ntf + k
                parts.append(part)
        state = merge(self._open, Partials.concat(parts))
        closed = state.b + self._tf[state.key % ntf] + self.lateness <= self._wm[state.key // ntf]
        if closed.any():
            done, self._open = state.take(closed), state.take(~closed)
        else:
            done, self._open = Partials.empty(), state
        if self.gaps == "flag":
            keys = (touched[:, None] * ntf + np.arange(ntf)).ravel()
            if len(done):
                keys = np.union1d(keys, done.key)
            tf = self._tf[keys % ntf]
            reach = self._wm[keys // ntf] - self.lateness
            done = self._with_gaps(done, keys, reach - reach % tf)
        return self._emit(done, ts_init=batch.ts_init)

    def flush(self) -> CandleBatch:
        """End of stream: close every open bucket. Later trades into those buckets count as late."""
        state, self._open = self._open, Partials.empty()
        if not len(state):
            return CandleBatch.empty()
        last = np.append(np.flatnonzero(state.key[1:] != state.key[:-1]), len(state) - 1)
        keys = state.key[last]
        frontier = state.b[last] + self._tf[keys % self._ntf]
        if self.gaps == "flag":
            state = self._with_gaps(state, keys, frontier)
        ends = np.full(len(self._names), NO_TS, np.int64)
        np.maximum.at(ends, keys // self._ntf, frontier)
        seen = ends != NO_TS
        self._wm[seen] = np.maximum(self._wm[seen], ends[seen] + self.lateness)
        return self._emit(state)

    def snapshot(self) -> bytes:
        """All per-market state: watermarks, open buckets, closed-until marks and counters."""
        return pack_state(self, {
            "config": (tuple(self.tfs), self.lateness, self.gaps), "names": list(self._names),
            "wm": self._wm.copy(), "closed_until": self._closed_until.copy(),
            "open": self._open.to_dict(), "stats": dict(self.stats)})

    def restore(self, data: bytes) -> None:
        """Replace all state with a snapshot of an aggregator with the same configuration."""
        state = unpack_state(self, data)
        config = (tuple(self.tfs), self.lateness, self.gaps)
        if tuple(state["config"]) != config:
            raise StateError(f"candles: snapshot configured as {state['config']}, this operator as {config}")
        self.reset()
        self._add_markets(state["names"])
        self._wm[:] = state["wm"]
        self._closed_until[:] = state["closed_until"]
        self._open = Partials.from_dict(state["open"])
        # our own key objects: unpickled copies would make the next snapshot's bytes differ
        self.stats = {k: int(state["stats"].get(k, 0)) for k in self.stats}

    # ---- internals ---------------------------------------------------------------------------
    def _add_markets(self, names: list[str]) -> None:
        for name in names:
            if name not in self._ids:
                self._ids[name] = len(self._names)
                self._names.append(name)
        n = len(self._names)
        if n > len(self._wm):
            grow = n - len(self._wm)
            self._wm = np.concatenate((self._wm, np.full(grow, NO_TS, np.int64)))
            self._closed_until = np.concatenate((self._closed_until, np.full(grow * self._ntf, NO_TS, np.int64)))
            self._rank = np.empty(n, np.int64)
            self._rank[sorted(range(n), key=self._names.__getitem__)] = np.arange(n)
            self._out_names = list(self._names)

    def _accept(self, batch: TradeBatch):
        """Market ids, ts, price, size, side of the non-late trades, sorted by (market, ts, arrival)."""
        ids = self._ids
        if any(name not in ids for name in batch.markets):
            self._add_markets(batch.markets)
        lut = np.fromiter((ids[name] for name in batch.markets), np.int32, len(batch.markets))
        n = len(batch)
        if len(batch.markets) > 1:
            local = batch.market.astype(np.int16 if len(batch.markets) < 2 ** 15 else np.int32)
            order = np.argsort(local, kind="stable")  # radix sort: O(n) for int16 keys
            m = lut[batch.market[order]]
            ts = batch.ts[order]
        else:
            order = None
            m = np.full(n, lut[0], np.int32)
            ts = batch.ts
        prev = self._wm[m]
        disorder = (ts[1:] < ts[:-1]) & (m[1:] == m[:-1])
        if disorder.any():
            running = np.maximum(prev, segmented_cummax(m, ts))
            packed = segment_keys(m, ts)
            # stable: equal times keep arrival order; the packed key is nearly sorted, cheap for timsort
            resort = np.lexsort((ts, m)) if packed is None else np.argsort(packed[0], kind="stable")
        else:
            running, resort = prev, None  # a trade never closes its own bucket
        late = self._late(ts, running)
        if late is None and resort is None:
            if order is None:
                price, size, side = batch.price, batch.size, batch.side
            else:
                price, size, side = batch.price[order], batch.size[order], batch.side[order]
        else:
            pos = np.arange(n) if resort is None else resort
            if late is not None:
                self.stats["late"] += len(late)
                keep = np.ones(n, bool)
                keep[late] = False
                pos = pos[keep[pos]]
            idx = pos if order is None else order[pos]
            m, ts = m[pos], ts[pos]
            price, size, side = batch.price[idx], batch.size[idx], batch.side[idx]
        self.stats["trades"] += len(ts)
        return m, ts, price, size, side

    def _late(self, ts: np.ndarray, running: np.ndarray) -> np.ndarray | None:
        """Positions of trades one of whose buckets closed before they arrived, or None."""
        cand = np.flatnonzero(ts < running)
        if not len(cand):
            return None
        t = ts[cand]
        end = np.min([t - t % tf + tf for tf in self._late_tfs], axis=0)
        late = cand[end + self.lateness <= running[cand]]
        return late if len(late) else None

    def _with_gaps(self, done: Partials, keys: np.ndarray, frontier: np.ndarray) -> Partials:
        """Add gap rows for empty buckets between closed ones, up to each key's ``frontier``.

        ``keys`` are sorted and hold every key of ``done``; a key's gaps start after its first
        closed bucket ever, so nothing is emitted before a market's first trade.
        """
        cu = self._closed_until
        old = cu[keys]
        tf_key = self._tf[keys % self._ntf]
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
            return done
        self.stats["gaps"] += total
        rows = np.repeat(np.arange(len(counts)), counts)
        offset = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
        b = starts[rows] + offset * steps[rows]
        nan = np.full(total, np.nan)
        gaps = Partials(np.concatenate((done.key, keys[started]))[rows], b, b, nan, b, nan, nan, nan,
                        np.zeros((total, N_SUMS), np.int64))
        both = Partials.concat([done, gaps])
        return both.take(np.lexsort((both.b, both.key)))

    def _emit(self, p: Partials, ts_init: int = 0) -> CandleBatch:
        if not len(p):
            return CandleBatch.empty()
        mk = p.key // self._ntf
        tf = self._tf[p.key % self._ntf]
        order = np.lexsort((tf, self._rank[mk], p.b + tf))
        p, mk, tf = p.take(order), mk[order], tf[order]
        n = p.count.copy()
        volume = p.total("volume")
        with np.errstate(invalid="ignore", divide="ignore"):
            vwap = np.where(n > 0, p.total("notional") / volume, np.nan)
        self.stats["candles"] += len(p)
        return CandleBatch(self._out_names, mk.astype(np.int32), tf, p.b, p.o, p.h, p.lo, p.c, volume,
                           p.total("buy_volume"), p.total("sell_volume"), vwap, n, n == 0, ts_init=ts_init)
