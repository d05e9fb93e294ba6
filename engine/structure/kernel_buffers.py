"""Helpers shared by the kernels: slot resolution and the order of the events they emit.

Every kernel follows one calling convention (see ``KeyedArrayOperator.run_kernel``): its first arguments are
``table, tf0, slots, ranks, start, ints, floats, used``. It resolves the rows' slots from ``table`` when that is
not empty, returning ``(-1, 0)`` untouched when it cannot; walks rows ``start ..`` in order, appending events as
columns of the caller's ``ints``/``floats`` buffers after the first ``used``; stops early, returning
``(row, used)``, before a row whose events might not fit; and returns ``(n_rows, used)`` at the end, having
sorted the events when ``ranks`` is not empty.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def resolve_slots(table: np.ndarray, tf0: int, market: np.ndarray, tf: np.ndarray, slots: np.ndarray) -> bool:
    """Fill ``slots`` with ``table[market]`` (see ``SlotMap.table``); False when a row has another timeframe or
    a key the table does not hold, so the caller must resolve the batch's keys the general way."""
    for r in range(len(market)):
        m = market[r]
        if tf[r] != tf0 or m < 0 or m >= len(table) or table[m] < 0:
            return False
        slots[r] = table[m]
    return True


@njit(cache=True)
def sort_events(ints: np.ndarray, floats: np.ndarray, keys: np.ndarray) -> None:
    """Stably sort the first ``keys.shape[1]`` events in place by the rows of ``keys`` (the first row major)."""
    used = keys.shape[1]
    perm = np.arange(used)
    for k in range(keys.shape[0] - 1, -1, -1):
        perm = perm[np.argsort(keys[k][perm], kind="mergesort")]
    ints[:, :used] = ints[:, perm]
    floats[:, :used] = floats[:, perm]
