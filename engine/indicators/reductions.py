"""numpy's summation orders over a window, for compiled kernels.

Window statistics were defined with numpy reductions; floating-point sums depend on the order of their
additions, so these replay the exact order numpy uses and give the same bits:

* ``np.sum`` along a contiguous axis is pairwise: below 8 values a plain loop, up to 128 eight
  interleaved partial sums combined as a tree, beyond that halves (rounded to multiples of 8) summed
  recursively; the reduction starts from 0.0.
* ``np.einsum("ij,ij->i", a, b)`` (numpy's baseline SSE build: two lanes, no fused multiply-add) keeps
  one partial sum per lane; blocks of 8 values are added to the lanes last pair first, the rest pair by
  pair (a missing partner counts 0 * 0), and the lanes are added at the end.

Both take a window as ``buf[slot, lo:lo + n]`` and a value ``first`` subtracted from every element (window
offsets), plus, for the dot, a second offset ``mean``: the terms are computed where they are summed.
"""

from __future__ import annotations

import numpy as np

from engine.indicators.jit import inlined


@inlined
def _pairwise_block(buf, slot, lo, n, first):
    """numpy's pairwise sum of at most 128 terms."""
    if n < 8:
        res = 0.0
        for i in range(lo, lo + n):
            res += buf[slot, i] - first
        return res
    r0, r1, r2, r3 = buf[slot, lo] - first, buf[slot, lo + 1] - first, buf[slot, lo + 2] - first, buf[slot, lo + 3] - first
    r4, r5, r6, r7 = buf[slot, lo + 4] - first, buf[slot, lo + 5] - first, buf[slot, lo + 6] - first, buf[slot, lo + 7] - first
    end = lo + n - n % 8
    i = lo + 8
    while i < end:
        r0 += buf[slot, i] - first
        r1 += buf[slot, i + 1] - first
        r2 += buf[slot, i + 2] - first
        r3 += buf[slot, i + 3] - first
        r4 += buf[slot, i + 4] - first
        r5 += buf[slot, i + 5] - first
        r6 += buf[slot, i + 6] - first
        r7 += buf[slot, i + 7] - first
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < lo + n:
        res += buf[slot, i] - first
        i += 1
    return res


@inlined
def _pairwise_long(buf, slot, lo, n, first, scratch):
    """numpy's pairwise sum of more than 128 terms: halves (rounded down to multiples of 8) summed
    recursively, run here with an explicit stack (recursion does not survive numba's cache)."""
    frames, partial = scratch  # frames[d] = (start, length, left half done) of the node at depth d
    d = 0
    frames[0, 0], frames[0, 1], frames[0, 2] = lo, n, 0
    while True:
        start, length = frames[d, 0], frames[d, 1]
        if length > 128:  # descend into the left half
            half = length // 2
            half -= half % 8
            frames[d + 1, 0], frames[d + 1, 1], frames[d + 1, 2] = start, half, 0
            d += 1
            continue
        value = _pairwise_block(buf, slot, start, length, first)
        while True:  # hand the value up until a node still needs its right half
            if d == 0:
                return value
            d -= 1
            if frames[d, 2] == 0:
                partial[d] = value
                frames[d, 2] = 1
                half = frames[d, 1] // 2
                half -= half % 8
                frames[d + 1, 0], frames[d + 1, 1], frames[d + 1, 2] = frames[d, 0] + half, frames[d, 1] - half, 0
                d += 1
                break
            value = partial[d] + value


def sum_scratch() -> tuple[np.ndarray, np.ndarray]:
    """Working memory of ``offset_sum`` for windows over 128 values (a stack deep enough for any length)."""
    return np.zeros((64, 3), np.int64), np.zeros(64)


@inlined
def offset_sum(buf, slot, lo, n, first, scratch):
    """``np.sum(buf[slot, lo:lo + n] - first)``; ``scratch`` from ``sum_scratch``."""
    return 0.0 + (_pairwise_block(buf, slot, lo, n, first) if n <= 128 else _pairwise_long(buf, slot, lo, n, first, scratch))


@inlined
def offset_square_sum(buf, slot, lo, n, first, mean):
    """``np.einsum("i,i", d, d)`` of d = (buf[slot, lo:lo + n] - first) - mean, as einsum's "ij,ij->i" adds it."""
    lane0, lane1 = 0.0, 0.0
    i, end = lo, lo + n
    while end - i >= 8:
        for j in (6, 4, 2, 0):
            a = (buf[slot, i + j] - first) - mean
            b = (buf[slot, i + j + 1] - first) - mean
            lane0 = a * a + lane0
            lane1 = b * b + lane1
        i += 8
    while i < end:
        a = (buf[slot, i] - first) - mean
        lane0 = a * a + lane0
        if i + 1 < end:
            b = (buf[slot, i + 1] - first) - mean
            lane1 = b * b + lane1
        else:
            lane1 = 0.0 * 0.0 + lane1
        i += 2
    return 0.0 + (lane0 + lane1)
