"""Append records to a JSON Lines file, one object per line, byte-stable for equal input."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel


def record_dict(record: BaseModel) -> dict:
    """A record as JSON-ready plain data, NaN and infinities as None."""
    return _finite(record.model_dump(mode="json"))


def record_line(record: BaseModel) -> str:
    """One record as a canonical JSON line: sorted keys, no spaces, NaN and infinities as null."""
    return json.dumps(record_dict(record), sort_keys=True, separators=(",", ":"), allow_nan=False) + "\n"


def _finite(value):
    # JSON has no NaN: gap candles and warm-up indicators carry null instead
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


class JsonlSink:
    """Writes pydantic records (or batches with ``to_records()``) to ``path``, appending."""

    def __init__(self, path: str | Path, append: bool = True) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a" if append else "w", encoding="utf-8", newline="\n")
        self.written = 0

    def write(self, records: BaseModel | Iterable[BaseModel]) -> int:
        """Append one record, records, or a batch's rows; return how many lines were written."""
        if isinstance(records, BaseModel):
            records = [records]
        elif hasattr(records, "to_records"):
            records = records.to_records()
        lines = [record_line(r) for r in records]
        self._file.writelines(lines)
        self.written += len(lines)
        return len(lines)

    write_many = write

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        """Flush and close; closing twice is harmless."""
        if not self._file.closed:
            self._file.close()

    def __enter__(self) -> "JsonlSink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
