"""Per-API-key rate limits: one Redis token bucket per key, sized by the key's tier, spent locally.

A replica does not ask Redis for every request. It leases a few tokens at a time from the key's
shared bucket (one atomic script, Redis's clock) and spends them in memory; when they run out it
leases again, and when the bucket is empty it refuses locally until the bucket has a token again.
Tokens leave the shared bucket before any replica spends them, so replicas together never admit
more than one bucket would, except that a leased token may be spent up to ``LEASE_TTL_S`` after it
was taken (then unspent ones are dropped): over any interval ``t`` a key is admitted at most
``burst + rate * (t + LEASE_TTL_S)`` requests. Tokens a replica leased and did not spend are lost,
so with ``R`` replicas a key may be refused at most ``R * lease`` tokens early.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass

import redis.asyncio

from connectors.storage.ratelimit import Decision, TokenBucket
from connectors.storage.redis_keys import RedisKeys
from serve.accounts import Principal
from serve.tiers import Tier

LEASE_S = 0.1  # a lease holds about this many seconds of the tier's rate
LEASE_TTL_S = 1.0


def lease_size(tier: Tier) -> int:
    """Tokens leased at a time: ~LEASE_S of the tier's rate, at most a tenth of its burst, at least 1."""
    return max(1, min(tier.burst // 10, math.ceil(tier.rate_per_s * LEASE_S)))


@dataclass
class _Local:
    tokens: int = 0
    leased_at: float = 0.0
    refused_until: float = 0.0
    lease: asyncio.Future | None = None


class KeyRateLimiter:
    """Rate-limits principals by key id; buckets are named ``key.<tier>`` so a tier change starts afresh."""

    MAX_KEYS = 100_000

    def __init__(self, client: redis.asyncio.Redis, keys: RedisKeys,
                 clock=time.monotonic) -> None:
        self._client = client
        self._keys = keys
        self._buckets: dict[Tier, TokenBucket] = {}
        self._local: dict[tuple[str, str], _Local] = {}
        self._clock = clock
        self.leases = 0  # round trips to Redis, for the benchmark's breakdown

    def _bucket(self, tier: Tier) -> TokenBucket:
        bucket = self._buckets.get(tier)
        if bucket is None:
            bucket = TokenBucket(self._client, self._keys, tier.rate_per_s, tier.burst, name=f"key.{tier.name}")
            self._buckets[tier] = bucket
        return bucket

    async def check(self, principal: Principal, cost: int = 1) -> Decision:
        """Take ``cost`` tokens for the principal (keyed by key id, never the key), locally when it can."""
        tier = principal.tier
        ident = (tier.name, principal.key_id)
        local = self._local.get(ident)
        if local is None:
            if len(self._local) >= self.MAX_KEYS:
                self._local.clear()
            local = self._local[ident] = _Local()
        while True:
            now = self._clock()
            if local.tokens and now - local.leased_at > LEASE_TTL_S:
                local.tokens = 0  # too old to spend: the bucket has refilled since
            if local.tokens >= cost:
                local.tokens -= cost
                return Decision(True, float(local.tokens), 0)
            if now < local.refused_until:
                return Decision(False, 0.0, max(1, math.ceil((local.refused_until - now) * 1000)))
            if local.lease is not None:  # another request of this key is leasing: share its result
                await asyncio.shield(local.lease)
                continue
            local.lease = asyncio.get_running_loop().create_future()
            try:
                want = min(tier.burst, max(cost, lease_size(tier)))
                granted, _, retry_ms = await self._bucket(tier).lease(principal.key_id, want)
                self.leases += 1
                local.tokens, local.leased_at = local.tokens + granted, self._clock()
                if local.tokens < cost:
                    local.refused_until = self._clock() + max(retry_ms, 1) / 1000
            finally:
                local.lease.set_result(None)
                local.lease = None
