"""Key → slot bookkeeping shared by operators that keep vectorised per-key state."""

from __future__ import annotations

import numpy as np

from engine.operator import pack_state, unpack_state


class SlotMap:
    """Assigns each key (e.g. ``(market, timeframe_ns)``) a stable row in the state arrays.

    Freed slots are reused; the caller resets the state rows it frees.
    """

    def __init__(self) -> None:
        self.slots: dict = {}
        self.free: list[int] = []
        self._table: tuple | None = None  # (markets, timeframe, slot and name rank per market), see ``table``

    def __len__(self) -> int:
        return len(self.slots)

    def lookup(self, keys: list) -> np.ndarray:
        """Slot of each key, allocating new ones in first-seen order."""
        slots = self.slots
        try:  # the common case: every key is known
            return np.array([slots[key] for key in keys], np.int64)
        except KeyError:
            pass
        self._table = None
        out = np.empty(len(keys), np.int64)
        for i, key in enumerate(keys):
            slot = slots.get(key)
            if slot is None:
                slot = self.free.pop() if self.free else len(slots) + len(self.free)
                slots[key] = slot
            out[i] = slot
        return out

    def release(self, key) -> int | None:
        """Forget a key; return its slot so the caller can reset that row."""
        slot = self.slots.pop(key, None)
        if slot is not None:
            self.free.append(slot)
            self._table = None
        return slot

    def table(self, markets: list[str], tf: int) -> tuple[np.ndarray, np.ndarray]:
        """For each market index ``i``: the slot of ``(markets[i], tf)`` (-1 where the key is new) and the rank of
        ``markets[i]`` among the sorted market names (for ordering events by market in compiled code).

        Kept until the keys or the batch's market dictionary change, so a stream of batches sharing one
        dictionary resolves its rows without building key tuples.
        """
        cached = self._table
        if cached is not None and cached[1] == tf and cached[0] == markets:
            return cached[2], cached[3]
        slots = self.slots
        table = np.array([slots.get((m, tf), -1) for m in markets], np.int64)
        rank = {name: i for i, name in enumerate(sorted(set(markets)))}
        ranks = np.array([rank[m] for m in markets], np.int64)
        self._table = (list(markets), tf, table, ranks)
        return table, ranks

    def state(self) -> dict:
        return {"slots": dict(self.slots), "free": list(self.free)}

    def load(self, state: dict) -> None:
        self.slots = dict(state["slots"])
        self.free = list(state["free"])
        self._table = None


def row_keys(markets: list[str], market: np.ndarray, tf: np.ndarray) -> tuple[list, np.ndarray]:
    """Distinct (market, tf) keys of a batch and, per row, the index of its key in that list.

    Keys are sorted by (market index, tf), as ``np.unique(..., axis=0)`` of the pairs would order them.
    """
    m = market.astype(np.int64)
    if len(tf) == 0 or (tf == tf[0]).all():  # the common case: one timeframe
        uniq, inverse = np.unique(m, return_inverse=True)
        t0 = int(tf[0]) if len(tf) else 0
        return [(markets[i], t0) for i in uniq.tolist()], inverse.reshape(-1)
    tfs, tf_idx = np.unique(tf.astype(np.int64), return_inverse=True)
    nt = len(tfs)
    uniq, inverse = np.unique(m * nt + tf_idx.reshape(-1), return_inverse=True)
    tf_list = tfs.tolist()
    return [(markets[u // nt], tf_list[u % nt]) for u in uniq.tolist()], inverse.reshape(-1)


def rounds(slots: np.ndarray) -> list[np.ndarray]:
    """Split row indices into rounds where each slot appears at most once, preserving per-slot order.

    Round r holds the r-th row of every slot, so one vectorised update per round advances many
    keys by one bar while each key still sees its bars in order.
    """
    n = len(slots)
    if n == 0:
        return []
    order = np.argsort(slots, kind="stable")
    sorted_slots = slots[order]
    starts = np.flatnonzero(np.r_[True, sorted_slots[1:] != sorted_slots[:-1]])
    if len(starts) == n:  # every slot once: a single round
        return [np.arange(n)]
    group_start = np.repeat(starts, np.diff(np.r_[starts, n]))
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n) - group_start
    if rank.max() == 0:
        return [np.arange(n)]
    by_rank = np.argsort(rank, kind="stable")
    bounds = np.flatnonzero(np.diff(rank[by_rank])) + 1
    return np.split(by_rank, bounds)


_NONE = np.empty(0, np.int64)


class KeyedArrayOperator:
    """Snapshot, restore, reset and flush for operators whose per-key state is rows of ``self.s``.

    Subclasses set ``keys`` (a SlotMap), ``capacity`` and ``s`` in ``__init__`` and return their
    constructor arguments from ``settings()``, so a snapshot rebuilds an identical operator.
    """

    name: str
    version: str
    packed = False  # whether the state also lives in ``rows``, one record per slot (see ``_pack``)
    # scratch for run_kernel, not state: row slots and the event buffers
    _slots: np.ndarray = _NONE
    _event_buffers: tuple | None = None

    def settings(self) -> dict:
        raise NotImplementedError

    def _grow(self, capacity: int) -> None:
        raise NotImplementedError

    def grow_state(self, spec: dict[str, tuple[tuple[int, ...], type, object]], capacity: int) -> None:
        """Reallocate every state array of ``spec`` (name -> (shape after the slot axis, dtype, fill)) to
        at least ``capacity`` slots, doubling to amortise, keeping existing rows."""
        new = max(capacity, 2 * self.capacity)
        for key, (tail, dtype, fill) in spec.items():
            arr = np.full((new, *tail), fill, dtype=dtype)
            if key in self.s:
                arr[: self.capacity] = self.s[key]
            self.s[key] = arr
        self.capacity = new
        if self.packed:
            self._pack()

    def _pack(self) -> None:
        """Move the state into ``rows``, one record per slot holding that slot's row of every state array, and
        make each ``s`` entry a view of its field: a compiled kernel then takes the whole state as one argument
        (every array argument adds to the cost of a call), while snapshots keep their layout."""
        s = self.s
        rows = np.empty(self.capacity, np.dtype([(k, v.dtype, v.shape[1:]) for k, v in s.items()], align=True))
        for k, v in s.items():
            rows[k] = v
            s[k] = rows[k]
        self.rows = rows

    def key_slots(self, markets: list[str], market: np.ndarray, tf: np.ndarray) -> tuple[list, np.ndarray, np.ndarray]:
        """The batch's distinct (market, tf) keys, each row's index into them, and each row's slot
        (state rows grown to fit)."""
        keys, inverse = row_keys(markets, market, tf)
        slots = self.keys.lookup(keys)[inverse]
        if slots.max() >= self.capacity:
            self._grow(int(slots.max()) + 1)
        return keys, inverse, slots

    def run_kernel(self, c, kernel, n_ints: int, n_floats: int) -> tuple[np.ndarray, np.ndarray, bool]:
        """Run a compiled kernel (``engine.structure.kernel_buffers`` describes the convention) over the candles ``c``.

        ``kernel(table, tf0, slots, ranks, start, ints, floats, used)`` is a closure that reads the state
        (``self.rows``) when called, since resolving new keys may grow it. Returns the events' int and float fields (views
        of reused buffers, one column per event) and whether the kernel sorted them, which it does when every
        row has one timeframe and a known key.
        """
        n = len(c)
        if len(self._slots) < n:
            self._slots = np.empty(max(n, 2 * len(self._slots)), np.int64)
        slots = self._slots
        if self._event_buffers is None or self._event_buffers[0].shape[0] != n_ints:
            self._event_buffers = (np.empty((n_ints, 256), np.int64), np.empty((n_floats, 256)))
        ints, floats = self._event_buffers
        tf0 = int(c.tf[0])
        table, ranks = self.keys.table(c.markets, tf0)
        row, used = kernel(table, tf0, slots, ranks, 0, ints, floats, 0)
        if row < 0:  # a new key or a second timeframe: resolve the general way; events get sorted outside
            slots, ranks = self.key_slots(c.markets, c.market, c.tf)[2], _NONE
            row, used = kernel(_NONE, tf0, slots, ranks, 0, ints, floats, 0)
        while row < n:  # the buffers filled up: double them and go on from that row
            cap = 2 * ints.shape[1]
            ints = np.concatenate([ints[:, :used], np.empty((n_ints, cap - used), np.int64)], axis=1)
            floats = np.concatenate([floats[:, :used], np.empty((n_floats, cap - used))], axis=1)
            self._event_buffers = (ints, floats)
            row, used = kernel(_NONE, tf0, slots, ranks, row, ints, floats, used)
        return ints[:, :used], floats[:, :used], len(ranks) > 0

    def _restored(self) -> None:
        """Hook: rebuild anything derived from ``s`` after a restore."""

    def flush(self) -> None:
        """Nothing is pending: every event is emitted at the bar that confirms it."""
        return None

    def snapshot(self) -> bytes:
        """All per-key state, settings included."""
        return pack_state(self, {"settings": self.settings(), "keys": self.keys.state(), "capacity": self.capacity,
                                 "s": {k: v.copy() for k, v in self.s.items()}})

    def restore(self, data: bytes) -> None:
        """Replace all state (and settings) with a snapshot of this operator."""
        state = unpack_state(self, data)
        self.__init__(**state["settings"])
        self.keys.load(state["keys"])
        self.capacity = state["capacity"]
        self.s = {k: v.copy() for k, v in state["s"].items()}
        if self.packed:
            self._pack()
        self._restored()

    def reset(self) -> None:
        """Forget every key, keeping the settings."""
        self.__init__(**self.settings())
