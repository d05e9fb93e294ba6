"""Deterministic ids: the same input always yields the same ids, whatever the shard or batch layout.

``stable_id`` hashes one row of parts; ``stable_ids`` hashes whole columns at once with a compiled BLAKE2b
(RFC 7693) and gives, row by row, exactly the ids ``stable_id`` would.
"""

from __future__ import annotations

import hashlib
import sys

import numpy as np
from numba import njit

_blake2b = hashlib.blake2b


def stable_id(*parts: object) -> str:
    """16-hex-digit id from the parts' text, e.g. ``stable_id("BINANCE:BTCUSDT", "1m", ts, "rule")``."""
    return _blake2b("|".join(map(str, parts)).encode(), digest_size=8).hexdigest()


def stable_id_text(text: str) -> str:
    """``stable_id`` of parts already joined: ``stable_id_text("|".join(map(str, parts))) == stable_id(*parts)``.

    For hot paths that format the parts themselves (e.g. with an f-string of str and int parts).
    """
    return _blake2b(text.encode(), digest_size=8).hexdigest()


# --- BLAKE2b-64 (unkeyed, 8-byte digest), RFC 7693 ---------------------------------------------------------

_IV0 = np.uint64(0x6A09E667F3BCC908)
_IV1 = np.uint64(0xBB67AE8584CAA73B)
_IV2 = np.uint64(0x3C6EF372FE94F82B)
_IV3 = np.uint64(0xA54FF53A5F1D36F1)
_IV4 = np.uint64(0x510E527FADE682D1)
_IV5 = np.uint64(0x9B05688C2B3E6C1F)
_IV6 = np.uint64(0x1F83D9ABFB41BD6B)
_IV7 = np.uint64(0x5BE0CD19137E2179)
# parameter block word 0: digest length 8, key length 0, fanout 1, depth 1
_H0 = _IV0 ^ np.uint64(0x01010008)
_ALL_ONES = np.uint64(0xFFFFFFFFFFFFFFFF)
_LITTLE_ENDIAN = sys.byteorder == "little"
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


@njit(cache=True)
def _rotr(x, r):
    return (x >> np.uint64(r)) | (x << np.uint64(64 - r))


@njit(cache=True)
def _g(a, b, c, d, x, y):
    # the mixing function G on four state words (returned, so they stay in registers)
    a = a + b + x
    d = _rotr(d ^ a, 32)
    c = c + d
    b = _rotr(b ^ c, 24)
    a = a + b + y
    d = _rotr(d ^ a, 16)
    c = c + d
    b = _rotr(b ^ c, 63)
    return a, b, c, d


@njit(cache=True)
def _round(v, x):
    """One round on the state tuple ``v``; ``x`` = the message words in this round's SIGMA order."""
    v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15 = v
    v0, v4, v8, v12 = _g(v0, v4, v8, v12, x[0], x[1])
    v1, v5, v9, v13 = _g(v1, v5, v9, v13, x[2], x[3])
    v2, v6, v10, v14 = _g(v2, v6, v10, v14, x[4], x[5])
    v3, v7, v11, v15 = _g(v3, v7, v11, v15, x[6], x[7])
    v0, v5, v10, v15 = _g(v0, v5, v10, v15, x[8], x[9])
    v1, v6, v11, v12 = _g(v1, v6, v11, v12, x[10], x[11])
    v2, v7, v8, v13 = _g(v2, v7, v8, v13, x[12], x[13])
    v3, v4, v9, v14 = _g(v3, v4, v9, v14, x[14], x[15])
    return v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15


@njit(cache=True)
def _word(words, i):
    """Message word ``i``, read little-endian whatever the host's byte order."""
    w = words[i]
    if _LITTLE_ENDIAN:  # a constant: common hosts compile to a plain load
        return w
    swapped = np.uint64(0)
    for k in range(8):
        swapped = (swapped << np.uint64(8)) | ((w >> np.uint64(8 * k)) & np.uint64(0xFF))
    return swapped


@njit(cache=True)
def _compress(h, words, block, t, last):
    """The state tuple ``h`` after folding in 128-byte block number ``block`` of ``words``; ``t`` = bytes hashed
    so far."""
    i = 16 * block
    m0, m1, m2, m3 = _word(words, i), _word(words, i + 1), _word(words, i + 2), _word(words, i + 3)
    m4, m5, m6, m7 = _word(words, i + 4), _word(words, i + 5), _word(words, i + 6), _word(words, i + 7)
    m8, m9, m10, m11 = _word(words, i + 8), _word(words, i + 9), _word(words, i + 10), _word(words, i + 11)
    m12, m13, m14, m15 = _word(words, i + 12), _word(words, i + 13), _word(words, i + 14), _word(words, i + 15)
    # the counter's high word stays 0: messages are far below 2**64 bytes
    v = (h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7], _IV0, _IV1, _IV2, _IV3, _IV4 ^ t, _IV5,
         _IV6 ^ _ALL_ONES if last else _IV6, _IV7)
    # the 12 rounds, each with its message permutation SIGMA[r % 10] written out so every index is a constant
    v = _round(v, (m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15))
    v = _round(v, (m14, m10, m4, m8, m9, m15, m13, m6, m1, m12, m0, m2, m11, m7, m5, m3))
    v = _round(v, (m11, m8, m12, m0, m5, m2, m15, m13, m10, m14, m3, m6, m7, m1, m9, m4))
    v = _round(v, (m7, m9, m3, m1, m13, m12, m11, m14, m2, m6, m5, m10, m4, m0, m15, m8))
    v = _round(v, (m9, m0, m5, m7, m2, m4, m10, m15, m14, m1, m11, m12, m6, m8, m3, m13))
    v = _round(v, (m2, m12, m6, m10, m0, m11, m8, m3, m4, m13, m7, m5, m15, m14, m1, m9))
    v = _round(v, (m12, m5, m1, m15, m14, m13, m4, m10, m0, m7, m6, m3, m9, m2, m8, m11))
    v = _round(v, (m13, m11, m7, m14, m12, m1, m3, m9, m5, m0, m15, m4, m8, m6, m2, m10))
    v = _round(v, (m6, m15, m14, m9, m11, m3, m0, m8, m12, m2, m13, m7, m1, m4, m10, m5))
    v = _round(v, (m10, m2, m8, m4, m7, m6, m1, m5, m15, m11, m9, m14, m3, m12, m13, m0))
    v = _round(v, (m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15))
    v = _round(v, (m14, m10, m4, m8, m9, m15, m13, m6, m1, m12, m0, m2, m11, m7, m5, m3))
    return (h[0] ^ v[0] ^ v[8], h[1] ^ v[1] ^ v[9], h[2] ^ v[2] ^ v[10], h[3] ^ v[3] ^ v[11],
            h[4] ^ v[4] ^ v[12], h[5] ^ v[5] ^ v[13], h[6] ^ v[6] ^ v[14], h[7] ^ v[7] ^ v[15])


@njit(cache=True)
def _blake2b8(words, msg, length):
    """First state word after hashing ``msg[:length]``: its 8 little-endian bytes are the digest.

    ``msg`` is ``words`` seen as bytes, with room for the zero padding up to the next multiple of 128 bytes."""
    n_blocks = max(1, (length + 127) // 128)
    used_words = (length + 7) // 8
    for k in range(length, 8 * used_words):  # zero padding: the last word's tail bytes, then whole words
        msg[k] = 0
    for k in range(used_words, 16 * n_blocks):
        words[k] = 0
    h = (_H0, _IV1, _IV2, _IV3, _IV4, _IV5, _IV6, _IV7)
    for b in range(n_blocks - 1):
        h = _compress(h, words, b, np.uint64((b + 1) * 128), False)
    # the final block counts only the real bytes, so an empty message hashes one zero block with t = 0
    return _compress(h, words, n_blocks - 1, np.uint64(length), True)[0]


# --- messages ----------------------------------------------------------------------------------------------

_TEXT, _SIGNED, _UNSIGNED = 0, 1, 2  # how a row of ``cols`` is read: text index, int64, uint64 bits
_MAX_DIGITS = 20  # len(str(2**64 - 1)); len(str(-2**63)) is 20 too


@njit(cache=True)
def _write_uint(msg, pos, x):
    """Decimal digits of the uint64 ``x`` at ``msg[pos:]``; returns the end position."""
    end = pos
    while True:  # lowest digit first (one division per digit), then reversed in place
        msg[end] = np.uint8(48 + x % np.uint64(10))
        end += 1
        x //= np.uint64(10)
        if x == 0:
            break
    lo, hi = pos, end - 1
    while lo < hi:
        msg[lo], msg[hi] = msg[hi], msg[lo]
        lo += 1
        hi -= 1
    return end


@njit(cache=True, nogil=True)  # no GIL needed, so threads can hash batches side by side
def _hash_rows(kinds, cols, texts, text_offs, scratch_len, out):
    """Build each row's message ``part|part|...`` in a scratch buffer, hash it and write its hex id to ``out``."""
    n_parts, n = cols.shape
    words = np.empty(scratch_len // 8, dtype=np.uint64)
    msg = words.view(np.uint8)
    for i in range(n):
        pos = 0
        for p in range(n_parts):
            if p:
                msg[pos] = 124  # '|'
                pos += 1
            x = cols[p, i]
            kind = kinds[p]
            if kind == _TEXT:
                for k in range(text_offs[x], text_offs[x + 1]):  # short texts: a loop beats a slice copy
                    msg[pos] = texts[k]
                    pos += 1
            elif kind == _SIGNED and x < 0:
                msg[pos] = 45  # '-'
                # two's complement negation gives |x| even for -2**63
                pos = _write_uint(msg, pos + 1, (~np.uint64(x)) + np.uint64(1))
            else:
                pos = _write_uint(msg, pos, np.uint64(x))
        digest = _blake2b8(words, msg, pos)
        for k in range(8):
            byte = (digest >> np.uint64(8 * k)) & np.uint64(0xFF)
            out[i, 2 * k] = _HEX[byte >> np.uint64(4)]
            out[i, 2 * k + 1] = _HEX[byte & np.uint64(0xF)]


_ENCODED: dict[tuple, tuple] = {}  # table -> (its bytes, each entry's length, the longest)


class _Texts:
    """All text parts' entries in one byte buffer, each entry a global index into its offsets."""

    def __init__(self) -> None:
        self.chunks: list[np.ndarray] = []
        self.lengths: list[np.ndarray] = []
        self.count = 0

    def add(self, buf: np.ndarray, lengths: np.ndarray) -> int:
        """Append entries (their bytes back to back in ``buf``); returns the index of the first."""
        first = self.count
        self.chunks.append(buf)
        self.lengths.append(lengths)
        self.count += len(lengths)
        return first

    def add_table(self, table: list[str]) -> tuple[int, int]:
        key = tuple(table)
        cached = _ENCODED.get(key)
        if cached is None:  # a stream reuses a few tables (its markets, timeframes, kinds) on every batch
            encoded = [str(t).encode() for t in table]  # str() as stable_id applies it
            lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
            cached = (np.frombuffer(b"".join(encoded), dtype=np.uint8), lengths, int(lengths.max(initial=0)))
            if len(_ENCODED) >= 512:
                _ENCODED.clear()
            _ENCODED[key] = cached
        buf, lengths, longest = cached
        return self.add(buf, lengths), longest

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        offs = np.zeros(self.count + 1, dtype=np.int64)
        if self.count:
            np.cumsum(np.concatenate(self.lengths), out=offs[1:])
        buf = np.concatenate(self.chunks) if self.chunks else np.empty(0, dtype=np.uint8)
        return buf, offs


def _int_column(a: np.ndarray) -> tuple[int, np.ndarray]:
    if a.dtype.kind == "u" and a.dtype.itemsize == 8:
        return _UNSIGNED, a.view(np.int64)  # keeps values >= 2**63, read back as uint64
    return _SIGNED, a.astype(np.int64, copy=False)


def stable_ids(*parts: object) -> np.ndarray:
    """Ids of many rows at once: element ``i`` (dtype ``'S16'``, ASCII hex) equals ``stable_id`` of row ``i``'s parts.

    Each part is one of
      - a 1-D numpy integer array: each value as ``str(int(x))``;
      - a tuple ``(codes, table)``: integer codes into a list of strings, each row's text ``table[codes[i]]``
        (codes must lie in ``0 .. len(table) - 1``);
      - an ``'S16'`` array of ids from an earlier call, so ``stable_ids(stable_ids(a, b), "step")`` nests ids as
        ``stable_id(stable_id(a, b), "step")`` does;
      - a ``str`` or ``int``: the same text on every row.
    All arrays must have the same length, which may be 0. E.g.
    ``stable_ids((market_codes, markets), (tf_codes, ["1m", "5m"]), (kind_codes, KINDS), ts)``.
    """
    n = None
    for part in parts:
        if isinstance(part, (tuple, np.ndarray)):
            length = len(part[0]) if isinstance(part, tuple) else len(part)
            if n is not None and length != n:
                raise ValueError(f"stable_ids: array parts have different lengths ({n} and {length})")
            n = length
    if n is None:
        raise ValueError("stable_ids needs at least one array part (it sets the number of rows)")

    texts = _Texts()
    kinds = np.empty(len(parts), dtype=np.int64)
    cols = np.empty((len(parts), n), dtype=np.int64)
    max_len = max(len(parts) - 1, 0)  # separators
    for p, part in enumerate(parts):
        if isinstance(part, tuple):
            codes, table = part
            codes = np.asarray(codes)
            if codes.ndim != 1 or codes.dtype.kind not in "iu":
                raise TypeError("stable_ids: codes must be a 1-D integer array")
            if n and (codes.min() < 0 or codes.max() >= len(table)):
                raise IndexError(f"stable_ids: codes outside 0 .. {len(table) - 1}")
            first, longest = texts.add_table(table)
            kinds[p] = _TEXT
            np.add(codes, first, out=cols[p], casting="unsafe")
            max_len += longest
        elif isinstance(part, (str, int, np.integer)):
            first, longest = texts.add_table([str(part)])
            kinds[p] = _TEXT
            cols[p] = first
            max_len += longest
        elif isinstance(part, np.ndarray) and part.ndim == 1 and part.dtype == np.dtype("S16"):
            raw = np.ascontiguousarray(part).view(np.uint8)
            if not raw.all():  # numpy pads shorter strings with NULs, which the text would not contain
                raise ValueError("stable_ids: an 'S16' part must hold full 16-character ids")
            first = texts.add(raw, np.full(n, 16, dtype=np.int64))
            kinds[p] = _TEXT
            cols[p] = np.arange(first, first + n)
            max_len += 16
        elif isinstance(part, np.ndarray) and part.ndim == 1 and part.dtype.kind in "iu":
            kinds[p], cols[p] = _int_column(part)
            max_len += _MAX_DIGITS
        else:
            raise TypeError(f"stable_ids: unsupported part {type(part).__name__} "
                            f"{getattr(part, 'dtype', '')} (integer array, (codes, table), 'S16' array, str, int)")

    out = np.empty((n, 16), dtype=np.uint8)
    if n:
        buf, offs = texts.arrays()
        scratch_len = max(128, -(-max_len // 128) * 128)  # whole blocks, so padding never runs past the end
        _hash_rows(kinds, cols, buf, offs, scratch_len, out)
    return out.view("S16").reshape(n)
