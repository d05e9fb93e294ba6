"""Password hashing with the standard library's scrypt; pure, no I/O.

A stored hash is one string, ``scrypt$ln=15,r=8,p=1$SALT$HASH`` (salt and hash unpadded base64url),
so the parameters travel with it and can be raised later without breaking older hashes.
Defaults: N = 2**15, r = 8, p = 1 (32 MiB and roughly 50-100 ms per hash on one core), a random
16-byte salt per password, a 32-byte derived key.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from functools import lru_cache

from schemas.errors import CryptoIntelError
from serve.jwt_tokens import b64url_decode, b64url_encode

SCHEME = "scrypt"
LOG2_N, R, P = 15, 8, 1
SALT_BYTES, HASH_BYTES = 16, 32
MIN_CHARS, MAX_CHARS = 8, 1024
# stored parameters are read back from the database: bound them so a bad row cannot exhaust memory
_MAX_LOG2_N, _MAX_R, _MAX_P = 20, 16, 4
_ENCODED = re.compile(r"^scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d)\$([A-Za-z0-9_-]+)\$([A-Za-z0-9_-]+)$")


class PasswordPolicyError(CryptoIntelError, ValueError):
    """A new password is too short, too long or not text."""


def check_password(password: str) -> str:
    """``password`` if it may be set: MIN_CHARS..MAX_CHARS printable characters."""
    if not isinstance(password, str) or not MIN_CHARS <= len(password) <= MAX_CHARS or not password.isprintable():
        raise PasswordPolicyError(f"a password must be {MIN_CHARS} to {MAX_CHARS} printable characters")
    return password


def _derive(password: str, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    n = 1 << log2_n
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=HASH_BYTES,
                          maxmem=129 * r * n * p + (1 << 20))


def hash_password(password: str, log2_n: int = LOG2_N, r: int = R, p: int = P) -> str:
    """The encoded scrypt hash of ``password`` with a fresh random salt."""
    check_password(password)
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _derive(password, salt, log2_n, r, p)
    return f"{SCHEME}$ln={log2_n},r={r},p={p}${b64url_encode(salt)}${b64url_encode(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    """Whether ``password`` matches ``encoded`` (constant-time compare); False for a malformed hash."""
    m = _ENCODED.match(encoded) if isinstance(encoded, str) else None
    if m is None or not isinstance(password, str) or len(password) > MAX_CHARS:
        return False
    log2_n, r, p = int(m.group(1)), int(m.group(2)), int(m.group(3))
    if not (1 <= log2_n <= _MAX_LOG2_N and 1 <= r <= _MAX_R and 1 <= p <= _MAX_P):
        return False
    try:
        salt, expected = b64url_decode(m.group(4)), b64url_decode(m.group(5))
    except ValueError:
        return False
    return hmac.compare_digest(_derive(password, salt, log2_n, r, p), expected)


@lru_cache(maxsize=1)
def dummy_hash() -> str:
    """A hash no password is known for, with the default parameters: verifying an unknown user's
    login against it costs what a real check costs, so the answer's timing does not tell them apart."""
    return hash_password(secrets.token_urlsafe(24))


def generate_password() -> str:
    """A random password of 24 URL-safe characters (144 bits)."""
    return secrets.token_urlsafe(18)
