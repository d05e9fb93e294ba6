"""The Postgres tables the writers fill: columns, types and natural keys, matching migrations/.

A test compares these specs with ``information_schema`` after migrating, so they cannot drift.
Inside the engine a batch of rows for a table is an Arrow table with these column names; times
are int64 ns, NUMERIC amounts are decimal strings, jsonb values are JSON text.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

# Postgres type -> Arrow type of the column inside the engine
ARROW_TYPES = {
    "text": pa.string(),
    "timestamptz": pa.int64(),
    "float8": pa.float64(),
    "bigint": pa.int64(),
    "integer": pa.int32(),
    "boolean": pa.bool_(),
    "jsonb": pa.string(),
    "numeric": pa.string(),
    "text[]": pa.list_(pa.string()),
    "float8[]": pa.list_(pa.float64()),
}


@dataclass(frozen=True)
class TableSpec:
    """A table's columns (name, Postgres type), natural key and time column."""

    name: str
    columns: tuple[tuple[str, str], ...]
    key: tuple[str, ...]
    time: str | None = None

    @property
    def names(self) -> list[str]:
        return [c for c, _ in self.columns]

    @property
    def arrow_schema(self) -> pa.Schema:
        return pa.schema([pa.field(c, ARROW_TYPES[t]) for c, t in self.columns])


def _spec(name: str, columns: str, key: str, time: str | None = None) -> TableSpec:
    cols = tuple(tuple(part.split(":")) for part in columns.split())
    return TableSpec(name, cols, tuple(key.split()), time)  # type: ignore[arg-type]


TABLES: dict[str, TableSpec] = {t.name: t for t in (
    _spec("markets", "market:text venue:text", "market"),
    _spec("candles", "market:text timeframe:text open_ts:timestamptz close_ts:timestamptz open:float8 "
                     "high:float8 low:float8 close:float8 volume:float8 buy_volume:float8 sell_volume:float8 "
                     "vwap:float8 trade_count:bigint gap:boolean degraded:boolean", "market timeframe open_ts",
          "open_ts"),
    _spec("venue_events", "venue:text market:text kind:text ts:timestamptz detail:text from_id:bigint to_id:bigint "
                          "start_ts:bigint end_ts:bigint count:bigint", "venue market kind ts from_id"),
    _spec("trades", "market:text ts:timestamptz trade_id:bigint price:float8 size:float8 side:text",
          "market trade_id ts", "ts"),
    _spec("indicator_snapshots", "market:text timeframe:text ts:timestamptz close:float8 values:jsonb",
          "market timeframe ts", "ts"),
    _spec("structure_events", "id:text market:text timeframe:text kind:text ts:timestamptz "
                              "confirmed_ts:timestamptz price:float8 meta:jsonb", "id kind confirmed_ts",
          "confirmed_ts"),
    _spec("signals", "id:text market:text timeframe:text ts:timestamptz kind:text side:text strength:float8 "
                     "price:float8 stop:float8 target:float8 targets:float8[] reasons:text[] "
                     "source_versions:jsonb risk_score:float8 risk:jsonb flags:text[]", "id ts", "ts"),
    _spec("risk_scores", "market:text timeframe:text ts:timestamptz score:float8 components:jsonb",
          "market timeframe ts", "ts"),
    _spec("blocks", "chain:text number:bigint hash:text parent_hash:text ts:timestamptz tx_count:integer "
                    "canonical:boolean", "chain hash ts", "ts"),
    _spec("transactions", "chain:text hash:text block_hash:text block_number:bigint block_ts:timestamptz "
                          "tx_index:integer from_address:text to_address:text value:numeric gas_used:bigint",
          "chain block_hash hash block_ts", "block_ts"),
    _spec("token_transfers", "chain:text block_hash:text log_index:integer block_number:bigint "
                             "block_ts:timestamptz tx_hash:text token_address:text from_address:text "
                             "to_address:text value:numeric", "chain block_hash log_index block_ts", "block_ts"),
    _spec("alerts", "id:text ts:timestamptz kind:text severity:text chain:text market:text address:text "
                    "message:text payload:jsonb", "id ts", "ts"),
    _spec("wallet_balances", "chain:text address:text token_address:text block_number:bigint balance:numeric",
          "chain address token_address block_number"),
)}


def table(name: str) -> TableSpec:
    """The spec of a table the writers know, or a clear error."""
    try:
        return TABLES[name]
    except KeyError:
        raise KeyError(f"unknown table {name!r}; writable tables: {', '.join(sorted(TABLES))}") from None
