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

    def __len__(self) -> int:
        return len(self.slots)

    def lookup(self, keys: list) -> np.ndarray:
        """Slot of each key, allocating new ones in first-seen order."""
        slots = self.slots
        try:  # the common case: every key is known
            return np.array([slots[key] for key in keys], np.int64)
        except KeyError:
            pass
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
        return slot

    def state(self) -> dict:
        return {"slots": dict(self.slots), "free": list(self.free)}

    def load(self, state: dict) -> None:
        self.slots = dict(state["slots"])
        self.free = list(state["free"])


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


class KeyedArrayOperator:
    """Snapshot, restore, reset and flush for operators whose per-key state is rows of ``self.s``.

    Subclasses set ``keys`` (a SlotMap), ``capacity`` and ``s`` in ``__init__`` and return their
    constructor arguments from ``settings()``, so a snapshot rebuilds an identical operator.
    """

    name: str
    version: str

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

    def key_slots(self, markets: list[str], market: np.ndarray, tf: np.ndarray) -> tuple[list, np.ndarray, np.ndarray]:
        """The batch's distinct (market, tf) keys, each row's index into them, and each row's slot
        (state rows grown to fit)."""
        keys, inverse = row_keys(markets, market, tf)
        slots = self.keys.lookup(keys)[inverse]
        if slots.max() >= self.capacity:
            self._grow(int(slots.max()) + 1)
        return keys, inverse, slots

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
        self._restored()

    def reset(self) -> None:
        """Forget every key, keeping the settings."""
        self.__init__(**self.settings())


def newest_bounds(active: np.ndarray, seq: np.ndarray, top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    """Per slot, top and bottom of the newest active object of each side, NaN where none is active.

    Inputs are (slots, 2 sides, objects); the result is (slots, 4): bull top, bull bottom, bear top,
    bear bottom. Used by the gap and order-block operators for their columns.
    """
    newest = np.argmax(np.where(active, seq, -1), axis=2)[..., None]
    any_active = active.any(axis=2)
    t = np.where(any_active, np.take_along_axis(top, newest, 2)[..., 0], np.nan)
    b = np.where(any_active, np.take_along_axis(bottom, newest, 2)[..., 0], np.nan)
    return np.stack([t[:, 0], b[:, 0], t[:, 1], b[:, 1]], axis=1)
