"""ethereum-etl's export files: column orders, CSV/JSON value formats, and its streaming item layout."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Self

# column orders exactly as in ethereum-etl's expected_*.csv files
BLOCK_COLUMNS = ("number", "hash", "parent_hash", "nonce", "sha3_uncles", "logs_bloom", "transactions_root",
                 "state_root", "receipts_root", "miner", "difficulty", "total_difficulty", "size", "extra_data",
                 "gas_limit", "gas_used", "timestamp", "transaction_count", "base_fee_per_gas", "withdrawals_root",
                 "withdrawals")
TRANSACTION_COLUMNS = ("hash", "nonce", "block_hash", "block_number", "transaction_index", "from_address",
                       "to_address", "value", "gas", "gas_price", "input", "block_timestamp", "max_fee_per_gas",
                       "max_priority_fee_per_gas", "transaction_type")
LOG_COLUMNS = ("log_index", "transaction_hash", "transaction_index", "block_hash", "block_number", "address", "data",
               "topics")
TOKEN_TRANSFER_COLUMNS = ("token_address", "from_address", "to_address", "value", "transaction_hash", "log_index",
                          "block_number")
RECEIPT_COLUMNS = ("transaction_hash", "transaction_index", "block_hash", "block_number", "cumulative_gas_used",
                   "gas_used", "contract_address", "root", "status", "effective_gas_price", "l1_fee", "l1_gas_used",
                   "l1_gas_price", "l1_fee_scalar")

COLUMNS = {"blocks": BLOCK_COLUMNS, "transactions": TRANSACTION_COLUMNS, "logs": LOG_COLUMNS,
           "token_transfers": TOKEN_TRANSFER_COLUMNS, "receipts": RECEIPT_COLUMNS}

# ethereum-etl stream's items: the export columns plus a few, and type/item_id/item_timestamp
_RECEIPT_INTO_TX = ("cumulative_gas_used", "gas_used", "contract_address", "root", "status", "effective_gas_price",
                    "l1_fee", "l1_gas_used", "l1_gas_price", "l1_fee_scalar")
STREAM_COLUMNS = {
    "blocks": BLOCK_COLUMNS,
    "transactions": TRANSACTION_COLUMNS + tuple(f"receipt_{c}" for c in _RECEIPT_INTO_TX),
    "logs": LOG_COLUMNS + ("block_timestamp",),
    "token_transfers": TOKEN_TRANSFER_COLUMNS + ("block_timestamp", "block_hash"),
    "receipts": RECEIPT_COLUMNS,
}
_STREAM_TYPE = {"blocks": "block", "transactions": "transaction", "logs": "log", "token_transfers": "token_transfer",
                "receipts": "receipt"}


def csv_value(value: Any) -> str | int | float:
    """One CSV cell as ethereum-etl writes it: None empty, lists comma-joined, objects as compact JSON."""
    if value is None:
        return ""
    if isinstance(value, list):
        return ",".join(json.dumps(v, separators=(",", ":")) if isinstance(v, dict) else str(v) for v in value)
    return value


def with_receipt(tx: Mapping[str, Any], receipt: Mapping[str, Any] | None) -> dict[str, Any]:
    """A transaction row with its receipt's fields as ``receipt_*`` (None when no receipt was fetched)."""
    out = dict(tx)
    for c in _RECEIPT_INTO_TX:
        out[f"receipt_{c}"] = None if receipt is None else receipt.get(c)
    return out


def item_timestamp(seconds: int) -> str:
    """ethereum-etl's ``item_timestamp``: the block time as ISO 8601 UTC with a Z."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def stream_item(entity: str, row: Mapping[str, Any]) -> dict[str, Any]:
    """A row as ethereum-etl's ``stream`` command emits it: typed, with a stable item id and timestamp."""
    item: dict[str, Any] = {"type": _STREAM_TYPE[entity]}
    item.update((c, row.get(c)) for c in STREAM_COLUMNS[entity])
    if entity == "blocks":
        item["item_id"], ts = f"block_{row['hash']}", row["timestamp"]
    elif entity in ("transactions",):
        item["item_id"], ts = f"transaction_{row['hash']}", row["block_timestamp"]
    elif entity == "receipts":
        item["item_id"], ts = f"receipt_{row['transaction_hash']}", row.get("block_timestamp")
    else:
        item["item_id"] = f"{_STREAM_TYPE[entity]}_{row['transaction_hash']}_{row['log_index']}"
        ts = row.get("block_timestamp")
    item["item_timestamp"] = None if ts is None else item_timestamp(ts)
    return item


class RowWriter:
    """Writes rows of one entity to one file, CSV or JSON Lines, like ethereum-etl's exporters.

    The file exists from the start, but a CSV header is written only with the first row: a range
    without transactions gives an empty ``transactions.csv``, as ethereum-etl's does.
    """

    def __init__(self, path: Path, entity: str, fmt: str) -> None:
        if fmt not in ("csv", "json", "stream"):
            raise ValueError(f"unknown format {fmt!r}")
        self.path, self.entity, self.fmt = path, entity, fmt
        self.columns = STREAM_COLUMNS[entity] if fmt == "stream" else COLUMNS[entity]
        self.count = 0
        # open for the writer's lifetime (closed by close() or the with-block), not one with-block per row
        self._file: IO[str] = open(path, "w", encoding="utf-8", newline="")  # noqa: SIM115
        self._csv = csv.writer(self._file, lineterminator="\n") if fmt == "csv" else None

    def write(self, row: Mapping[str, Any]) -> None:
        if self._csv is not None:
            if self.count == 0:
                self._csv.writerow(self.columns)
            self._csv.writerow([csv_value(row.get(c)) for c in self.columns])
        else:
            item = stream_item(self.entity, row) if self.fmt == "stream" else {c: row.get(c) for c in self.columns}
            # the standard library, not orjson: uint256 values do not fit orjson's 64-bit integers
            self._file.write(json.dumps(item) + "\n")
        self.count += 1

    def write_all(self, rows: Iterable[Mapping[str, Any]]) -> None:
        for row in rows:
            self.write(row)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
