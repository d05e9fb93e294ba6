"""Users, hashed API keys and tiers in Postgres: create, issue, revoke, authenticate."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg

from schemas.errors import CryptoIntelError
from serve import tiers
from serve.keys import constant_time_equal, hash_key, new_api_key
from serve.tiers import Tier, UnknownRoleError, UnknownTierError, check_role

log = logging.getLogger(__name__)

__all__ = ["Accounts", "Principal", "AccountError", "DuplicateUserError", "UnknownUserError", "UnknownKeyError",
           "UnknownRoleError", "UnknownTierError"]

# usernames end up in logs and URLs: keep them printable and short
_USERNAME = re.compile(r"^[A-Za-z0-9_.@\-]{1,64}$")
_HEX = re.compile(r"^[0-9a-f]{8,64}$")
_MIN_KEY_CHARS = 32
# serialises first-admin creation across API replicas sharing one database
_BOOTSTRAP_LOCK = 0x63695F61646D696E  # "ci_admin"


class AccountError(CryptoIntelError):
    """Root of the account errors."""


class DuplicateUserError(AccountError, ValueError):
    """A user with this name already exists."""


class UnknownUserError(AccountError, LookupError):
    """No user has this name."""


class UnknownKeyError(AccountError, LookupError):
    """No active key matches this id or hash (or more than one does)."""


@dataclass(frozen=True)
class Principal:
    """Who an authenticated request acts as; carries the key's non-secret id, never the key."""

    username: str
    role: str
    tier: Tier
    key_id: str

    @property
    def is_admin(self) -> bool:
        """Whether the key has the admin role."""
        return self.role == "admin"


def _check_username(username: str) -> str:
    if not isinstance(username, str) or not _USERNAME.match(username):
        raise AccountError(f"invalid username {username!r}: use 1-64 of letters, digits, '_', '.', '@' or '-'")
    return username


def _check_key(key: str) -> str:
    if not isinstance(key, str) or len(key) < _MIN_KEY_CHARS or not key.isprintable() or " " in key:
        raise AccountError(f"an API key must be at least {_MIN_KEY_CHARS} printable characters without spaces; "
                           "generate one with serve.keys.new_api_key()")
    return key


class Accounts:
    """Account store over an asyncpg pool; every statement is parameterised."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @classmethod
    async def create(cls, dsn: str, min_size: int = 1, max_size: int = 5) -> Accounts:
        """Open a pool on ``dsn`` (tables from migration 0004 must exist)."""
        return cls(await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size))

    async def close(self) -> None:
        """Close the pool."""
        await self.pool.close()

    async def __aenter__(self) -> Accounts:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def create_user(self, username: str, email: str | None = None, tier: str = "free") -> dict[str, Any]:
        """Add a user; raises :class:`DuplicateUserError` if the name is taken."""
        _check_username(username)
        tiers.tier(tier)  # an unknown tier fails before touching the database
        try:
            row = await self.pool.fetchrow(
                "INSERT INTO users (username, email, tier) VALUES ($1, $2, $3) "
                "RETURNING username, email, tier, created_at, disabled", username, email, tier)
        except asyncpg.UniqueViolationError:
            raise DuplicateUserError(f"user {username!r} already exists; pick another name or use set_tier") from None
        log.info("created user %s (tier %s)", username, tier)
        return dict(row)

    async def issue_key(self, username: str, role: str = "user", label: str = "") -> str:
        """Create a key for ``username`` and return it; only its hash is stored, so this is the one chance to see it."""
        key = new_api_key()
        await self.register_key(username, key, role=role, label=label)
        return key

    async def register_key(self, username: str, key: str, role: str = "user", label: str = "") -> str:
        """Store the hash of a key chosen elsewhere (e.g. from the environment); returns its key id."""
        check_role(role)
        _check_key(key)
        h = hash_key(key)
        try:
            status = await self.pool.execute(
                "INSERT INTO api_keys (key_hash, username, role, label) "
                "SELECT $1, username, $3, $4 FROM users WHERE username = $2", h, username, role, label)
        except asyncpg.UniqueViolationError:
            raise AccountError("this key is already registered; issue a new one") from None
        if status != "INSERT 0 1":
            raise UnknownUserError(f"no user {username!r}; create it first with create_user")
        log.info("issued key %s for %s (role %s)", h[:8], username, role)
        return h[:8]

    async def revoke_key(self, key_id_or_hash: str) -> str:
        """Revoke one active key by its id (hash prefix, 8+ hex chars) or full hash; returns its key id."""
        ref = key_id_or_hash.lower() if isinstance(key_id_or_hash, str) else ""
        if not _HEX.match(ref):
            raise UnknownKeyError("revoke_key takes a key id (8+ hex chars, as in the logs) or a key hash; "
                                  "to revoke a plain key pass serve.keys.hash_key(key)")
        async with self.pool.acquire() as conn, conn.transaction():
            hashes = await conn.fetch("SELECT key_hash FROM api_keys WHERE starts_with(key_hash, $1) "
                                      "AND revoked_at IS NULL FOR UPDATE", ref)
            if len(hashes) != 1:
                raise UnknownKeyError(f"no active key with id {ref}" if not hashes else
                                      f"{len(hashes)} active keys start with {ref}; pass more of the hash")
            await conn.execute("UPDATE api_keys SET revoked_at = now() WHERE key_hash = $1", hashes[0]["key_hash"])
        log.info("revoked key %s", ref[:8])
        return ref[:8]

    async def set_tier(self, username: str, tier_name: str) -> None:
        """Move a user to another tier; takes effect on their next authenticated request."""
        tiers.tier(tier_name)
        await self._update_user(username, "UPDATE users SET tier = $2 WHERE username = $1", tier_name)
        log.info("user %s now on tier %s", username, tier_name)

    async def disable_user(self, username: str) -> None:
        """Disable a user: none of their keys authenticate until :meth:`enable_user`."""
        await self._update_user(username, "UPDATE users SET disabled = true WHERE username = $1")
        log.info("disabled user %s", username)

    async def enable_user(self, username: str) -> None:
        """Re-enable a disabled user."""
        await self._update_user(username, "UPDATE users SET disabled = false WHERE username = $1")
        log.info("enabled user %s", username)

    async def _update_user(self, username: str, sql: str, *args: Any) -> None:
        if await self.pool.execute(sql, username, *args) != "UPDATE 1":
            raise UnknownUserError(f"no user {username!r}; list users with list_users")

    async def authenticate(self, key: str) -> Principal | None:
        """The principal a key acts as, or None for an unknown or revoked key or a disabled user."""
        if not isinstance(key, str) or not key:
            return None
        h = hash_key(key)
        row = await self.pool.fetchrow(
            "SELECT k.key_hash, k.role, k.revoked_at, u.username, u.tier, u.disabled "
            "FROM api_keys k JOIN users u ON u.username = k.username WHERE k.key_hash = $1", h)
        # the index lookup may return early; the final decision is a constant-time compare
        if row is None or not constant_time_equal(row["key_hash"], h):
            log.debug("authentication failed: unknown key %s", h[:8])
            return None
        if row["revoked_at"] is not None or row["disabled"]:
            log.debug("authentication failed: key %s revoked or user %s disabled", h[:8], row["username"])
            return None
        try:
            principal_tier = tiers.tier(row["tier"])
            check_role(row["role"])
        except (UnknownTierError, UnknownRoleError) as e:
            # fail closed on rows written outside this module (e.g. the column default role 'reader')
            log.warning("key %s refused: %s", h[:8], e)
            return None
        return Principal(row["username"], row["role"], principal_tier, h[:8])

    async def list_users(self) -> list[dict[str, Any]]:
        """Every user with tier, state and active key count, by name."""
        rows = await self.pool.fetch(
            "SELECT u.username, u.email, u.tier, u.created_at, u.disabled, "
            "count(k.key_hash) FILTER (WHERE k.revoked_at IS NULL) AS active_keys "
            "FROM users u LEFT JOIN api_keys k ON k.username = u.username "
            "GROUP BY u.username ORDER BY u.username")
        return [dict(r) for r in rows]

    async def count_users(self) -> int:
        """Number of users, disabled ones included."""
        return await self.pool.fetchval("SELECT count(*) FROM users")

    async def bootstrap_admin(self, key: str, before_commit: Callable[[], None] | None = None) -> bool:
        """If there are no users, atomically create ``admin`` (enterprise) with ``key`` as an admin key.

        ``before_commit`` runs inside the transaction (e.g. to save the key); if it raises, nothing is
        stored. Returns False, changing nothing, when users already exist.
        """
        _check_key(key)
        h = hash_key(key)
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _BOOTSTRAP_LOCK)
            if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM users)"):
                return False
            await conn.execute("INSERT INTO users (username, tier) VALUES ('admin', 'enterprise')")
            await conn.execute("INSERT INTO api_keys (key_hash, username, role, label) "
                               "VALUES ($1, 'admin', 'admin', 'bootstrap')", h)
            if before_commit is not None:
                before_commit()
        log.info("created user admin with admin key %s", h[:8])
        return True
