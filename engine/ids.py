"""Deterministic ids: the same input always yields the same ids, whatever the shard or batch layout."""

from __future__ import annotations

import hashlib


def stable_id(*parts: object) -> str:
    """16-hex-digit id from the parts' text, e.g. ``stable_id("BINANCE:BTCUSDT", "1m", ts, "rule")``."""
    return hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).hexdigest()
