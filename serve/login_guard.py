"""Brute-force protection for password logins: attempt counters per username and per client address in Redis.

Each attempt is counted *before* the password is checked, so parallel guesses cannot slip past the
limit; a correct login takes its attempt back. A counter lives for one window from its first attempt;
once it passes the limit every attempt is refused until the window ends (the answer's Retry-After).
Counters are kept for any username, existing or not, so a lockout tells nothing about who exists.
"""

from __future__ import annotations

import hashlib
import math

import redis.asyncio

from connectors.storage.redis_keys import RedisKeys

# DECR only a live counter: on an expired one it would create a key that never expires
_SUCCEEDED = "redis.call('DEL', KEYS[1]) if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('DECR', KEYS[2]) end"


class LoginGuard:
    """Counts login attempts per username (``max_user``) and per address (``max_ip``) within ``window_s``."""

    def __init__(self, client: redis.asyncio.Redis, keys: RedisKeys, max_user: int, max_ip: int,
                 window_s: int) -> None:
        self._client, self._keys = client, keys
        self.max_user, self.max_ip, self.window_s = max_user, max_ip, window_s

    def _user_key(self, username: str) -> str:
        # hashed: the Redis key names no username, and any text (case folded) maps to one counter
        return self._keys.rate_limit("login.user", hashlib.sha256(username.casefold().encode("utf-8")).hexdigest())

    def _ip_key(self, address: str) -> str:
        return self._keys.rate_limit("login.ip", address or "unknown")

    async def attempt(self, username: str, address: str) -> int | None:
        """Count one attempt; None if it may go ahead, else the seconds until it may be retried."""
        user, ip = self._user_key(username), self._ip_key(address)
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.set(user, 0, ex=self.window_s, nx=True).incr(user).pttl(user)
            pipe.set(ip, 0, ex=self.window_s, nx=True).incr(ip).pttl(ip)
            _, n_user, ttl_user, _, n_ip, ttl_ip = await pipe.execute()
        waits = [ttl for n, limit, ttl in ((n_user, self.max_user, ttl_user), (n_ip, self.max_ip, ttl_ip))
                 if n > limit]
        if not waits:
            return None
        return max(1, math.ceil(max(max(waits), 0) / 1000))

    async def succeeded(self, username: str, address: str) -> None:
        """A correct login: the username starts afresh and the address gets its attempt back."""
        await self._client.eval(_SUCCEEDED, 2, self._user_key(username), self._ip_key(address))

    async def reset(self, username: str | None = None, address: str | None = None) -> None:
        """Forget the counters of a username and/or an address (an administrator lifting a lockout)."""
        names = ([self._user_key(username)] if username is not None else []) + \
                ([self._ip_key(address)] if address is not None else [])
        if names:
            await self._client.delete(*names)
