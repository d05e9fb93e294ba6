"""Write records of one model to a Parquet file in row groups, in the model's Arrow schema."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel

from schemas.arrow import SCHEMAS, to_table
from schemas.batches import CandleBatch
from schemas.errors import InputError
from schemas.records import Candle


class ParquetSink:
    """Buffers records of ``model`` and writes a row group every ``row_group_size`` rows."""

    def __init__(self, path: str | Path, model: type[BaseModel], row_group_size: int = 65_536) -> None:
        if model not in SCHEMAS:
            raise InputError(f"parquet sink: no Arrow schema for {model.__name__}; known: "
                             f"{sorted(m.__name__ for m in SCHEMAS)}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.model, self.schema, self.row_group_size = model, SCHEMAS[model], row_group_size
        self._records: list[BaseModel] = []
        self._tables: list[pa.Table] = []
        self._buffered = 0
        self._writer: pq.ParquetWriter | None = None
        self.written = 0
        self._closed = False

    def write(self, records: Iterable[BaseModel] | CandleBatch) -> None:
        """Add records (or a CandleBatch when the model is Candle); full row groups go to disk."""
        if self._closed:
            raise InputError(f"parquet sink {self.path} is closed")
        if isinstance(records, CandleBatch):
            if self.model is not Candle:
                raise InputError(f"parquet sink for {self.model.__name__} cannot take candles")
            self._flush_records()
            self._tables.append(records.to_arrow())
            self._buffered += len(records)
        else:
            for r in records:
                if not isinstance(r, self.model):
                    raise InputError(f"parquet sink for {self.model.__name__} got a {type(r).__name__}")
                self._records.append(r)
            self._buffered = sum(len(t) for t in self._tables) + len(self._records)
        if self._buffered >= self.row_group_size:
            self._write_groups(final=False)

    def _flush_records(self) -> None:
        if self._records:
            self._tables.append(to_table(self._records, self.model))
            self._records = []

    def _write_groups(self, final: bool) -> None:
        self._flush_records()
        if not self._tables:
            return
        table = pa.concat_tables(self._tables)
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.path, self.schema)
        full = len(table) if final else len(table) - len(table) % self.row_group_size
        for lo in range(0, full, self.row_group_size):
            self._writer.write_table(table.slice(lo, min(self.row_group_size, full - lo)))
        self.written += full
        rest = table.slice(full)
        self._tables = [rest] if len(rest) else []
        self._buffered = len(rest)

    def flush(self) -> None:
        """Write whatever is buffered as a (possibly short) row group."""
        self._write_groups(final=True)

    def close(self) -> None:
        """Flush and finish the file (an empty file still gets the schema); closing twice is harmless."""
        if self._closed:
            return
        self.flush()
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.path, self.schema)
        self._writer.close()
        self._closed = True

    def __enter__(self) -> "ParquetSink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
