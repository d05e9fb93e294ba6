"""The records that cross a boundary (actors, files, HTTP, feed), one definition each.

Timestamps are int64 nanoseconds since the Unix epoch, UTC. Prices and sizes are float64.
Each pydantic model has a matching pyarrow schema in ``schemas.arrow``; a test keeps them in step.
:class:`ValueTransfer` is a frozen dataclass instead: it lives in the chain follower's hot path and is
never written as a row of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
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
    degraded: bool = Field(default=False, description="built while venue trades were missing (a gap not yet repaired)")


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


class BookUpdate(_Record):
    """Level-2 order-book change (or full snapshot) of one market, in the venue's own sequence numbers.

    A level with size 0 removes that price. ``first_seq``/``last_seq`` are the venue's update ids
    covered by this message (Binance ``U``/``u``, a snapshot's ``lastUpdateId`` in both); ``prev_seq``
    is the id the venue says came just before (Binance futures ``pu``, OKX ``prevSeqId``), -1 if none.
    """

    market: str
    ts: int = Field(description="venue event time, ns UTC")
    bids: list[list[float]] = Field(description="[price, size] pairs")
    asks: list[list[float]] = Field(description="[price, size] pairs")
    snapshot: bool = False
    first_seq: int = -1
    last_seq: int = -1
    prev_seq: int = -1
    checksum: int | None = Field(default=None, description="venue CRC32 of the book after this update")


class VenueEvent(_Record):
    """Something that happened to a venue connection or its data: state change, gap, repair, resync, skew."""

    venue: str
    market: str = Field(default="", description="empty when the event concerns the whole connection")
    kind: str = Field(description="state, gap, repair, unrepaired, resync, skew, reject")
    ts: int = Field(description="local wall-clock time of the event, ns UTC")
    detail: str = ""
    from_id: int = Field(default=-1, description="first missing trade/update id of a gap")
    to_id: int = Field(default=-1, description="last missing id of a gap")
    start_ts: int = Field(default=0, description="event-time start of the affected data, ns UTC")
    end_ts: int = Field(default=0, description="event-time end of the affected data, ns UTC")
    count: int = Field(default=0, description="records recovered by a repair")


class ReferencePrice(_Record):
    """A reference quote of one asset from a market-data aggregator (CoinGecko)."""

    source: str = Field(description="e.g. coingecko")
    asset: str = Field(description="the source's asset id, e.g. bitcoin")
    ts: int = Field(description="when the source last updated it (or when fetched), ns UTC")
    price_usd: float
    market_cap_usd: float | None = None
    volume_24h_usd: float | None = None
    change_24h_pct: float | None = None


class DexPair(_Record):
    """A DEX liquidity pool as reported by a DEX aggregator (DexScreener)."""

    source: str = Field(description="e.g. dexscreener")
    chain: str = Field(description="the source's chain id, e.g. ethereum")
    pair_address: str
    dex: str
    base_symbol: str
    base_address: str
    quote_symbol: str
    quote_address: str
    ts: int = Field(description="when fetched, ns UTC")
    price_usd: float | None = None
    price_native: float | None = None
    liquidity_usd: float | None = None
    volume_24h_usd: float | None = None


class MarkPrice(_Record):
    """Mark and index price of a perpetual future with its current funding rate."""

    market: str
    ts: int = Field(description="venue event time, ns UTC")
    mark_price: float
    index_price: float | None = None
    funding_rate: float | None = Field(default=None, description="per funding interval, e.g. 0.0001 = 0.01%")
    next_funding_ts: int | None = Field(default=None, description="ns UTC")


class ChainAlert(_Record):
    """An on-chain event worth attention (whale transfer, exchange flow, flagged counterparty, dormant
    wallet waking, unusual activity, new cluster link), or the retraction of one whose block was orphaned.

    One of the two records on the ``alerts`` feed channel; the other is :class:`DataQualityAlert`. Both
    carry ``id``, ``ts``, ``kind``, ``severity`` and ``message`` (what the dashboard shows); they are not
    one model because each one's JSON is fixed: a chain alert is written whole by ``model_dump_json`` to
    ``chain-alerts.jsonl`` and, minus id/kind/severity/message, as the ``payload`` of its Postgres
    ``alerts`` row, so a shared model would add ``venue``/``market`` keys to both, and a shared base class
    would reorder these fields (pydantic puts a base's fields first). Only chain alerts are stored and
    retracted: they belong to a block; a data-quality alert belongs to a venue event.
    """

    id: str = Field(description="stable: the same event on the same block always has the same id")
    chain: str
    kind: str
    ts: int = Field(description="block timestamp, ns UTC")
    block_number: int
    block_hash: str
    tx_hash: str = ""
    address: str = Field(description="the wallet the event is about")
    counterparty: str = ""
    token_address: str = Field(default="", description="empty for the chain's native coin")
    amount: str = Field(default="", description="exact integer amount in the token's base units")
    usd: float | None = None
    severity: str = "info"
    message: str = ""
    retracted: bool = Field(default=False, description="true: the event's block left the canonical chain")


class DataQualityAlert(_Record):
    """A venue data-quality event (gap, repair, resync, degraded or unrepaired data) told to operators on
    the ``alerts`` feed channel, beside :class:`ChainAlert` (see there why the two are separate models).

    Feed only: the event itself is stored as a ``venue_events`` row (:class:`VenueEvent`).
    """

    id: str = Field(description="venue:market:kind:from_id:ts of the venue event")
    ts: int = Field(description="local wall-clock time of the venue event, ns UTC")
    kind: str = Field(description="data_ + the venue event's kind, e.g. data_gap")
    severity: str
    venue: str
    market: str = Field(description="empty when the event concerns the whole connection")
    message: str


NATIVE = ""  # ValueTransfer.token of the chain's native coin (ETH on Ethereum)


class TokenTransfer(_Record):
    """One ERC-20/ERC-721 ``Transfer`` event decoded from a log, as ethereum-etl exports it: the row of a
    ``token_transfers`` file, with its block and chain.

    Not the same concept as :class:`ValueTransfer`, which is what a wallet sees move inside a block the
    follower already holds: it also covers native coin and WETH deposits/withdrawals (which emit no
    ``Transfer`` log), carries no block or chain (they come with the block's :class:`ChainBlock`), and
    keeps the value as an int for arithmetic. :meth:`ValueTransfer.of_token_transfer` converts.
    """

    chain_id: int = Field(description="EIP-155 chain id, 1 for Ethereum mainnet")
    token_address: str = Field(description="the emitting contract, lower-case hex")
    from_address: str
    to_address: str
    value: str = Field(pattern=r"^[0-9]+$",
                       description="the exact uint256 amount (or ERC-721 token id) as a decimal string: "
                                   "int64 and float64 cannot hold it")
    transaction_hash: str
    log_index: int
    block_number: int
    block_hash: str
    block_timestamp: int = Field(description="block time, seconds since the Unix epoch (the chain's unit, not ns)")


@dataclass(frozen=True)
class ValueTransfer:
    """A value movement of one block, as the wallet books apply it: native coin moved by a transaction
    (``token`` :data:`NATIVE`, ``log_index`` -1), a token ``Transfer`` log, or a WETH deposit/withdrawal
    (a mint from / burn to the zero address). Also an Etherscan account-history row's movement.

    A plain frozen dataclass, not a pydantic model: many are built per block in the follower's hot path
    and compared by the reorg tests. Its block is the :class:`ChainBlock` it travels with; see
    :class:`TokenTransfer` for the exported record of a token ``Transfer`` log.
    """

    tx_hash: str
    log_index: int  # -1 for a native transfer (the transaction itself)
    token: str  # the token contract, NATIVE for the chain's coin
    from_address: str
    to_address: str
    value: int  # exact, in the token's base units (uint256)

    @classmethod
    def of_token_transfer(cls, t: TokenTransfer) -> ValueTransfer:
        """The movement a token transfer record describes (its block and chain dropped)."""
        return cls(t.transaction_hash, t.log_index, t.token_address, t.from_address, t.to_address, int(t.value))


class ChainBlock(_Record):
    """The header facts of one block: the one block record, both of ethereum-etl rows and of the live
    follower (its reorg tracker's canonical headers, the block its transfers and alerts belong to, what
    orphaned blocks are retracted by). Frozen, so equal blocks are equal and hashable."""

    chain_id: int | None = Field(default=None, description="EIP-155 chain id, 1 for Ethereum mainnet; None where "
                                                           "the producer knows the chain only by name (the live "
                                                           "follower: its records carry the name)")
    number: int
    hash: str
    parent_hash: str
    timestamp: int = Field(description="block time, seconds since the Unix epoch (the chain's unit, not ns)")
    transaction_count: int
