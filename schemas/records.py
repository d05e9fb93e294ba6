"""The records that cross a boundary (actors, files, HTTP, feed), one pydantic model each.

Timestamps are int64 nanoseconds since the Unix epoch, UTC. Prices and sizes are float64.
Each model has a matching pyarrow schema in ``schemas.arrow``; a test keeps them in step.
"""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel, ConfigDict, Field


class Side(str, Enum):
    """Aggressor side of a trade, or direction of a signal."""

    BUY = "buy"
    SELL = "sell"
    UNKNOWN = "unknown"


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_enum_values=True)


class TradeTick(_Record):
    """One executed trade on a venue."""

    market: str = Field(description="normalised market key, e.g. BINANCE:BTCUSDT")
    ts: int = Field(description="event time, ns UTC")
    price: float = Field(gt=0)
    size: float = Field(gt=0)
    side: Side = Side.UNKNOWN
    trade_id: int = Field(default=-1, description="venue trade id, -1 when the venue gives none")


class Candle(_Record):
    """An OHLCV bar of one market and timeframe, closed by event time."""

    market: str
    timeframe: str = Field(description="e.g. 1m, 5m, 4h")
    open_ts: int = Field(description="bucket start, ns UTC")
    close_ts: int = Field(description="bucket end (exclusive), ns UTC")
    open: float
    high: float
    low: float
    close: float
    volume: float
    buy_volume: float
    sell_volume: float
    vwap: float
    trade_count: int
    gap: bool = Field(default=False, description="no trades in the bucket; prices are NaN, never invented")


class IndicatorValue(_Record):
    """One indicator output for one bar, named like ``rsi_14`` or ``macd_12_26_9_signal``."""

    market: str
    timeframe: str
    ts: int = Field(description="bar open time, ns UTC")
    name: str
    value: float


class IndicatorSnapshot(_Record):
    """All indicator outputs of one bar, with the bar's close."""

    market: str
    timeframe: str
    ts: int = Field(description="bar open time, ns UTC")
    close: float
    values: dict[str, float]


class StructureEvent(_Record):
    """A confirmed market-structure fact (swing high/low, later BOS/CHoCH, order blocks)."""

    id: str
    market: str
    timeframe: str
    kind: str = Field(description="e.g. swing_high, swing_low")
    ts: int = Field(description="open time of the bar the event refers to, ns UTC")
    confirmed_ts: int = Field(description="close time of the bar that confirmed it, ns UTC")
    price: float
    meta: dict[str, float] = Field(default_factory=dict)


class Signal(_Record):
    """A trade idea produced by a rule, with the reasons that fired and the versions that made it."""

    id: str
    market: str
    timeframe: str
    ts: int = Field(description="close time of the bar that fired the signal, ns UTC")
    kind: str = Field(description="rule name")
    side: Side
    strength: float = Field(ge=0.0, le=1.0)
    price: float
    stop: float | None = None
    target: float | None = Field(default=None, description="the first target")
    targets: list[float] = Field(default_factory=list, description="every target, nearest first")
    reasons: list[str]
    source_versions: dict[str, str]
    risk_score: float | None = Field(default=None, description="0..100 risk of the bar that fired it")
    risk: dict[str, float] = Field(default_factory=dict, description="the measures and score components behind it")
    flags: list[str] = Field(default_factory=list, description="e.g. risk_limit: above the strategy's max risk")
