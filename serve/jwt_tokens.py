"""HS256 JSON Web Tokens (RFC 7519) signed with one of several keys named by ``kid``; pure, no I/O.

Only what the API needs and nothing it can be tricked with: the header must say ``alg: HS256``
(``none`` and every other algorithm are refused before any key is looked at), the key comes from the
caller's ``kid`` table (never from the token), signatures are compared in constant time, and
``exp`` / ``iat`` are required, ``nbf`` honoured, all against a ``now`` the caller passes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import re
from collections.abc import Mapping
from typing import Any

from schemas.errors import CryptoIntelError

ALG = "HS256"
MAX_TOKEN_CHARS = 8192  # a header and a handful of claims; anything longer is not ours
_SEGMENT = re.compile(r"^[A-Za-z0-9_-]+$")


class TokenError(CryptoIntelError, ValueError):
    """Root of the token errors: the token must not be accepted."""


class MalformedTokenError(TokenError):
    """Not a compact JWS of three base64url JSON segments, or a header or claim of the wrong type."""


class AlgorithmError(TokenError):
    """The header names an algorithm other than HS256 (``none`` included)."""


class UnknownKeyIdError(TokenError):
    """The header's ``kid`` is none of the keys given."""

    def __init__(self, kid: str) -> None:
        super().__init__(f"no signing key {kid[:32]!r}")
        self.kid = kid


class BadSignatureError(TokenError):
    """The signature does not match the header and claims under the named key."""


class ExpiredTokenError(TokenError):
    """``now`` is at or past the token's ``exp``."""


class NotYetValidError(TokenError):
    """``now`` is before the token's ``nbf``, or its ``iat`` lies in the future."""


def b64url_encode(data: bytes) -> str:
    """Base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Inverse of :func:`b64url_encode`; :class:`MalformedTokenError` for anything else (padding included)."""
    if not _SEGMENT.match(text) or len(text) % 4 == 1:
        raise MalformedTokenError("a token segment is not unpadded base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise MalformedTokenError("a token segment is not unpadded base64url") from None


def looks_like_jwt(credential: str) -> bool:
    """Whether ``credential`` has the shape of a compact JWT (three base64url segments, a JSON header).

    API keys (``ci_`` + base64url) never contain a dot, so this tells the two apart without a lookup.
    """
    if not isinstance(credential, str) or len(credential) > MAX_TOKEN_CHARS or credential.count(".") != 2:
        return False
    return credential.startswith("eyJ") and all(_SEGMENT.match(p) for p in credential.split("."))


def _json(data: bytes, what: str) -> dict[str, Any]:
    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out = dict(pairs)
        if len(out) != len(pairs):  # two readers could disagree on which value counts
            raise MalformedTokenError(f"the token {what} repeats a member")
        return out
    try:
        value = json.loads(data.decode("utf-8"), object_pairs_hook=no_duplicates)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):  # nesting is bounded by MAX_TOKEN_CHARS
        raise MalformedTokenError(f"the token {what} is not JSON") from None
    if not isinstance(value, dict):
        raise MalformedTokenError(f"the token {what} is not a JSON object")
    return value


def _dump(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, allow_nan=False).encode("utf-8")


def _sign(key: bytes, signing_input: bytes) -> bytes:
    return hmac.new(key, signing_input, hashlib.sha256).digest()


def encode(claims: Mapping[str, Any], key: bytes, kid: str) -> str:
    """The compact HS256 JWT of ``claims``, signed with ``key`` and naming it ``kid`` in the header."""
    if not isinstance(key, bytes) or len(key) < 32:
        raise ValueError("an HS256 signing key must be at least 32 bytes")
    if not isinstance(kid, str) or not kid:
        raise ValueError("a signing key needs a non-empty kid")
    signing_input = f"{b64url_encode(_dump({'alg': ALG, 'typ': 'JWT', 'kid': kid}))}.{b64url_encode(_dump(claims))}"
    return f"{signing_input}.{b64url_encode(_sign(key, signing_input.encode('ascii')))}"


def header(token: str) -> dict[str, Any]:
    """The token's header, unverified (to read its ``kid``); :class:`MalformedTokenError` if it has none."""
    if not looks_like_jwt(token):
        raise MalformedTokenError("not a compact JWT (three base64url segments)")
    head = _json(b64url_decode(token.split(".", 1)[0]), "header")
    if not isinstance(head.get("kid"), str) or not head["kid"]:
        raise MalformedTokenError("the token header names no kid")
    return head


def _number(claims: dict[str, Any], name: str, required: bool) -> float | None:
    value = claims.get(name)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise MalformedTokenError(f"the token's {name} must be a number of seconds since the epoch")
    return float(value)


def verify(token: str, keys: Mapping[str, bytes], now: float, leeway_s: float = 0.0) -> dict[str, Any]:
    """The claims of ``token`` once its header, signature and times check out; a :class:`TokenError` otherwise.

    ``keys`` maps kid -> secret; ``now`` is seconds since the epoch; ``leeway_s`` allows for clock skew
    between replicas on ``exp``, ``nbf`` and ``iat``.
    """
    head = header(token)
    if head.get("alg") != ALG:
        raise AlgorithmError(f"token algorithm {str(head.get('alg'))[:16]!r} refused; only {ALG} is accepted")
    if head.get("typ", "JWT") != "JWT" or "crit" in head:
        raise MalformedTokenError("the token header has a typ or crit this verifier does not take")
    kid = head["kid"]
    key = keys.get(kid)
    if key is None:
        raise UnknownKeyIdError(kid)
    signing_input, _, signature = token.rpartition(".")
    if not hmac.compare_digest(_sign(key, signing_input.encode("ascii")), b64url_decode(signature)):
        raise BadSignatureError("the token signature does not match")
    claims = _json(b64url_decode(signing_input.split(".", 1)[1]), "claims")
    exp = _number(claims, "exp", required=True)
    iat = _number(claims, "iat", required=True)
    nbf = _number(claims, "nbf", required=False)
    if now >= exp + leeway_s:
        raise ExpiredTokenError("the token has expired")
    if nbf is not None and now + leeway_s < nbf:
        raise NotYetValidError("the token is not valid yet (nbf)")
    if now + leeway_s < iat:
        raise NotYetValidError("the token was issued in the future (iat)")
    return claims
