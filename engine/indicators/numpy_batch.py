"""Whole-series numpy forms kept for BBANDS and KAMA.

Every other indicator's ``batch`` is its row kernel on fresh state. These two sum in another order
than their streaming forms (within 1e-12 of them, not bit for bit), and the output of
``crypto-intel indicators`` was recorded with these orders, so their batch forms stay as they were.
"""

from __future__ import annotations

import numpy as np


def running_sums(x: np.ndarray, n: int) -> np.ndarray:
    """Window sums along axis 0 rounded exactly as a running ``(total + new) - old`` accumulates them.

    Accumulating the interleaved sequence new_0, -old_0, new_1, -old_1, ... performs the same
    additions in the same order, so one cumsum reproduces the running values bit for bit. Rows
    before the first full window are partial sums.
    """
    x = np.asarray(x, np.float64)
    pairs = np.empty((len(x), 2, *x.shape[1:]))
    pairs[:, 0] = x
    pairs[:n, 1] = -0.0  # the running buffer starts at 0.0; adding -0.0 equals subtracting 0.0
    np.negative(x[:max(len(x) - n, 0)], out=pairs[n:, 1])
    # accumulated in place (no second full-length buffer); the odd rows are the window sums
    flat = pairs.reshape(2 * len(x), *x.shape[1:])
    np.cumsum(flat, axis=0, out=flat)
    return pairs[:, 1]


def rolling_sum(x: np.ndarray, n: int) -> np.ndarray:
    """Sums of every full window of ``n`` (length len(x)-n+1), rounded as a running sum."""
    return running_sums(x, n)[n - 1:]


def window_counts(flags: np.ndarray, n: int) -> np.ndarray:
    """How many of the last ``n`` rows are true, per column (partial counts first): exact integers."""
    # counted in doubles (a float cumsum runs about twice as fast as a bool-to-int64 one): every
    # partial sum is an integer far below 2**53, so each addition and difference is exact
    out = np.asarray(flags).astype(np.float64)
    np.cumsum(out, axis=0, out=out)
    out[n:] -= out[:len(out) - n].copy()
    return out


def sliding_mean_pstd(x: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population standard deviation of every full window of ``x`` (length len(x)-n+1),
    two-pass over offsets from each window's first value, summed in window order."""
    # The loops run over the n offsets within a window, each step one in-place numpy op over all
    # windows: several times faster than reducing a (windows, n) matrix.
    x = np.asarray(x, np.float64)
    m = len(x) - n + 1
    first = x[:m]
    total = np.zeros(m)
    dev = np.empty(m)  # one scratch buffer for every step: no temporaries
    for j in range(1, n):
        np.subtract(x[j:j + m], first, out=dev)
        total += dev
    mean_offset = total
    mean_offset /= n
    squares = np.zeros(m)
    for j in range(n):
        np.subtract(x[j:j + m], first, out=dev)
        dev -= mean_offset
        dev *= dev
        squares += dev
    squares /= n
    np.add(first, mean_offset, out=dev)  # the scratch buffer becomes the mean
    return dev, np.sqrt(squares, out=squares)


def varying_linear_recursion(a: np.ndarray, b: np.ndarray, seed: float) -> np.ndarray:
    """y[i] = a[i] * y[i-1] + b[i] with y[-1] = seed, for coefficients that change every step."""
    # The series is cut into ~sqrt(len) blocks solved side by side: a loop over positions within a
    # block (each step one numpy op across all blocks), a scalar loop carrying each block's end value
    # into the next, and one vectorised correction. For 0 <= a <= 1 and same-signed b (adaptive
    # averages of prices) rounding stays within ulps.
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    size = len(b)
    if size == 0:
        return b.copy()
    # balances the per-op cost of the block loop against the per-block scalar carry loop
    width = max(1, int(np.sqrt(0.075 * size)))
    lanes = -(-size // width)
    # row i holds position i of every block, so each step below is one contiguous op; filled
    # through the transposed view (a padded last block: coefficient 1, input 0)
    full, rest = divmod(size, width)
    coef = np.ones((width, lanes))
    y = np.zeros((width, lanes))
    coef.T[:full] = a[:full * width].reshape(full, width)
    y.T[:full] = b[:full * width].reshape(full, width)
    if rest:
        coef[:rest, full] = a[full * width:]
        y[:rest, full] = b[full * width:]
    for i in range(1, width):
        y[i] += coef[i] * y[i - 1]  # block-local solution, started from 0
        coef[i] *= coef[i - 1]  # product of coefficients since the block start
    carry = np.empty(lanes)
    value = float(seed)
    for k, (gain, end) in enumerate(zip(coef[-1].tolist(), y[-1].tolist())):
        carry[k] = value
        value = gain * value + end
    coef *= carry  # coef is not needed again
    y += coef
    return y.T.reshape(-1)[:size]
