"""The rows an indicator kernel walks: a batch's candles in row order, as the arrays kernels take.

Every kernel takes the same arrays, each contiguous and writable (a kernel never writes to them): numba
compiles a kernel once per set of argument types, and inputs may come read-only (Ray's object store),
strided or of another dtype; those are copied, the rest passed as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit


def _plain(x, dtype) -> np.ndarray:
    a = np.ascontiguousarray(x, dtype)
    return a if a.flags.writeable else a.copy()


@njit(cache=True)
def _capacity(slots) -> int:
    """The largest slot + 1 (0 for none): a compiled loop costs less than numpy's reduction machinery."""
    top = -1
    for s in slots:
        top = max(top, s)
    return top + 1


_zeros = {np.int64: np.zeros(0, np.int64), np.bool_: np.zeros(0, np.bool_)}


def zeros(n: int, dtype: type) -> np.ndarray:
    """``n`` zeros of ``np.int64`` (slot 0) or ``np.bool_`` (no gap) from one kept buffer per type:
    kernels never write these arguments, and a fresh array of a whole series costs page faults on the
    scale of a cheap kernel's work."""
    buf = _zeros[dtype]
    if len(buf) < n:
        buf = _zeros[dtype] = np.zeros(max(n, 2 * len(buf)), dtype)
    return buf[:n]


@dataclass
class Rows:
    slots: np.ndarray  # int64: the state row (key) of each candle
    gap: np.ndarray  # bool: candles without trades, skipped (their outputs stay NaN)
    ts: np.ndarray  # int64 open time, ns
    high: np.ndarray  # float64, as the three below
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    capacity: int  # slots the state needs: the largest slot + 1

    @classmethod
    def of(cls, slots: np.ndarray, gap: np.ndarray | None, ts, high, low, close, volume) -> "Rows":
        slots = _plain(slots, np.int64)
        gap = zeros(len(slots), np.bool_) if gap is None else _plain(gap, np.bool_)
        return cls(slots, gap, _plain(ts, np.int64), _plain(high, np.float64), _plain(low, np.float64),
                   _plain(close, np.float64), _plain(volume, np.float64), _capacity(slots))

    @classmethod
    def of_bars(cls, slots: np.ndarray, bars) -> "Rows":
        """Rows of ``Bars`` (none a gap)."""
        return cls.of(slots, None, bars.ts, bars.high, bars.low, bars.close, bars.volume)

    def arrays(self) -> tuple[np.ndarray, ...]:
        """The kernels' leading arguments."""
        return self.slots, self.gap, self.ts, self.high, self.low, self.close, self.volume
