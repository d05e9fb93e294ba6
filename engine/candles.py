"""Trade batches to closed OHLCV candles of several timeframes, by event time, in one compiled pass per batch.

Buckets ``[b, b + tf)`` align to the Unix epoch (so ``1w`` weeks start on Thursdays). A market's watermark is the
largest trade time it has seen; its bucket closes once the watermark reaches ``b + tf + lateness``. A trade arriving
after any of its buckets closed is late: it is counted and dropped from every timeframe, so coarser candles always
equal the sum of the finer ones. Per market the candle stream is identical whatever the batch sizes; each returned
batch is sorted by (close_ts, market name, timeframe).

``engine.candle_kernel`` applies each batch's trades in arrival order to per-key open buckets and writes the candles
they close straight into output rows. A batch holding a zero price goes through the vectorised step of
``engine.candle_partials`` instead: which of +0.0 and -0.0 numpy's max or min keeps depends on array layout, so only
that path gives the same high and low bits. Open buckets convert losslessly between the two forms (snapshots hold
them as ``Partials``, as they always did).
"""

from __future__ import annotations

import math

import numpy as np

from engine.candle_kernel import (
    BAD_MARKET,
    BUY,
    CLOSE,
    DONE,
    FTS,
    GAPS,
    HIGH,
    LATE,
    LOW,
    LTS,
    MIXED,
    N_COUNTERS,
    N_ROW_FLOATS,
    NEED,
    NEED_ROWS,
    NEED_SLOTS,
    NOTIONAL,
    OPEN,
    POS,
    SELL,
    TRADES,
    UNKNOWN,
    UNSUMMABLE,
    USED,
    ZERO_PRICE,
    B,
    apply_trades,
    flush_all,
    roll_all,
    scan,
    sorted_rows,
    sources,
)
from engine.candle_partials import (
    COUNT,
    LIMBS,
    N_SUMS,
    NO_TS,
    SUM_NAMES,
    SUMMABLE_HINT,
    Partials,
    Timeframes,
    accepted_order,
    carry_limbs,
    vectorised_step,
)
from engine.operator import pack_state, unpack_state
from schemas.batches import CandleBatch, TradeBatch
from schemas.errors import ConfigError, InputError, StateError
from schemas.timeframes import parse_timeframe

GAP_POLICIES = ("skip", "flag")
_ROW_BUDGET = 1 << 18  # open-bucket rows (200 bytes each) worth growing to rather than closing mid-batch


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
        self._t = Timeframes.of(self.tfs, self.lateness, gaps == "flag")
        self._tf = self._t.tf
        self._source = sources(self.tfs)
        self._late_tf = np.array(self._t.late_tfs, np.int64)
        self._tf_gcd = math.gcd(*self.tfs)
        # A key holds at most 1 + ceil(lateness / tf) open buckets; start small, grow when disorder needs more.
        self._slots = min(1 + -(-self.lateness // self.tfs[0]), 4)
        self.reset()

    # ---- Operator contract -----------------------------------------------------------------
    def reset(self) -> None:
        """Forget every market, as if freshly built."""
        self._names: list[str] = []
        self._ids: dict[str, int] = {}
        self._out_names: list[str] = []
        self._rank = np.empty(0, np.int64)
        self._lut_of: tuple[list[str], np.ndarray, bool] = ([], np.empty(0, np.int64), True)
        self._buckets = _Buckets(self._t, self._slots)
        self._rows_i = np.empty((1024, 3), np.int64)  # closed rows: key, bucket start, trade count
        self._rows_f = np.empty((1024, N_ROW_FLOATS))
        self._counters = np.zeros(N_COUNTERS, np.int64)
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
        flags = scan(batch.market, len(batch.markets), batch.price, batch.size)
        if flags & UNSUMMABLE:
            raise InputError(SUMMABLE_HINT)  # before any state changes
        lut, unique = self._lut(batch.markets)
        if flags & ZERO_PRICE:
            return self._vectorised_update(batch)
        cols = (batch.market, batch.ts, batch.price, batch.size, batch.side)
        if flags & BAD_MARKET or not unique:
            lut, cols = self._grouped(batch)
        c = self._counters
        c[:] = 0
        self._run(lut, cols)
        self.stats["trades"] += int(c[TRADES])
        self.stats["late"] += int(c[LATE])
        return self._emit_rows(batch.ts_init)

    def flush(self) -> CandleBatch:
        """End of stream: close every open bucket. Later trades into those buckets count as late."""
        st, c = self._buckets, self._counters
        st.roll_all(len(self._names))
        c[:] = 0
        while flush_all(len(self._names), self._tf, self._source, self.lateness, self._t.flag_gaps, self._rank,
                        st.wm, st.nopen, st.cu, st.bi, st.bf, st.bs, self._rows_i, self._rows_f, c) == NEED_ROWS:
            self._grow_rows(int(c[NEED]))
        return self._emit_rows(0)

    def snapshot(self) -> bytes:
        """All per-market state: watermarks, open buckets, closed-until marks and counters."""
        st, n = self._buckets, len(self._names)
        return pack_state(self, {
            "config": (tuple(self.tfs), self.lateness, self.gaps), "names": list(self._names),
            "wm": st.wm[:n].copy(), "closed_until": st.cu[:n * self._ntf].copy(),
            "open": st.partials(n).to_dict(), "stats": dict(self.stats)})

    def restore(self, data: bytes) -> None:
        """Replace all state with a snapshot of an aggregator with the same configuration."""
        state = unpack_state(self, data)
        config = (tuple(self.tfs), self.lateness, self.gaps)
        if tuple(state["config"]) != config:
            raise StateError(f"candles: snapshot configured as {state['config']}, this operator as {config}")
        self.reset()
        self._add_markets(state["names"])
        st, n = self._buckets, len(self._names)
        st.wm[:n] = state["wm"]
        st.cu[:n * self._ntf] = state["closed_until"]
        st.load(Partials.from_dict(state["open"]), n)
        # our own key objects: unpickled copies would make the next snapshot's bytes differ
        self.stats = {k: int(state["stats"].get(k, 0)) for k in self.stats}

    @property
    def _open(self) -> Partials:
        """The open buckets, sorted by (key, start)."""
        return self._buckets.partials(len(self._names))

    # ---- markets -----------------------------------------------------------------------------
    def _add_markets(self, names: list[str]) -> None:
        for name in names:
            if name not in self._ids:
                self._ids[name] = len(self._names)
                self._names.append(name)
        n = len(self._names)
        if n > len(self._rank):
            self._buckets.reserve(n)
            self._rank = np.empty(n, np.int64)
            self._rank[sorted(range(n), key=self._names.__getitem__)] = np.arange(n)
            self._out_names = list(self._names)

    def _lut(self, markets: list[str]) -> tuple[np.ndarray, bool]:
        """Register a batch's markets; the id of each entry of its dictionary and whether its names are distinct
        (cached: a stream keeps one dictionary)."""
        last, lut, unique = self._lut_of
        if markets is not last and markets != last:
            self._add_markets(markets)
            lut = np.fromiter((self._ids[name] for name in markets), np.int64, len(markets))
            unique = len(set(markets)) == len(markets)
            self._lut_of = (list(markets), lut, unique)
        return lut, unique

    def _grouped(self, batch: TradeBatch) -> tuple[np.ndarray, tuple]:
        """Identity ids and the batch's columns in the order the vectorised path applies them: by dictionary index,
        arrival order within. It differs from arrival order only when names repeat or indices fall outside."""
        order, m = self._dictionary_order(batch)
        cols = (m, batch.ts, batch.price, batch.size, batch.side)
        if order is not None:
            cols = (m,) + tuple(col[order] for col in cols[1:])
        return np.arange(len(self._names)), cols

    def _dictionary_order(self, batch: TradeBatch) -> tuple[np.ndarray | None, np.ndarray]:
        """Stable order by dictionary index (None: as they are) and the market ids in that order."""
        lut = np.fromiter((self._ids[name] for name in batch.markets), np.int32, len(batch.markets))
        if len(batch.markets) > 1:
            local = batch.market.astype(np.int16 if len(batch.markets) < 2 ** 15 else np.int32)
            order = np.argsort(local, kind="stable")  # radix sort: O(n) for int16 keys
            return order, lut[batch.market[order]]
        return None, np.full(len(batch), lut[0], np.int32)

    # ---- the compiled path -------------------------------------------------------------------
    def _run(self, lut: np.ndarray, cols: tuple) -> None:
        """Apply the trades, growing the output rows or the slots per key whenever the kernel runs out of them."""
        st, c = self._buckets, self._counters
        start = 0
        while True:
            status = apply_trades(lut, *cols, start, self._tf, self._source, all(self._t.nested), self._late_tf,
                                  self.lateness, self._t.flag_gaps, st.slots >= st.max_slots, self._rank, st.wm,
                                  st.touched, st.nopen, st.cu, st.bi, st.bf, st.bs, self._rows_i, self._rows_f, c)
            if status == DONE:
                return
            if status == NEED_ROWS:
                self._grow_rows(int(c[NEED]))
            elif status == NEED_SLOTS:
                st.grow_slots()
            start = int(c[POS])

    def _grow_rows(self, need: int) -> None:
        cap = max(need, 2 * len(self._rows_i))
        used = int(self._counters[USED])
        rows_i, rows_f = np.empty((cap, 3), np.int64), np.empty((cap, N_ROW_FLOATS))
        rows_i[:used], rows_f[:used] = self._rows_i[:used], self._rows_f[:used]
        self._rows_i, self._rows_f = rows_i, rows_f

    def _emit_rows(self, ts_init: int) -> CandleBatch:
        """The kernel's output rows as a CandleBatch, sorted; counts them in ``stats``."""
        c = self._counters
        used = int(c[USED])
        if not used:
            return CandleBatch.empty()
        self.stats["candles"] += used
        self.stats["gaps"] += int(c[GAPS])
        ints, f = sorted_rows(self._rows_i, self._rows_f, used, self._tf, self._rank, self._tf_gcd, not c[MIXED])
        count = ints[3]
        return CandleBatch(self._out_names, ints[0].astype(np.int32), ints[1], ints[2], *f, count, count == 0,
                           ts_init=ts_init)

    # ---- the vectorised path -----------------------------------------------------------------
    def _vectorised_update(self, batch: TradeBatch) -> CandleBatch:
        m, ts, price, size, side = self._accept(batch)
        if not len(ts):
            return CandleBatch.empty()
        st, n = self._buckets, len(self._names)
        open_, done, n_gaps = vectorised_step(st.partials(n), m, ts, price, size, side, st.wm[:n],
                                              st.cu[:n * self._ntf], self._t)
        st.load(open_, n)
        self.stats["gaps"] += n_gaps
        return self._emit_partials(done, ts_init=batch.ts_init)

    def _accept(self, batch: TradeBatch):
        """Market ids, ts, price, size, side of the non-late trades, sorted by (market, ts, arrival)."""
        order, m = self._dictionary_order(batch)
        ts = batch.ts if order is None else batch.ts[order]
        pos, n_late = accepted_order(m, ts, self._buckets.wm[:len(self._names)], self._t)
        if pos is None:
            if order is None:
                price, size, side = batch.price, batch.size, batch.side
            else:
                price, size, side = batch.price[order], batch.size[order], batch.side[order]
        else:
            self.stats["late"] += n_late
            idx = pos if order is None else order[pos]
            m, ts = m[pos], ts[pos]
            price, size, side = batch.price[idx], batch.size[idx], batch.side[idx]
        self.stats["trades"] += len(ts)
        return m, ts, price, size, side

    def _emit_partials(self, p: Partials, ts_init: int = 0) -> CandleBatch:
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


class _Buckets:
    """The kernel's state (see ``engine.candle_kernel``), with room for ``capacity`` markets and ``slots`` open
    buckets per key; beyond the markets in use everything stays as new."""

    def __init__(self, t: Timeframes, slots: int) -> None:
        self.t, self.ntf, self.capacity, self.slots = t, len(t.tfs), 0, slots
        self.source = sources(t.tfs)
        self._allocate(0, slots)

    def _allocate(self, capacity: int, slots: int) -> None:
        keys = capacity * self.ntf
        self.wm = np.full(capacity, NO_TS, np.int64)  # per market
        self.touched = np.zeros((2, capacity), np.int64)
        self.nopen = np.zeros(keys, np.int64)  # per key (market, timeframe)
        self.cu = np.full(keys, NO_TS, np.int64)  # closed-until marks, gaps "flag"
        self.bi = np.empty((keys * slots, 4), np.int64)  # per bucket: row key * slots + j
        self.bf = np.empty((keys * slots, 4))
        self.bs = np.empty((keys * slots, N_SUMS), np.int64)

    @property
    def max_slots(self) -> int:
        """Slots per key past which a full key closes its due buckets before asking for more: keys collect a
        batch's buckets until its end, within a memory budget."""
        return max(4, min(64, _ROW_BUDGET // max(self.capacity * self.ntf, 1)))

    def reserve(self, n_markets: int) -> None:
        """Room for ``n_markets`` markets (amortised: capacity doubles)."""
        if n_markets > self.capacity:
            self._resize(max(n_markets, 2 * self.capacity), self.slots)

    def grow_slots(self) -> None:
        self._resize(self.capacity, 2 * self.slots)

    def _resize(self, capacity: int, slots: int) -> None:
        old, keys = dict(vars(self)), self.capacity * self.ntf
        self._allocate(capacity, slots)
        for name in ("wm", "nopen", "cu"):
            getattr(self, name)[:len(old[name])] = old[name]
        self.touched[:, :self.capacity] = old["touched"]
        for name in ("bi", "bf", "bs"):
            new = getattr(self, name)
            width = new.shape[1]
            new.reshape(-1, slots, width)[:keys, :self.slots] = old[name].reshape(keys, self.slots, width)
        self.capacity, self.slots = capacity, slots

    def roll_all(self, n_markets: int) -> None:
        """Roll every bucket up into its targets (see ``candle_kernel.roll_all``)."""
        while roll_all(n_markets, self.t.tf, self.source, self.nopen, self.bi, self.bf, self.bs) == NEED_SLOTS:
            self.grow_slots()

    def _rows(self, n_markets: int) -> np.ndarray:
        """Rows of the open buckets of the first ``n_markets`` markets, by (key, start)."""
        keys = n_markets * self.ntf
        held = np.arange(self.slots) < self.nopen[:keys, None]
        return np.flatnonzero(held.ravel())

    def partials(self, n_markets: int) -> Partials:
        """The open buckets of the first ``n_markets`` markets as ``Partials`` rows, sorted by (key, start), every
        row holding all its trades."""
        self.roll_all(n_markets)
        rows = self._rows(n_markets)
        bi, bf = self.bi[rows], self.bf[rows]
        col = np.ascontiguousarray
        return Partials(rows // self.slots, col(bi[:, B]), col(bi[:, FTS]), col(bf[:, OPEN]), col(bi[:, LTS]),
                        col(bf[:, CLOSE]), col(bf[:, HIGH]), col(bf[:, LOW]), _partial_sums(self.bs[rows]))

    def load(self, p: Partials, n_markets: int) -> None:
        """Make ``p`` (rows sorted by (key, start)) the open buckets of the first ``n_markets`` markets; those with
        targets come rolled, since ``p``'s coarser rows already count their trades."""
        keys = n_markets * self.ntf
        counts = np.bincount(p.key, minlength=keys).astype(np.int64)
        while len(p) and counts.max() > self.slots:
            self.grow_slots()
        self.nopen[:] = 0
        self.nopen[:keys] = counts
        rows = p.key * self.slots + np.arange(len(p)) - np.repeat(np.cumsum(counts) - counts, counts)
        rolled = np.isin(np.arange(self.ntf), self.source)[p.key % self.ntf].astype(np.int64)
        self.bi[rows] = np.stack((p.b, p.fts, p.lts, rolled), axis=1)  # B, FTS, LTS, ROLLED
        self.bf[rows] = np.stack((p.o, p.c, p.h, p.lo), axis=1)  # OPEN, CLOSE, HIGH, LOW
        self.bs[rows] = _kernel_sums(p.s)


def _limb_columns(name: str) -> slice:
    q = LIMBS * SUM_NAMES.index(name)
    return slice(q, q + LIMBS)


_VOLUME, _BUY, _SELL, _NOTIONAL = (_limb_columns(name) for name in SUM_NAMES)


def _partial_sums(k: np.ndarray) -> np.ndarray:
    """Kernel sums (by side) as ``Partials`` sums, canonical."""
    s = np.empty_like(k)
    s[:, _VOLUME] = k[:, BUY:BUY + LIMBS] + k[:, SELL:SELL + LIMBS] + k[:, UNKNOWN:UNKNOWN + LIMBS]
    s[:, _BUY], s[:, _SELL] = k[:, BUY:BUY + LIMBS], k[:, SELL:SELL + LIMBS]
    s[:, _NOTIONAL], s[:, COUNT] = k[:, NOTIONAL:NOTIONAL + LIMBS], k[:, COUNT]
    return carry_limbs(s)


def _kernel_sums(s: np.ndarray) -> np.ndarray:
    """``Partials`` sums as kernel sums: the unknown side's volume is what buys and sells leave of the volume."""
    k = np.empty_like(s)
    k[:, BUY:BUY + LIMBS], k[:, SELL:SELL + LIMBS] = s[:, _BUY], s[:, _SELL]
    k[:, UNKNOWN:UNKNOWN + LIMBS] = s[:, _VOLUME] - s[:, _BUY] - s[:, _SELL]
    k[:, NOTIONAL:NOTIONAL + LIMBS], k[:, COUNT] = s[:, _NOTIONAL], s[:, COUNT]
    return carry_limbs(k)
