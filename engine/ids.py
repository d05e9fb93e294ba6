"""Deterministic ids: the same input always yields the same ids, whatever the shard or batch layout."""

from __future__ import annotations

import hashlib

_blake2b = hashlib.blake2b


def stable_id(*parts: object) -> str:
    """16-hex-digit id from the parts' text, e.g. ``stable_id("BINANCE:BTCUSDT", "1m", ts, "rule")``."""
    return _blake2b("|".join(map(str, parts)).encode(), digest_size=8).hexdigest()


def stable_id_text(text: str) -> str:
    """``stable_id`` of parts already joined: ``stable_id_text("|".join(map(str, parts))) == stable_id(*parts)``.

    For hot paths that format the parts themselves (e.g. with an f-string of str and int parts).
    """
    return _blake2b(text.encode(), digest_size=8).hexdigest()
