"""API key generation, hashing, non-secret ids and redaction; no I/O."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

PREFIX = "ci_"
# a "ci_" token long enough to be a key (or a truncated one), not part of a longer word
_KEY_LIKE = re.compile(r"(?<![A-Za-z0-9_\-])ci_[A-Za-z0-9_\-]{8,}")


def new_api_key() -> str:
    """A fresh random key: ``ci_`` + 32 random bytes, URL-safe base64 (256 bits)."""
    return PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """SHA-256 hex of the key; the only form of a key that is ever stored."""
    if not isinstance(key, str) or not key:
        raise ValueError("an API key must be a non-empty string")
    # a plain hash suffices: keys carry 256 random bits, so there is nothing to brute-force
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def key_id(key: str) -> str:
    """Short non-secret id of a key (first 8 hex chars of its hash), safe for logs and metrics."""
    return hash_key(key)[:8]


def constant_time_equal(a: str, b: str) -> bool:
    """String comparison whose time does not depend on where the strings differ."""
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def redact(text: str) -> str:
    """``text`` with anything that looks like a ``ci_...`` key replaced by ``ci_***``."""
    return _KEY_LIKE.sub(PREFIX + "***", text)
