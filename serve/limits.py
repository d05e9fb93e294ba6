"""Per-API-key rate limits: one Redis token bucket per key, sized by the key's tier."""

from __future__ import annotations

import redis.asyncio

from connectors.storage.ratelimit import Decision, TokenBucket
from connectors.storage.redis_keys import RedisKeys
from serve.accounts import Principal
from serve.tiers import Tier


class KeyRateLimiter:
    """Rate-limits principals by key id; buckets are named ``key.<tier>`` so a tier change starts afresh."""

    def __init__(self, client: redis.asyncio.Redis, keys: RedisKeys) -> None:
        self._client = client
        self._keys = keys
        self._buckets: dict[Tier, TokenBucket] = {}

    def _bucket(self, tier: Tier) -> TokenBucket:
        bucket = self._buckets.get(tier)
        if bucket is None:
            bucket = TokenBucket(self._client, self._keys, tier.rate_per_s, tier.burst, name=f"key.{tier.name}")
            self._buckets[tier] = bucket
        return bucket

    async def check(self, principal: Principal, cost: int = 1) -> Decision:
        """Take ``cost`` tokens from the principal's bucket; the bucket is keyed by key id, never the key."""
        return await self._bucket(principal.tier).take(principal.key_id, cost)
