"""Browser sessions in Postgres (migration 0010): passwords, signing keys, sessions and refresh tokens.

A login creates a session (``sid``) and its first refresh token; every refresh marks the presented
token used and issues the next one. Presenting a used or revoked refresh token again means it was
copied: the whole session is revoked. Refresh tokens are 256 random bits stored as SHA-256 hashes,
like API keys. Access tokens are not stored; they name their session, which is what gets revoked.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from serve.accounts import AccountError, UnknownUserError
from serve.passwords import check_password, dummy_hash, hash_password, verify_password
from serve.tiers import UnknownRoleError, check_role

log = logging.getLogger(__name__)

REFRESH_PREFIX = "cir_"
_SIGNING_LOCK = 0x63695F6A776B  # "ci_jwk": one replica creates the first signing key
SESSION_ENV = ("CRYPTO_INTEL_ACCESS_TTL_S", "CRYPTO_INTEL_REFRESH_TTL_S", "CRYPTO_INTEL_SESSION_MAX_S",
               "CRYPTO_INTEL_AUTH_TTL_S", "CRYPTO_INTEL_LOGIN_MAX_FAILURES", "CRYPTO_INTEL_LOGIN_MAX_FAILURES_IP",
               "CRYPTO_INTEL_LOGIN_WINDOW_S")


def _env_float(name: str, default: float, low: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise AccountError(f"{name}={raw!r} is not a number") from None
    if not value >= low:
        raise AccountError(f"{name} must be >= {low}, got {raw}")
    return value


@dataclass(frozen=True)
class SessionSettings:
    """Lifetimes and limits of browser sessions; every one can be set from the environment."""

    access_ttl_s: float = 900.0        # CRYPTO_INTEL_ACCESS_TTL_S: an access token's life
    refresh_ttl_s: float = 86_400.0    # CRYPTO_INTEL_REFRESH_TTL_S: unused refresh token's life (sliding)
    session_max_s: float = 604_800.0   # CRYPTO_INTEL_SESSION_MAX_S: a session's absolute life
    auth_ttl_s: float = 30.0           # CRYPTO_INTEL_AUTH_TTL_S: bound on a revocation whose push is lost
    leeway_s: float = 5.0              # clock skew allowed between replicas on exp / nbf / iat
    login_max_failures: int = 5        # CRYPTO_INTEL_LOGIN_MAX_FAILURES: per username and window
    login_max_failures_ip: int = 50    # CRYPTO_INTEL_LOGIN_MAX_FAILURES_IP: per client address and window
    login_window_s: int = 300          # CRYPTO_INTEL_LOGIN_WINDOW_S: counting window = lockout length

    @classmethod
    def from_env(cls) -> SessionSettings:
        """The settings from ``CRYPTO_INTEL_*`` variables, defaults for those unset."""
        d = cls()
        return cls(_env_float("CRYPTO_INTEL_ACCESS_TTL_S", d.access_ttl_s, 1),
                   _env_float("CRYPTO_INTEL_REFRESH_TTL_S", d.refresh_ttl_s, 1),
                   _env_float("CRYPTO_INTEL_SESSION_MAX_S", d.session_max_s, 1),
                   _env_float("CRYPTO_INTEL_AUTH_TTL_S", d.auth_ttl_s, 0.1),
                   d.leeway_s,
                   int(_env_float("CRYPTO_INTEL_LOGIN_MAX_FAILURES", d.login_max_failures, 1)),
                   int(_env_float("CRYPTO_INTEL_LOGIN_MAX_FAILURES_IP", d.login_max_failures_ip, 1)),
                   int(_env_float("CRYPTO_INTEL_LOGIN_WINDOW_S", d.login_window_s, 1)))


class SessionError(AccountError):
    """Root of the session errors."""


class InvalidCredentialsError(SessionError):
    """Wrong username or password, or a user that may not log in; one message for all of them."""


class InvalidRefreshTokenError(SessionError):
    """The refresh token is unknown, expired, or its session is over."""


class RefreshReuseError(InvalidRefreshTokenError):
    """A refresh token was presented again after use: its session has been revoked."""

    def __init__(self, sid: str) -> None:
        super().__init__("refresh token reused; the session is revoked, log in again")
        self.sid = sid


@dataclass(frozen=True)
class SigningKey:
    """One HS256 signing key; the newest unretired one signs, every unretired one verifies."""

    kid: str
    secret: bytes
    created_at: datetime


@dataclass(frozen=True)
class IssuedSession:
    """A session's identity and its new refresh token (shown once)."""

    sid: str
    username: str
    role: str
    refresh_token: str
    refresh_expires_at: datetime


def hash_refresh_token(token: str) -> str:
    """SHA-256 hex of a refresh token; the only form stored (256 random bits: nothing to brute-force)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _new_refresh_token() -> str:
    return REFRESH_PREFIX + secrets.token_urlsafe(32)


class SessionStore:
    """Passwords, signing keys, sessions and refresh tokens over an asyncpg pool."""

    def __init__(self, pool: asyncpg.Pool, settings: SessionSettings | None = None) -> None:
        self.pool = pool
        self.settings = settings or SessionSettings.from_env()

    # -- passwords -------------------------------------------------------------------------------

    async def set_password(self, username: str, password: str, role: str = "user") -> list[str]:
        """Set ``username``'s password and the role its logins get; ends the user's sessions (their sids)."""
        check_role(role)
        check_password(password)
        encoded = await asyncio.to_thread(hash_password, password)  # ~100 ms of CPU: off the event loop
        async with self.pool.acquire() as conn, conn.transaction():
            status = await conn.execute(
                "INSERT INTO user_passwords (username, hash, role) SELECT username, $2, $3 FROM users "
                "WHERE username = $1 ON CONFLICT (username) DO UPDATE SET hash = EXCLUDED.hash, "
                "role = EXCLUDED.role, updated_at = now()", username, encoded, role)
            if status != "INSERT 0 1":
                raise UnknownUserError(f"no user {username!r}; create it first")
            sids = await self._revoke_user(conn, username, "password changed")
        log.info("password set for %s (role %s); %d session(s) ended", username, role, len(sids))
        return sids

    async def verify_login(self, username: str, password: str) -> str:
        """The role a correct login of an enabled user gets; :class:`InvalidCredentialsError` otherwise.

        An unknown user is checked against a dummy hash, so both cost one scrypt.
        """
        row = await self.pool.fetchrow(
            "SELECT p.hash, p.role FROM user_passwords p JOIN users u ON u.username = p.username "
            "WHERE p.username = $1 AND NOT u.disabled", username)
        encoded = row["hash"] if row is not None else dummy_hash()
        ok = await asyncio.to_thread(verify_password, password, encoded)
        if row is None or not ok:
            raise InvalidCredentialsError("wrong username or password")
        try:
            return check_role(row["role"])
        except UnknownRoleError:
            log.warning("login of %s refused: stored role %r is unknown", username, row["role"])
            raise InvalidCredentialsError("wrong username or password") from None

    # -- sessions --------------------------------------------------------------------------------

    async def create_session(self, username: str, role: str) -> IssuedSession:
        """A new session for ``username`` with its first refresh token."""
        sid = secrets.token_hex(16)
        now = datetime.now(UTC)
        s = self.settings
        expires = now + timedelta(seconds=s.session_max_s)
        token = _new_refresh_token()
        refresh_expires = min(expires, now + timedelta(seconds=s.refresh_ttl_s))
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("INSERT INTO auth_sessions (sid, username, role, expires_at) VALUES ($1, $2, $3, $4)",
                               sid, username, role, expires)
            await conn.execute("INSERT INTO refresh_tokens (token_hash, sid, expires_at) VALUES ($1, $2, $3)",
                               hash_refresh_token(token), sid, refresh_expires)
        log.info("session %s started for %s", sid[:8], username)
        return IssuedSession(sid, username, role, token, refresh_expires)

    async def refresh(self, refresh_token: str) -> IssuedSession:
        """Use ``refresh_token`` once: it is marked used and the session's next token returned.

        A token already used or revoked revokes its whole session (:class:`RefreshReuseError`).
        """
        if not isinstance(refresh_token, str) or not refresh_token.startswith(REFRESH_PREFIX):
            raise InvalidRefreshTokenError("unknown refresh token")
        h = hash_refresh_token(refresh_token)
        now = datetime.now(UTC)
        reused = None
        async with self.pool.acquire() as conn, conn.transaction():
            # FOR UPDATE: of two concurrent uses of one token, the second sees it used (a reuse)
            row = await conn.fetchrow(
                "SELECT t.sid, t.expires_at, t.used_at, t.revoked_at, s.username, s.role, s.expires_at AS s_exp, "
                "s.revoked_at AS s_rev, u.disabled FROM refresh_tokens t JOIN auth_sessions s ON s.sid = t.sid "
                "JOIN users u ON u.username = s.username WHERE t.token_hash = $1 FOR UPDATE OF t, s", h)
            if row is None:
                raise InvalidRefreshTokenError("unknown refresh token")
            if row["used_at"] is not None or row["revoked_at"] is not None:
                if row["s_rev"] is None:
                    await self._revoke(conn, [row["sid"]], "refresh token reused")
                reused = row["sid"]
            elif row["s_rev"] is not None or row["disabled"]:
                raise InvalidRefreshTokenError("the session has ended; log in again")
            elif row["expires_at"] <= now or row["s_exp"] <= now:
                raise InvalidRefreshTokenError("the refresh token has expired; log in again")
            else:
                token = _new_refresh_token()
                expires = min(row["s_exp"], now + timedelta(seconds=self.settings.refresh_ttl_s))
                await conn.execute("UPDATE refresh_tokens SET used_at = now() WHERE token_hash = $1", h)
                await conn.execute("INSERT INTO refresh_tokens (token_hash, sid, expires_at) VALUES ($1, $2, $3)",
                                   hash_refresh_token(token), row["sid"], expires)
                return IssuedSession(row["sid"], row["username"], row["role"], token, expires)
        log.warning("refresh token of session %s reused: session revoked", reused[:8])
        raise RefreshReuseError(reused)

    async def session_of(self, refresh_token: str) -> str | None:
        """The sid a refresh token belongs to (used or not), or None."""
        if not isinstance(refresh_token, str) or not refresh_token.startswith(REFRESH_PREFIX):
            return None
        return await self.pool.fetchval("SELECT sid FROM refresh_tokens WHERE token_hash = $1",
                                        hash_refresh_token(refresh_token))

    async def revoke_session(self, sid: str, reason: str = "logout") -> bool:
        """End a session and its refresh tokens; False if it was unknown or already ended."""
        async with self.pool.acquire() as conn, conn.transaction():
            return bool(await self._revoke(conn, [sid], reason))

    async def revoke_user_sessions(self, username: str, reason: str) -> list[str]:
        """End every open session of ``username``; returns their sids."""
        async with self.pool.acquire() as conn, conn.transaction():
            return await self._revoke_user(conn, username, reason)

    async def _revoke_user(self, conn: asyncpg.Connection, username: str, reason: str) -> list[str]:
        sids = [r["sid"] for r in await conn.fetch(
            "SELECT sid FROM auth_sessions WHERE username = $1 AND revoked_at IS NULL AND expires_at > now()",
            username)]
        return await self._revoke(conn, sids, reason) if sids else []

    @staticmethod
    async def _revoke(conn: asyncpg.Connection, sids: list[str], reason: str) -> list[str]:
        done = [r["sid"] for r in await conn.fetch(
            "UPDATE auth_sessions SET revoked_at = now(), revoked_reason = $2 "
            "WHERE sid = ANY($1::text[]) AND revoked_at IS NULL RETURNING sid", sids, reason)]
        await conn.execute("UPDATE refresh_tokens SET revoked_at = now() WHERE sid = ANY($1::text[]) "
                           "AND revoked_at IS NULL", sids)
        return done

    async def recently_revoked(self) -> list[str]:
        """Sids revoked recently enough that an access token of theirs may still be unexpired."""
        horizon = self.settings.access_ttl_s + 2 * self.settings.leeway_s
        rows = await self.pool.fetch("SELECT sid FROM auth_sessions WHERE revoked_at IS NOT NULL "
                                     "AND revoked_at > now() - make_interval(secs => $1)", horizon)
        return [r["sid"] for r in rows]

    async def user_state(self, username: str) -> tuple[str, bool] | None:
        """A user's tier name and disabled flag, or None if there is no such user."""
        row = await self.pool.fetchrow("SELECT tier, disabled FROM users WHERE username = $1", username)
        return None if row is None else (row["tier"], row["disabled"])

    # -- signing keys ----------------------------------------------------------------------------

    async def signing_keys(self) -> list[SigningKey]:
        """Every unretired signing key, the one that signs (newest) first."""
        rows = await self.pool.fetch("SELECT kid, secret, created_at FROM signing_keys WHERE retired_at IS NULL "
                                     "ORDER BY created_at DESC, kid DESC")
        return [SigningKey(r["kid"], bytes(r["secret"]), r["created_at"]) for r in rows]

    async def ensure_signing_key(self) -> list[SigningKey]:
        """:meth:`signing_keys`, creating the first key when there is none."""
        keys = await self.signing_keys()
        if keys:
            return keys
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _SIGNING_LOCK)
            if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM signing_keys WHERE retired_at IS NULL)"):
                await self._insert_key(conn)
        return await self.signing_keys()

    async def rotate_signing_key(self, retire_previous: bool = False) -> tuple[str, list[str]]:
        """Make a new key the signing one; returns its kid and the kids retired now.

        Older keys keep verifying until retired: at once with ``retire_previous`` (a leaked key), else
        once they have been superseded for longer than an access token lives (nothing they signed is
        still valid).
        """
        horizon = self.settings.access_ttl_s + 2 * self.settings.leeway_s
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _SIGNING_LOCK)
            await conn.execute("UPDATE signing_keys SET superseded_at = clock_timestamp() "
                               "WHERE retired_at IS NULL AND superseded_at IS NULL")
            kid = await self._insert_key(conn)
            retired = [r["kid"] for r in await conn.fetch(
                "UPDATE signing_keys SET retired_at = clock_timestamp() WHERE retired_at IS NULL AND kid <> $1 "
                "AND ($2 OR superseded_at < clock_timestamp() - make_interval(secs => $3)) RETURNING kid",
                kid, retire_previous, horizon)]
        log.info("signing key %s now signs; retired: %s", kid, ", ".join(retired) or "none")
        return kid, retired

    async def list_signing_keys(self) -> list[dict[str, Any]]:
        """Every signing key without its secret, newest first, with whether it signs and whether it verifies."""
        rows = await self.pool.fetch("SELECT kid, created_at, superseded_at, retired_at FROM signing_keys "
                                     "ORDER BY created_at DESC, kid DESC")
        out, signer = [], None
        for r in rows:
            if signer is None and r["retired_at"] is None:
                signer = r["kid"]
            out.append({"kid": r["kid"], "created_at": r["created_at"].isoformat(),
                        "superseded_at": r["superseded_at"].isoformat() if r["superseded_at"] else None,
                        "retired_at": r["retired_at"].isoformat() if r["retired_at"] else None,
                        "signing": r["kid"] == signer, "verifying": r["retired_at"] is None})
        return out

    @staticmethod
    async def _insert_key(conn: asyncpg.Connection) -> str:
        kid = secrets.token_hex(8)
        await conn.execute("INSERT INTO signing_keys (kid, secret) VALUES ($1, $2)", kid, secrets.token_bytes(32))
        return kid
