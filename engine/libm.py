"""Logarithms, exponentials and powers that round the same on every x86-64 CPU.

numpy picks a routine per CPU at run time: on AVX-512 machines ``np.log``, ``np.exp`` and ``np.power``
of float64 run numpy's own vector code, which rounds differently from the C library in the last bit now
and then. A one-bit difference in a log return moves a risk measure, a feature or a rule's threshold, so
the same data would give other signals on another machine (a cluster's nodes, CI, a user's laptop).
These functions call the C library's scalar ``log``/``exp``/``pow`` for each element instead: the values
numpy gives on machines without AVX-512, everywhere.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True, error_model="numpy")
def _log(x: np.ndarray, out: np.ndarray) -> None:
    for i in range(x.size):
        out[i] = math.log(x[i])  # -inf at 0, NaN below (no domain error in compiled code)


@njit(cache=True, error_model="numpy")
def _exp(x: np.ndarray, out: np.ndarray) -> None:
    for i in range(x.size):
        out[i] = math.exp(x[i])


@njit(cache=True, error_model="numpy")
def _pow(x: np.ndarray, y: np.ndarray, out: np.ndarray) -> None:
    for i in range(x.size):
        out[i] = x[i] ** y[i]


def _unary(kernel, x, out: np.ndarray | None) -> np.ndarray:
    a = np.ascontiguousarray(x, dtype=np.float64)
    result = np.empty(a.shape) if out is None or not out.flags.c_contiguous else out
    kernel(a.reshape(-1), result.reshape(-1))
    if out is not None and result is not out:
        out[...] = result
        return out
    return result


def log(x, out: np.ndarray | None = None) -> np.ndarray:
    """Natural log of each element, like ``np.log`` (``-inf`` at 0, NaN below 0 or at NaN)."""
    return _unary(_log, x, out)


def exp(x, out: np.ndarray | None = None) -> np.ndarray:
    """``e ** x`` of each element, like ``np.exp``."""
    return _unary(_exp, x, out)


def power(x, y) -> np.ndarray:
    """``x ** y`` element by element (numpy broadcasting), like ``np.power`` on floats."""
    a, b = np.broadcast_arrays(np.asarray(x, np.float64), np.asarray(y, np.float64))
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    out = np.empty(a.shape)
    _pow(a.reshape(-1), b.reshape(-1), out.reshape(-1))
    return out
