"""Encode an Arrow table as a PostgreSQL binary COPY stream, vectorised with numpy.

Rows whose variable-width fields have the same byte lengths share one fixed layout, so each such
group is a numpy structured array filled column by column; the groups are concatenated (row
order does not matter to COPY). Fixed-width columns never touch Python per row; text columns
cost one ``encode`` per distinct value when dictionary-encoded, one per row otherwise.
"""

from __future__ import annotations

import json
import struct

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from connectors.storage.tables import TableSpec
from schemas.errors import InputError

HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
TRAILER = struct.pack(">h", -1)
PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01T00:00:00Z in µs since the Unix epoch
_FIXED = {"timestamptz": ">i8", "float8": ">f8", "bigint": ">i8", "integer": ">i4", "boolean": "u1"}
_ARRAY_OIDS = {"text[]": 25, "float8[]": 701}


class EncodeError(InputError):
    """A value cannot be encoded for its Postgres column type."""


def numeric_binary(value: str | int) -> bytes:
    """An integer as Postgres NUMERIC binary: base-10000 digits, most significant first."""
    n = int(value)
    sign = 0x4000 if n < 0 else 0
    n = abs(n)
    digits = []
    while n:
        n, d = divmod(n, 10_000)
        digits.append(d)
    digits.reverse()
    weight = len(digits) - 1 if digits else 0
    while digits and digits[-1] == 0:  # trailing zero groups are implied by the weight
        digits.pop()
    return struct.pack(f">hhHh{len(digits)}h", len(digits), weight, sign, 0, *digits)


def _array_binary(values: list | None, pgtype: str) -> bytes | None:
    if values is None:
        return None
    oid = _ARRAY_OIDS[pgtype]
    if not values:
        return struct.pack(">iii", 0, 0, oid)
    has_null = any(v is None for v in values)
    parts = [struct.pack(">iiiii", 1, int(has_null), oid, len(values), 1)]
    for v in values:
        if v is None:
            parts.append(struct.pack(">i", -1))
        elif pgtype == "float8[]":
            parts.append(struct.pack(">id", 8, v))
        else:
            b = v.encode()
            parts.append(struct.pack(">i", len(b)) + b)
    return b"".join(parts)


def _var_column(col: pa.ChunkedArray | pa.Array, pgtype: str) -> tuple[np.ndarray, np.ndarray]:
    """Byte lengths (-1 for NULL) and the encoded values of a variable-width column."""
    if isinstance(col, pa.ChunkedArray):
        if pa.types.is_dictionary(col.type) and col.num_chunks > 1:
            col = col.cast(col.type.value_type)  # chunks may carry different dictionaries
        col = col.combine_chunks()
    if pgtype == "text" and not pa.types.is_dictionary(col.type) and not col.null_count:
        col = pc.dictionary_encode(col)  # hashing in C; then one encode per distinct value
    if pgtype == "text" and pa.types.is_dictionary(col.type):
        words = [None if w is None else w.encode() for w in col.dictionary.to_pylist()]
        lens_d = np.array([-1 if w is None else len(w) for w in words], dtype=np.int64)
        if col.null_count:
            raise EncodeError("dictionary text columns with NULL indices are not supported")
        idx = col.indices.to_numpy(zero_copy_only=False)
        words_arr = np.empty(len(words), dtype=object)
        words_arr[:] = words
        return lens_d[idx], words_arr[idx]
    values = col.to_pylist()
    if pgtype == "text":
        enc = [None if v is None else v.encode() for v in values]
    elif pgtype == "jsonb":
        enc = [None if v is None else b"\x01" + (v if isinstance(v, str) else json.dumps(v)).encode() for v in values]
    elif pgtype == "numeric":
        try:
            enc = [None if v is None else numeric_binary(v) for v in values]
        except ValueError as e:
            raise EncodeError(f"numeric column holds a non-integer value: {e}") from None
    elif pgtype in _ARRAY_OIDS:
        enc = [_array_binary(v, pgtype) for v in values]
    else:
        raise EncodeError(f"no binary encoder for Postgres type {pgtype}")
    lens = np.fromiter((-1 if b is None else len(b) for b in enc), dtype=np.int64, count=len(enc))
    enc_arr = np.empty(len(enc), dtype=object)
    enc_arr[:] = enc
    return lens, enc_arr


def _fixed_column(col: pa.ChunkedArray | pa.Array, pgtype: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Values in the big-endian wire dtype, and a NULL mask (None when there are none)."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    nulls = col.is_null().to_numpy(zero_copy_only=False) if col.null_count else None
    if pgtype == "boolean":
        vals = col.fill_null(False).to_numpy(zero_copy_only=False).astype(np.uint8)
    else:
        vals = col.fill_null(0).to_numpy(zero_copy_only=False) if col.null_count else col.to_numpy(zero_copy_only=False)
        if pgtype == "timestamptz":
            vals = vals.astype(np.int64) // 1000 - PG_EPOCH_US
        vals = vals.astype(_FIXED[pgtype])
    return vals, nulls


def _layout_groups(key_cols: list[np.ndarray], n: int) -> np.ndarray:
    """Group number (0..k-1) of each row, from the per-column byte lengths; 1-D sorts only."""
    code = np.zeros(n, np.int64)
    for col in key_cols:
        _, code = np.unique(code * (int(col.max()) + 2) + (col + 1), return_inverse=True)
        code = code.reshape(-1).astype(np.int64)
    return code


def _first_of_each(groups: np.ndarray) -> np.ndarray:
    """Index of the first row of each group number, in group order."""
    return np.unique(groups, return_index=True)[1]


def encode(spec: TableSpec, data: pa.Table) -> bytes:
    """The whole binary COPY stream (header, rows, trailer) for ``data``'s columns named in ``spec``."""
    n = data.num_rows
    types = dict(spec.columns)
    names = [c for c in spec.names if c in data.column_names]
    missing = set(spec.names) - set(names)
    if missing:
        raise EncodeError(f"{spec.name}: batch lacks columns {sorted(missing)}")
    if n == 0:
        return HEADER + TRAILER
    fixed, var = {}, {}
    for c in names:
        t = types[c]
        if t in _FIXED:
            fixed[c] = _fixed_column(data.column(c), t)
        else:
            var[c] = _var_column(data.column(c), t)
    # a row's layout is fixed once every variable field's length (or NULL) is known
    key_cols = [var[c][0] for c in names if c in var] + [np.where(fixed[c][1], -1, 0) for c in names
                                                          if c in fixed and fixed[c][1] is not None]
    inverse = _layout_groups(key_cols, n)
    uniq = np.stack(key_cols, axis=1)[_first_of_each(inverse)] if key_cols else np.zeros((1, 0), np.int64)
    out = [HEADER]
    for g, key in enumerate(uniq):
        rows = np.flatnonzero(inverse == g) if len(uniq) > 1 else np.arange(n)
        lengths = dict(zip([c for c in names if c in var] +
                           [c for c in names if c in fixed and fixed[c][1] is not None], key.tolist()))
        fields = [("n", ">i2")]
        for i, c in enumerate(names):
            size = lengths.get(c, 0) if c in var else (-1 if lengths.get(c, 0) == -1 else np.dtype(fixed[c][0].dtype).itemsize)
            fields.append((f"l{i}", ">i4"))
            if size > 0:
                fields.append((f"v{i}", fixed[c][0].dtype if c in fixed else f"S{size}"))
            lengths[c] = size
        arr = np.empty(len(rows), dtype=np.dtype(fields))
        arr["n"] = len(names)
        for i, c in enumerate(names):
            size = lengths[c]
            arr[f"l{i}"] = size
            if size <= 0:
                continue
            if c in fixed:
                arr[f"v{i}"] = fixed[c][0][rows]
            else:
                # every value in this group is exactly `size` bytes, so S{size} holds it verbatim
                arr[f"v{i}"] = var[c][1][rows].astype(f"S{size}")
        out.append(arr.tobytes())
    out.append(TRAILER)
    return b"".join(out)
