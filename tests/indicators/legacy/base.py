"""Base class of every indicator: vectorised streaming state per key, plus an independent batch form.

Streaming state is a set of numpy arrays with one row per *slot* (a market/timeframe key). One
``update(slots, bars)`` call advances every listed slot by one closed bar in a single vectorised
step, so a shard holding hundreds of markets pays numpy's per-call cost once per bar boundary,
not once per market. ``batch(bars)`` computes a whole series for one key with numpy over arrays.
Both must agree to 1e-12; the streaming form is O(1) per bar (window extremes are O(window)
numpy reductions).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

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


class Indicator(ABC):
    """A streaming + batch indicator. Subclasses set the class attributes and four methods."""

    name: ClassVar[str]  # registry name, e.g. "rsi"
    outputs: ClassVar[tuple[str, ...]] = ("",)  # column suffixes; "" is the main column
    defaults: ClassVar[tuple] = ()  # default parameters, e.g. (14,)
    param_types: ClassVar[tuple[type, ...]] = ()  # int or float per parameter

    def __init__(self, *params) -> None:
        if len(params) > len(self.defaults):
            raise IndicatorSpecError(
                f"{self.name} takes at most {len(self.defaults)} parameters {self.defaults}, got {params}")
        self.params = tuple(params) + tuple(self.defaults[len(params):])
        self.validate()
        self.capacity = 0
        self.s: dict[str, np.ndarray] = {}
        self.children: list[Indicator] = []
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
        """Create child indicators (composition is explicit: MACD owns its EMAs)."""

    def state_spec(self) -> StateSpec:
        """Arrays of per-slot state this indicator needs (its own, not its children's); none by default."""
        return {}

    @abstractmethod
    def step(self, slots: np.ndarray, bars: Bars) -> np.ndarray:
        """Advance ``slots`` by one bar each; return shape (len(slots), len(outputs)), NaN in warm-up."""

    @abstractmethod
    def batch(self, bars: Bars) -> np.ndarray:
        """Whole series of one key with numpy: shape (len(bars), len(outputs))."""

    @property
    @abstractmethod
    def lookback(self) -> int:
        """Bars consumed before the first valid output (TA-Lib's lookback where TA-Lib has one)."""

    # ---- public API -----------------------------------------------------------------------
    def update(self, slots: np.ndarray, bars: Bars) -> np.ndarray:
        """Advance the given slots (distinct) by one closed bar each."""
        slots = np.asarray(slots, np.int64)
        if len(slots) and slots.max() >= self.capacity:
            self.grow(int(slots.max()) + 1)
        return self.step(slots, bars)

    def grow(self, capacity: int) -> None:
        """Make room for at least ``capacity`` slots (amortised doubling)."""
        if capacity <= self.capacity:
            return
        new_cap = max(capacity, 2 * self.capacity, 8)
        for key, (tail, dtype, fill) in self.state_spec().items():
            arr = np.full((new_cap, *tail), fill, dtype=dtype)
            if key in self.s:
                arr[: self.capacity] = self.s[key]
            self.s[key] = arr
        for child in self.children:
            child.grow(new_cap)
        self.capacity = new_cap

    def reset(self, slots: np.ndarray | None = None) -> None:
        """Forget the state of ``slots`` (all when None), as if they never saw a bar."""
        spec = self.state_spec()
        for key, (_tail, _dtype, fill) in spec.items():
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
    return np.full((n, k), np.nan)
