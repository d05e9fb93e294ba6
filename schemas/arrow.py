"""pyarrow schemas matching the pydantic records field by field (tests/test_schemas.py checks)."""

from __future__ import annotations

import pyarrow as pa

from schemas.records import (
    BookUpdate,
    Candle,
    ChainAlert,
    ChainBlock,
    DataQualityAlert,
    DexPair,
    IndicatorSnapshot,
    IndicatorValue,
    MarkPrice,
    ReferencePrice,
    Signal,
    StructureEvent,
    TokenTransfer,
    TradeTick,
    VenueEvent,
)

TRADE_TICK = pa.schema([
    ("market", pa.string()), ("ts", pa.int64()), ("price", pa.float64()), ("size", pa.float64()),
    ("side", pa.string()), ("trade_id", pa.int64()),
])

CANDLE = pa.schema([
    ("market", pa.string()), ("timeframe", pa.string()), ("open_ts", pa.int64()), ("close_ts", pa.int64()),
    ("open", pa.float64()), ("high", pa.float64()), ("low", pa.float64()), ("close", pa.float64()),
    ("volume", pa.float64()), ("buy_volume", pa.float64()), ("sell_volume", pa.float64()),
    ("vwap", pa.float64()), ("trade_count", pa.int64()), ("gap", pa.bool_()), ("degraded", pa.bool_()),
])

INDICATOR_VALUE = pa.schema([
    ("market", pa.string()), ("timeframe", pa.string()), ("ts", pa.int64()), ("name", pa.string()),
    ("value", pa.float64()),
])

INDICATOR_SNAPSHOT = pa.schema([
    ("market", pa.string()), ("timeframe", pa.string()), ("ts", pa.int64()), ("close", pa.float64()),
    ("values", pa.map_(pa.string(), pa.float64())),
])

STRUCTURE_EVENT = pa.schema([
    ("id", pa.string()), ("market", pa.string()), ("timeframe", pa.string()), ("kind", pa.string()),
    ("ts", pa.int64()), ("confirmed_ts", pa.int64()), ("price", pa.float64()),
    ("meta", pa.map_(pa.string(), pa.float64())),
])

SIGNAL = pa.schema([
    ("id", pa.string()), ("market", pa.string()), ("timeframe", pa.string()), ("ts", pa.int64()),
    ("kind", pa.string()), ("side", pa.string()), ("strength", pa.float64()), ("price", pa.float64()),
    ("stop", pa.float64()), ("target", pa.float64()), ("targets", pa.list_(pa.float64())),
    ("reasons", pa.list_(pa.string())),
    ("source_versions", pa.map_(pa.string(), pa.string())), ("risk_score", pa.float64()),
    ("risk", pa.map_(pa.string(), pa.float64())), ("flags", pa.list_(pa.string())),
])

BOOK_UPDATE = pa.schema([
    ("market", pa.string()), ("ts", pa.int64()), ("bids", pa.list_(pa.list_(pa.float64()))),
    ("asks", pa.list_(pa.list_(pa.float64()))), ("snapshot", pa.bool_()), ("first_seq", pa.int64()),
    ("last_seq", pa.int64()), ("prev_seq", pa.int64()), ("checksum", pa.int64()),
])

VENUE_EVENT = pa.schema([
    ("venue", pa.string()), ("market", pa.string()), ("kind", pa.string()), ("ts", pa.int64()),
    ("detail", pa.string()), ("from_id", pa.int64()), ("to_id", pa.int64()), ("start_ts", pa.int64()),
    ("end_ts", pa.int64()), ("count", pa.int64()),
])

REFERENCE_PRICE = pa.schema([
    ("source", pa.string()), ("asset", pa.string()), ("ts", pa.int64()), ("price_usd", pa.float64()),
    ("market_cap_usd", pa.float64()), ("volume_24h_usd", pa.float64()), ("change_24h_pct", pa.float64()),
])

DEX_PAIR = pa.schema([
    ("source", pa.string()), ("chain", pa.string()), ("pair_address", pa.string()), ("dex", pa.string()),
    ("base_symbol", pa.string()), ("base_address", pa.string()), ("quote_symbol", pa.string()),
    ("quote_address", pa.string()), ("ts", pa.int64()), ("price_usd", pa.float64()),
    ("price_native", pa.float64()), ("liquidity_usd", pa.float64()), ("volume_24h_usd", pa.float64()),
])

MARK_PRICE = pa.schema([
    ("market", pa.string()), ("ts", pa.int64()), ("mark_price", pa.float64()), ("index_price", pa.float64()),
    ("funding_rate", pa.float64()), ("next_funding_ts", pa.int64()),
])

CHAIN_ALERT = pa.schema([
    ("id", pa.string()), ("chain", pa.string()), ("kind", pa.string()), ("ts", pa.int64()),
    ("block_number", pa.int64()), ("block_hash", pa.string()), ("tx_hash", pa.string()), ("address", pa.string()),
    ("counterparty", pa.string()), ("token_address", pa.string()), ("amount", pa.string()), ("usd", pa.float64()),
    ("severity", pa.string()), ("message", pa.string()), ("retracted", pa.bool_()),
])

DATA_QUALITY_ALERT = pa.schema([
    ("id", pa.string()), ("ts", pa.int64()), ("kind", pa.string()), ("severity", pa.string()),
    ("venue", pa.string()), ("market", pa.string()), ("message", pa.string()),
])

# value is the exact uint256 as a decimal string: no Arrow integer type holds 256 bits
TOKEN_TRANSFER = pa.schema([
    ("chain_id", pa.int64()), ("token_address", pa.string()), ("from_address", pa.string()),
    ("to_address", pa.string()), ("value", pa.string()), ("transaction_hash", pa.string()),
    ("log_index", pa.int64()), ("block_number", pa.int64()), ("block_hash", pa.string()),
    ("block_timestamp", pa.int64()),
])

CHAIN_BLOCK = pa.schema([
    ("chain_id", pa.int64()), ("number", pa.int64()), ("hash", pa.string()), ("parent_hash", pa.string()),
    ("timestamp", pa.int64()), ("transaction_count", pa.int64()),
])

SCHEMAS: dict[type, pa.Schema] = {
    TradeTick: TRADE_TICK, Candle: CANDLE, IndicatorValue: INDICATOR_VALUE,
    IndicatorSnapshot: INDICATOR_SNAPSHOT, StructureEvent: STRUCTURE_EVENT, Signal: SIGNAL,
    BookUpdate: BOOK_UPDATE, VenueEvent: VENUE_EVENT, ReferencePrice: REFERENCE_PRICE, DexPair: DEX_PAIR,
    MarkPrice: MARK_PRICE, ChainAlert: CHAIN_ALERT, DataQualityAlert: DATA_QUALITY_ALERT,
    TokenTransfer: TOKEN_TRANSFER, ChainBlock: CHAIN_BLOCK,
}


def to_table(records: list, model: type) -> pa.Table:
    """Arrow table of pydantic records of one model, in that model's schema."""
    schema = SCHEMAS[model]
    rows = [r.model_dump(mode="json") for r in records]
    columns = {f.name: [row[f.name] for row in rows] for f in schema}
    for f in schema:
        if pa.types.is_map(f.type):
            columns[f.name] = [list(v.items()) for v in columns[f.name]]
    return pa.Table.from_pydict(columns, schema=schema)
