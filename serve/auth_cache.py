"""Who a request acts as, per process: API keys and session access tokens to principals, with no
per-request network round trip and revocations pushed to every process over Redis pub/sub.

- API keys: a verified key's principal is cached by the key's hash for ``auth_ttl_s``.
- Access tokens (HS256 JWTs): verified against the signing keys cached here (reloaded from Postgres on
  an unknown ``kid``, at most once a second), their session checked against a local set of revoked
  sids, the user's tier and disabled flag cached like a key's principal.
- Revocations (a key revoked, a user disabled or moved to another tier, a session ended, a signing
  key rotated or retired) are published on ``RedisKeys.auth_events()``; every process drops what it
  cached at once. Each process also re-reads the revoked sids and signing keys from Postgres when it
  (re)subscribes and every ``auth_ttl_s``.

Bound: a revocation takes effect everywhere within the pub/sub delivery time (milliseconds); when the
push is lost it still takes effect within ``auth_ttl_s`` (default 30 s, ``CRYPTO_INTEL_AUTH_TTL_S``).
A process that has not re-read Postgres for ``2 * auth_ttl_s`` refuses access tokens until it has.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import random
import secrets
import time

import redis.asyncio as aioredis

from connectors.storage.redis_keys import RedisKeys
from serve import jwt_tokens, tiers
from serve.accounts import Accounts, Principal
from serve.keys import hash_key
from serve.sessions import IssuedSession, SessionSettings, SessionStore, SigningKey
from serve.tiers import UnknownRoleError, UnknownTierError, check_role

log = logging.getLogger(__name__)

ISSUER = "crypto-intel"
CACHE_SIZE = 10_000
KEY_RELOAD_MIN_S = 1.0  # unknown kids (garbage tokens included) reload the keys at most this often
EVENT_KINDS = ("key", "user", "sid", "signing_keys")


def session_key_id(sid: str) -> str:
    """The non-secret id a session's principal carries (logs, rate-limit buckets), like a key's id."""
    return f"sid-{sid[:8]}"


class AuthCache:
    """One process's authentication state; :meth:`authenticate` takes an API key or an access token."""

    def __init__(self, accounts: Accounts, redis_url: str, keys: RedisKeys,
                 settings: SessionSettings | None = None) -> None:
        self.accounts = accounts
        self.sessions = SessionStore(accounts.pool, settings)
        self.settings = self.sessions.settings
        self.channel = keys.auth_events()
        self._redis_url = redis_url
        self._publisher: aioredis.Redis | None = None
        self._keys: dict[str, tuple[float, Principal | None]] = {}
        self._users: dict[str, tuple[float, tuple[str, bool] | None]] = {}
        self._revoked: dict[str, float] = {}  # sid -> monotonic time after which its tokens have all expired
        self._signing: dict[str, bytes] = {}
        self._signer: SigningKey | None = None
        self._unknown_reload = -math.inf
        self._synced = -math.inf
        self._task: asyncio.Task | None = None
        self._start_lock = asyncio.Lock()
        self.subscribed = False
        self.events_received = 0

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Load revoked sessions and signing keys, then listen for pushed revocations (idempotent)."""
        if self._task is not None:
            return
        async with self._start_lock:
            if self._task is None:
                await self._resync()
                self._task = asyncio.create_task(self._listen(), name="auth-events")

    async def close(self) -> None:
        """Stop listening and close the Redis connections (idempotent)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._publisher is not None:
            await self._publisher.aclose()
            self._publisher = None

    # -- authentication --------------------------------------------------------------------------

    async def authenticate(self, credential: str) -> Principal | None:
        """The principal of an API key or an access token; None for anything unknown, revoked or expired."""
        if not isinstance(credential, str) or not credential:
            return None
        await self.start()
        if jwt_tokens.looks_like_jwt(credential):
            return await self._token_principal(credential)
        return await self._key_principal(credential)

    async def _key_principal(self, key: str) -> Principal | None:
        h = hash_key(key)  # cached by hash, never by the key
        now = time.monotonic()
        hit = self._keys.get(h)
        if hit is not None and now - hit[0] < self.settings.auth_ttl_s:
            return hit[1]
        who = await self.accounts.authenticate(key)
        if len(self._keys) >= CACHE_SIZE:
            self._keys.clear()
        self._keys[h] = (now, who)
        return who

    async def verify_access_token(self, token: str) -> dict | None:
        """The claims of a valid, unrevoked access token of this API, or None."""
        if time.monotonic() - self._synced > 2 * self.settings.auth_ttl_s:
            # revocations may have been missed for longer than the documented bound: fail closed
            try:
                await self._resync()
            except Exception as e:  # noqa: BLE001 - the database is down: refuse, as for keys
                log.warning("access token refused: revocations not re-read for %.0fs (%s)",
                            time.monotonic() - self._synced, type(e).__name__)
                return None
        try:
            kid = jwt_tokens.header(token)["kid"]
            if kid not in self._signing and time.monotonic() - self._unknown_reload >= KEY_RELOAD_MIN_S:
                self._unknown_reload = time.monotonic()
                await self._load_signing_keys()  # a key made by another process since our last load
            claims = jwt_tokens.verify(token, self._signing, time.time(), self.settings.leeway_s)
        except jwt_tokens.TokenError as e:
            log.debug("access token refused: %s", e)
            return None
        sid, sub, role = claims.get("sid"), claims.get("sub"), claims.get("role")
        if (claims.get("typ") != "access" or claims.get("iss") != ISSUER or not isinstance(sid, str) or not sid
                or not isinstance(sub, str) or not sub or not isinstance(role, str)):
            return None
        if sid in self._revoked:
            return None
        return claims

    async def _token_principal(self, token: str) -> Principal | None:
        claims = await self.verify_access_token(token)
        if claims is None:
            return None
        try:
            role = check_role(claims["role"])
        except UnknownRoleError:
            return None
        state = await self._user_state(claims["sub"])
        if state is None or state[1]:
            return None  # deleted or disabled since the login
        try:
            tier = tiers.tier(state[0])
        except UnknownTierError:
            log.warning("session of %s refused: tier %r is unknown", claims["sub"], state[0])
            return None
        return Principal(claims["sub"], role, tier, session_key_id(claims["sid"]))

    async def _user_state(self, username: str) -> tuple[str, bool] | None:
        now = time.monotonic()
        hit = self._users.get(username)
        if hit is not None and now - hit[0] < self.settings.auth_ttl_s:
            return hit[1]
        state = await self.sessions.user_state(username)
        if len(self._users) >= CACHE_SIZE:
            self._users.clear()
        self._users[username] = (now, state)
        return state

    # -- issuing ---------------------------------------------------------------------------------

    async def issue_access_token(self, session: IssuedSession) -> tuple[str, int]:
        """A signed access token for ``session`` and its lifetime in seconds."""
        await self.start()
        if self._signer is None:
            await self._load_signing_keys(create=True)
            await self.publish("signing_keys", self._signer.kid)  # perhaps the first key: tell the others
        signer = self._signer
        now = int(time.time())
        ttl = int(self.settings.access_ttl_s)
        claims = {"iss": ISSUER, "typ": "access", "sub": session.username, "role": session.role,
                  "sid": session.sid, "iat": now, "nbf": now, "exp": now + ttl, "jti": secrets.token_hex(8)}
        return jwt_tokens.encode(claims, signer.secret, signer.kid), ttl

    # -- revocation ------------------------------------------------------------------------------

    async def publish(self, kind: str, ident: str) -> None:
        """Apply a revocation here at once and push it to every other process.

        A failed push is logged, not raised: the change is in Postgres, and the others pick it up
        within ``auth_ttl_s``.
        """
        event = {"kind": kind, "id": ident}
        await self._apply(event)
        try:
            if self._publisher is None:
                self._publisher = aioredis.Redis.from_url(self._redis_url, socket_timeout=2, socket_connect_timeout=2)
            await self._publisher.publish(self.channel, json.dumps(event, separators=(",", ":")))
        except Exception as e:  # noqa: BLE001 - see docstring
            log.warning("could not push %s revocation (others apply it within %.0fs): %s", kind,
                        self.settings.auth_ttl_s, type(e).__name__)

    async def _apply(self, event: dict) -> None:
        kind, ident = event.get("kind"), event.get("id")
        if kind not in EVENT_KINDS or not isinstance(ident, str):
            return
        if kind == "sid":
            self._revoked[ident] = time.monotonic() + self._token_horizon()
        elif kind == "key":  # a key id: the first hex characters of the key's hash
            for h in [h for h in self._keys if h.startswith(ident)]:
                self._keys.pop(h, None)
        elif kind == "user":
            self._users.pop(ident, None)
            # also the refused (None) entries: an enabled user's keys must work again at once
            for h in [h for h, (_, p) in self._keys.items() if p is None or p.username == ident]:
                self._keys.pop(h, None)
        elif kind == "signing_keys":
            await self._load_signing_keys()

    def _token_horizon(self) -> float:
        return self.settings.access_ttl_s + 2 * self.settings.leeway_s

    async def _load_signing_keys(self, create: bool = False) -> None:
        keys = await (self.sessions.ensure_signing_key() if create else self.sessions.signing_keys())
        self._signing = {k.kid: k.secret for k in keys}
        self._signer = keys[0] if keys else None

    async def _resync(self) -> None:
        """Re-read revoked sessions and signing keys from Postgres."""
        sids = await self.sessions.recently_revoked()
        await self._load_signing_keys()
        now = time.monotonic()
        forget = now + self._token_horizon()
        self._revoked = {sid: t for sid, t in self._revoked.items() if t > now}
        for sid in sids:
            self._revoked.setdefault(sid, forget)
        self._synced = now

    async def _listen(self) -> None:
        delay = 0.5
        while True:
            client = aioredis.Redis.from_url(self._redis_url, socket_connect_timeout=2, socket_timeout=None)
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                self.subscribed = True
                await self._resync()  # after subscribing: nothing revoked in between is missed
                delay = 0.5
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        self.events_received += 1
                        with contextlib.suppress(ValueError, TypeError):
                            await self._apply(json.loads(message["data"]))
                    if time.monotonic() - self._synced > self.settings.auth_ttl_s:
                        await self._resync()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - Redis or Postgres away: back off, keep re-reading
                self.subscribed = False
                log.warning("auth events: %s; resubscribing in %.1fs", type(e).__name__, delay)
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 5.0)
                if time.monotonic() - self._synced > self.settings.auth_ttl_s:
                    with contextlib.suppress(Exception):
                        await self._resync()
            finally:
                self.subscribed = False
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                with contextlib.suppress(Exception):
                    await client.aclose()
