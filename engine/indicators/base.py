"""Base classes of indicators: per-key state arrays, and one compiled row kernel per indicator.

State is a set of numpy arrays with one row per *slot* (a market/timeframe key). Each indicator has a
numba kernel that walks a batch's rows in order and, for every row that is not a gap, advances that
row's slot by one bar and writes the outputs into the row of a preallocated matrix: one compiled call
per indicator per batch, whatever the number of keys and bars. ``update`` (one bar for each of several
slots) and ``batch`` (one key's whole series, on fresh state) run the same kernel, so the streaming
and batch forms are one definition (BBANDS and KAMA also keep a numpy batch form: see
``engine.indicators.numpy_batch``).
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, ClassVar

import numpy as np

from engine.indicators.rows import Rows, zeros
from schemas.errors import IndicatorSpecError

# name -> (shape after the slot axis, dtype, initial value)
StateSpec = dict[str, tuple[tuple[int, ...], type, float]]


@dataclass
class Bars:
    """OHLCV columns; one row per slot in streaming updates, one row per bar in batch calls."""

    ts: np.ndarray  # int64 bar open time, ns
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    def __len__(self) -> int:
        return len(self.close)

    @classmethod
    def from_close(cls, close) -> "Bars":
        """Bars where only closes matter (open/high/low equal close, zero volume)."""
        c = np.asarray(close, np.float64)
        return cls(np.arange(len(c), dtype=np.int64), c, c, c, c, np.zeros(len(c)))

    def take(self, idx) -> "Bars":
        return Bars(self.ts[idx], self.open[idx], self.high[idx], self.low[idx], self.close[idx],
                    self.volume[idx])


class SlotState:
    """Per-slot state arrays (``s``) of one building block and of the blocks it owns (``children``)."""

    def __init__(self) -> None:
        self.capacity = 0
        self.s: dict[str, np.ndarray] = {}
        self.children: list[SlotState] = []

    def state_spec(self) -> StateSpec:
        """Arrays of per-slot state this block needs (its own, not its children's); none by default."""
        return {}

    def handle(self) -> tuple:
        """What the compiled helpers of this block take: its state arrays, its children's handles and
        its parameters. Read after any growth: growing replaces the arrays."""
        return ()

    def grow(self, capacity: int) -> None:
        """Make room for at least ``capacity`` slots (amortised doubling)."""
        if capacity <= self.capacity:
            return
        new_cap = max(capacity, 2 * self.capacity, 8)
        for key, (tail, dtype, fill) in self.state_spec().items():
            arr = np.empty((new_cap, *tail), dtype=dtype)
            arr.fill(fill)
            if key in self.s:
                arr[: self.capacity] = self.s[key]
            self.s[key] = arr
        for child in self.children:
            child.grow(new_cap)
        self.capacity = new_cap

    def reset(self, slots: np.ndarray | None = None) -> None:
        """Forget the state of ``slots`` (all when None), as if they never saw a bar."""
        for key, (_tail, _dtype, fill) in self.state_spec().items():
            if slots is None:
                self.s[key][...] = fill
            else:
                self.s[key][slots] = fill
        for child in self.children:
            child.reset(slots)

    def get_state(self) -> dict:
        return {"capacity": self.capacity, "s": {k: v.copy() for k, v in self.s.items()},
                "children": [c.get_state() for c in self.children]}

    def set_state(self, state: dict) -> None:
        self.capacity = state["capacity"]
        self.s = {k: v.copy() for k, v in state["s"].items()}
        for child, cs in zip(self.children, state["children"]):
            child.set_state(cs)

    def fresh(self):
        """A copy with the same settings and no state (capacity 0), children included."""
        memo = {id(block.s): {} for block in self._tree()}  # every copy gets its own empty state dict
        clone = copy.deepcopy(self, memo)
        for block in clone._tree():
            block.capacity = 0
        return clone

    def _tree(self):
        yield self
        for child in self.children:
            yield from child._tree()


class Indicator(SlotState, ABC):
    """A registered indicator. Subclasses set the class attributes, ``lookback`` and ``kernel``.

    ``kernel()`` returns a compiled function ``f(slots, gap, ts, highs, lows, closes, volumes, out, col,
    handle)`` and the handle it takes (the arrays are ``engine.indicators.rows.Rows``): for each row ``r``
    in order with ``gap[r]`` false, it advances slot ``slots[r]`` by that row's bar and writes its outputs
    to ``out[r, col:col + k]``.
    """

    name: ClassVar[str]  # registry name, e.g. "rsi"
    outputs: ClassVar[tuple[str, ...]] = ("",)  # column suffixes; "" is the main column
    defaults: ClassVar[tuple] = ()  # default parameters, e.g. (14,)
    param_types: ClassVar[tuple[type, ...]] = ()  # int or float per parameter

    def __init__(self, *params) -> None:
        if len(params) > len(self.defaults):
            raise IndicatorSpecError(
                f"{self.name} takes at most {len(self.defaults)} parameters {self.defaults}, got {params}")
        super().__init__()
        self.params = tuple(params) + tuple(self.defaults[len(params):])
        self.validate()
        self.setup()

    # ---- for subclasses -------------------------------------------------------------------
    def validate(self) -> None:
        """Raise IndicatorSpecError for unusable parameters (default: every int period >= 1)."""
        for p, t in zip(self.params, self.param_types):
            if t is int and p < 1:
                raise IndicatorSpecError(f"{self.name}: period must be >= 1, got {p}")
            if t is float and not p > 0:
                raise IndicatorSpecError(f"{self.name}: parameter must be > 0, got {p}")

    def setup(self) -> None:
        """Create child blocks (composition is explicit: MACD owns its EMAs)."""

    @abstractmethod
    def kernel(self) -> tuple[Callable, tuple]:
        """The compiled row kernel and its handle (state arrays and parameters)."""

    @property
    @abstractmethod
    def lookback(self) -> int:
        """Bars consumed before the first valid output (TA-Lib's lookback where TA-Lib has one)."""

    # ---- public API -----------------------------------------------------------------------
    def run(self, rows: Rows, out: np.ndarray, col: int) -> None:
        """Advance the slots of ``rows`` in row order, writing the outputs to columns ``col``.. of ``out``;
        grows the state to fit the slots first."""
        if rows.capacity > self.capacity:
            self.grow(rows.capacity)
        fn, handle = self.kernel()
        fn(*rows.arrays(), out, col, handle)

    def update(self, slots: np.ndarray, bars: Bars) -> np.ndarray:
        """Advance the given slots by one closed bar each (in order, so a slot may repeat)."""
        out = nan_out(len(bars), len(self.outputs))
        self.run(Rows.of_bars(np.asarray(slots, np.int64), bars), out, 0)
        return out

    def batch(self, bars: Bars) -> np.ndarray:
        """Whole series of one key, shape (len(bars), len(outputs)): the kernel on fresh state."""
        out = nan_out(len(bars), len(self.outputs))
        self.fresh().run(Rows.of_bars(zeros(len(bars), np.int64), bars), out, 0)
        return out

    @property
    def label(self) -> str:
        """Column stem, ``<name>_<params joined by _>``, e.g. ``macd_12_26_9``."""
        return "_".join([self.name, *(_fmt(p) for p in self.params)])

    def column_names(self) -> list[str]:
        return [self.label if not suffix else f"{self.label}_{suffix}" for suffix in self.outputs]


def _fmt(p) -> str:
    """``2.0`` -> ``2``, ``0.02`` -> ``0.02``: labels read the way users write specs."""
    if isinstance(p, float) and p.is_integer():
        return str(int(p))
    return repr(p) if isinstance(p, float) else str(p)


def nan_out(n: int, k: int = 1) -> np.ndarray:
    """A (n, k) array of NaN, the value of every bar still in warm-up."""
    out = np.empty((n, k))
    out.fill(np.nan)  # half the cost of np.full for the small arrays of a streaming update
    return out
