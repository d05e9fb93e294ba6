"""Read Parquet, Feather/Arrow IPC, CSV and JSON files into an Arrow table, counting malformed rows.

Each reader returns the table, the malformed rows it skipped (as Rejects) and the source row
number of every table row, so later rejections can point at the line a user can open.
"""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.feather as feather
import pyarrow.parquet as pq

from engine.sources.columns import HEADERLESS
from engine.validation import Rejects
from schemas.errors import InputError

FORMATS = {".parquet": "parquet", ".pq": "parquet", ".feather": "feather", ".arrow": "feather",
           ".ipc": "feather", ".csv": "csv", ".json": "json"}


def file_format(path: Path) -> str:
    """``parquet``, ``feather``, ``csv`` or ``json`` from the file name (``.gz`` allowed for csv/json)."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
        if suffixes and FORMATS.get(suffixes[-1]) in ("csv", "json"):
            return FORMATS[suffixes[-1]]
    elif suffixes and suffixes[-1] in FORMATS:
        return FORMATS[suffixes[-1]]
    raise InputError(f"{path}: unknown file format {''.join(path.suffixes) or '(no extension)'}; "
                     "use .parquet, .feather/.arrow, .csv or .csv.gz, .json or .json.gz")


def read_table(path: Path) -> tuple[pa.Table, Rejects, np.ndarray]:
    """The file as a table, its malformed rows, and the 0-based source data row of each table row."""
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():
        raise InputError(f"{path}: not a file")
    fmt = file_format(path)
    try:
        if fmt == "parquet":
            table = pq.read_table(path)
        elif fmt == "feather":
            table = feather.read_table(path)
        elif fmt == "csv":
            return _read_csv(path)
        else:
            return _read_json(path)
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text (byte 0x{e.object[e.start]:02x} cannot be decoded); "
                         "save the file as UTF-8") from None
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError, EOFError) as e:
        raise InputError(f"{path}: cannot read as {fmt}: {e}") from e
    return table, Rejects(), np.arange(table.num_rows)


def _open_text(path: Path):
    # utf-8-sig: a byte-order mark must not end up in the first column's name
    if path.suffix.lower() == ".gz":
        return gzip.open(path, "rt", newline="", encoding="utf-8-sig")
    return open(path, newline="", encoding="utf-8-sig")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_csv(path: Path) -> tuple[pa.Table, Rejects, np.ndarray]:
    with _open_text(path) as f:
        first = next(csv.reader(f), None)
    if first is None:
        raise InputError(f"{path}: the file is empty")
    headerless = all(_is_number(x.strip()) for x in first if x.strip()) and any(x.strip() for x in first)
    if headerless:
        names = HEADERLESS.get(len(first))
        if names is None:
            raise InputError(f"{path}: no header and {len(first)} fields per row; add a header line naming "
                             f"the columns (known header-less layouts have {sorted(HEADERLESS)} fields)")
        names = list(names)
    else:
        names = [n.strip() or f"column_{i}" for i, n in enumerate(first)]
    bad: list[tuple[int | None, str]] = []

    def on_invalid(row) -> str:
        bad.append((row.number, row.text))
        return "skip"

    def read(types: dict | None) -> pa.Table:
        bad.clear()
        return pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(use_threads=False, column_names=names,
                                           skip_rows=0 if headerless else 1),
            parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=True))

    try:
        table = read(None)
    except pa.ArrowInvalid:
        # a value that breaks the inferred type (e.g. text in a number column): read all as text
        table = read({n: pa.string() for n in names})
    rejects = Rejects()
    skipped = np.array([n - (1 if headerless else 2) for n, _ in bad if n is not None], np.int64)
    rejects.add("malformed_row", len(bad), skipped)
    rows = np.setdiff1d(np.arange(table.num_rows + len(skipped)), skipped)[: table.num_rows]
    return table, rejects, rows


def _read_json(path: Path) -> tuple[pa.Table, Rejects, np.ndarray]:
    try:
        with _open_text(path) as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError, EOFError, gzip.BadGzipFile) as e:
        raise InputError(f"{path}: not valid JSON: {e}") from e
    rejects = Rejects()
    rows = None
    if isinstance(data, list) and data and all(isinstance(r, list) for r in data):
        width = max(set(map(len, data)), key=[len(r) for r in data].count)
        names = HEADERLESS.get(width)
        if names is None:
            raise InputError(f"{path}: JSON rows of {width} values; known layouts have {sorted(HEADERLESS)}")
        good = np.array([len(r) == width for r in data])
        rejects.add("malformed_row", int((~good).sum()), np.flatnonzero(~good))
        rows = np.flatnonzero(good)
        kept = [r for r, ok in zip(data, good) if ok]
        columns = {n: [r[i] for r in kept] for i, n in enumerate(names)}
    elif isinstance(data, list) and data and all(isinstance(r, dict) for r in data):
        keys = list(dict.fromkeys(k for r in data for k in r))
        columns = {k: [r.get(k) for r in data] for k in keys}
    elif isinstance(data, dict) and data and all(isinstance(v, (dict, list)) for v in data.values()):
        # pandas' to_json layouts: {"col": {"0": v, ...}} or {"col": [v, ...]}
        columns = {k: list(v.values()) if isinstance(v, dict) else v for k, v in data.items()}
        if len({len(v) for v in columns.values()}) != 1:
            raise InputError(f"{path}: JSON columns have different lengths")
    else:
        raise InputError(f"{path}: JSON layout not recognised: expected a list of rows, a list of objects "
                         "or an object of columns holding trades or candles")
    table = pa.table({k: _json_column(v) for k, v in columns.items()})
    return table, rejects, np.arange(table.num_rows) if rows is None else rows


def _json_column(values: list) -> pa.Array:
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
        # mixed types: text lets the converters decide value by value
        return pa.array([None if v is None else str(v) for v in values], pa.string())

