"""``stable_ids`` gives, row by row, exactly the ids of ``stable_id`` (hashlib's BLAKE2b) for every kind of part."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.ids import stable_id, stable_id_text, stable_ids

INT64 = st.integers(-(2**63), 2**63 - 1)
# texts of every size class: short, around one 128-byte block, past two blocks; non-ASCII widens the byte length
TEXTS = st.one_of(st.text(max_size=20), st.text(min_size=100, max_size=300), st.just(""),
                  st.sampled_from(["BINANCE:BTCUSDT", "1m", "swing_high", "é|ü", "日本語", "🚀" * 40]))


def expected(columns: list[list[object]], n: int) -> list[str]:
    return [stable_id(*(col[i] for col in columns)) for i in range(n)]


@st.composite
def parts_and_rows(draw):
    """Random parts for ``stable_ids`` and, per part, the Python values ``stable_id`` would get on each row."""
    n = draw(st.integers(0, 12))
    parts, columns = [], []
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["int64", "small_int", "uint64", "table", "str", "int", "ids"]))
        if kind == "int64":
            values = draw(st.lists(INT64, min_size=n, max_size=n))
            parts.append(np.array(values, dtype=np.int64))
        elif kind == "small_int":
            dtype = draw(st.sampled_from([np.int8, np.int16, np.int32, np.uint8, np.uint16, np.uint32]))
            info = np.iinfo(dtype)
            values = draw(st.lists(st.integers(int(info.min), int(info.max)), min_size=n, max_size=n))
            parts.append(np.array(values, dtype=dtype))
        elif kind == "uint64":
            values = draw(st.lists(st.integers(0, 2**64 - 1), min_size=n, max_size=n))
            parts.append(np.array(values, dtype=np.uint64))
        elif kind == "table":
            table = draw(st.lists(TEXTS, min_size=1, max_size=5))
            codes = draw(st.lists(st.integers(0, len(table) - 1), min_size=n, max_size=n))
            parts.append((np.array(codes, dtype=np.int64), table))
            values = [table[c] for c in codes]
        elif kind == "str":
            parts.append(draw(TEXTS))
            values = [parts[-1]] * n
        elif kind == "int":
            parts.append(draw(INT64))
            values = [parts[-1]] * n
        else:  # ids of an earlier call, hashed from random ints
            seeds = draw(st.lists(INT64, min_size=n, max_size=n))
            parts.append(stable_ids(np.array(seeds, dtype=np.int64), "seed"))
            values = [stable_id(s, "seed") for s in seeds]
        columns.append(values)
    if not any(isinstance(p, (np.ndarray, tuple)) for p in parts):  # the row count comes from an array part
        values = draw(st.lists(INT64, min_size=n, max_size=n))
        parts.append(np.array(values, dtype=np.int64))
        columns.append(values)
    return parts, columns, n


@settings(max_examples=200, deadline=None)
@given(parts_and_rows())
def test_equals_stable_id_row_by_row(case):
    parts, columns, n = case
    ids = stable_ids(*parts)
    assert ids.dtype == np.dtype("S16") and ids.shape == (n,)
    assert ids.astype(str).tolist() == expected(columns, n)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(TEXTS, INT64), min_size=1, max_size=30))
def test_text_and_int_rows(rows):
    table = sorted({t for t, _ in rows})
    codes = np.array([table.index(t) for t, _ in rows])
    ints = np.array([x for _, x in rows], dtype=np.int64)
    ids = stable_ids((codes, table), ints, "rule")
    assert ids.astype(str).tolist() == [stable_id(t, x, "rule") for t, x in rows]


def test_every_message_length_across_block_boundaries():
    """Messages of 0..600 bytes: every padding case and the final-block counter of 1 to 5 blocks."""
    table = ["x" * k for k in range(601)]
    codes = np.arange(len(table))
    assert stable_ids((codes, table)).astype(str).tolist() == [stable_id(t) for t in table]
    # the same with several parts, so separators and digits straddle block edges
    ids = stable_ids((codes, table), codes, (codes[::-1].copy(), table))
    assert ids.astype(str).tolist() == [stable_id(table[k], k, table[600 - k]) for k in codes]


def test_int_formatting_extremes():
    values = [0, -1, 1, 9, 10, -10, 99, 100, 10**18, -(10**18), 2**63 - 1, -(2**63), -(2**63) + 1]
    ids = stable_ids(np.array(values, dtype=np.int64))
    assert ids.astype(str).tolist() == [stable_id(v) for v in values]
    unsigned = [0, 1, 2**63 - 1, 2**63, 2**64 - 1]
    ids = stable_ids(np.array(unsigned, dtype=np.uint64))
    assert ids.astype(str).tolist() == [stable_id(v) for v in unsigned]
    small = np.array([-128, -1, 0, 127], dtype=np.int8)
    assert stable_ids(small).astype(str).tolist() == [stable_id(int(v)) for v in small]


def test_typical_event_ids_and_nesting():
    markets = ["BINANCE:BTCUSDT", "BINANCE:ETHUSDT", "OKX:SOL-USDT-SWAP"]
    tfs = ["1m", "5m"]
    kinds = ["swing_high", "swing_low", "fvg_bull"]
    rng = np.random.default_rng(7)
    n = 2_000
    mc, tc, kc = rng.integers(0, 3, n), rng.integers(0, 2, n), rng.integers(0, 3, n)
    ts = rng.integers(1_600_000_000_000, 1_800_000_000_000, n)
    base = stable_ids((mc, markets), (tc, tfs), (kc, kinds), ts)
    ref = [stable_id(markets[a], tfs[b], kinds[c], int(d)) for a, b, c, d in zip(mc, tc, kc, ts)]
    assert base.astype(str).tolist() == ref
    # the f-string form the hot paths use is the same id
    assert ref[0] == stable_id_text(f"{markets[mc[0]]}|{tfs[tc[0]]}|{kinds[kc[0]]}|{ts[0]}")
    # ids feed later calls without decoding, in any position, with other 'S16' parts
    formed = stable_ids(base, "formed")
    assert formed.astype(str).tolist() == [stable_id(r, "formed") for r in ref]
    mixed = stable_ids("pool", base, ts, formed)
    assert mixed.astype(str).tolist() == [stable_id("pool", r, int(t), stable_id(r, "formed"))
                                          for r, t in zip(ref, ts)]
    assert stable_ids(stable_ids(base, "a"), "b")[5].decode() == stable_id(stable_id(ref[5], "a"), "b")


def test_str_and_int_constants():
    codes = np.array([0, 1, 0])
    ids = stable_ids("BINANCE:BTCUSDT", (codes, ["1m", "5m"]), 42, "")
    assert ids.astype(str).tolist() == [stable_id("BINANCE:BTCUSDT", tf, 42, "") for tf in ["1m", "5m", "1m"]]


def test_strided_inputs():
    ts = np.arange(-50, 50, dtype=np.int64)[::3]
    codes = np.arange(100)[::-3][: len(ts)]
    table = [f"m{k}" for k in range(100)]
    ids = stable_ids((codes, table), ts)
    assert ids.astype(str).tolist() == [stable_id(table[c], int(t)) for c, t in zip(codes, ts)]
    assert stable_ids(ids[::2], "x").astype(str).tolist() == [stable_id(s, "x") for s in ids[::2].astype(str)]


def test_empty_input():
    empty = np.empty(0, dtype=np.int64)
    for parts in [(empty,), (empty, "x"), ((empty, ["a"]), empty), ((empty, []),), (np.empty(0, dtype="S16"),)]:
        ids = stable_ids(*parts)
        assert ids.dtype == np.dtype("S16") and ids.shape == (0,)
        assert ids.astype(str).tolist() == []
    assert stable_ids(stable_ids(empty), "formed").shape == (0,)


def test_bad_parts_are_rejected():
    with pytest.raises(ValueError, match="different lengths"):
        stable_ids(np.arange(3), np.arange(4))
    with pytest.raises(ValueError, match="at least one array"):
        stable_ids("a", 1)
    with pytest.raises(IndexError):
        stable_ids((np.array([0, 2]), ["a", "b"]))
    with pytest.raises(IndexError):
        stable_ids((np.array([-1]), ["a", "b"]))
    with pytest.raises(TypeError):
        stable_ids(np.array([1.5]))
    with pytest.raises(TypeError):
        stable_ids(np.array([True]))
    with pytest.raises(ValueError, match="full 16-character"):
        stable_ids(np.array([b"abc"], dtype="S16"))
