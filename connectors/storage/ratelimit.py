"""Token bucket rate limiter shared by every process through one atomic Redis script.

A bucket holds up to ``burst`` tokens and refills at ``rate_per_s``; a request takes ``cost``
tokens or is denied with the time until enough tokens are back. The clock is Redis's own
(``TIME``), so API replicas on different machines agree whatever their clocks say.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio

from connectors.storage.redis_keys import RedisKeys
from schemas.errors import ConfigError

# Both scripts: KEYS[1] bucket hash {tokens, ts_us}; ARGV[1] rate per second, ARGV[2] burst. They run
# atomically, so concurrent takes never spend the same token twice. This part refills the bucket.
_REFILL = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts_us')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
if now > ts then
  tokens = math.min(burst, tokens + (now - ts) * rate / 1000000)
  ts = now
end
"""
# and this one stores it: explicit formats, as Lua's tostring keeps 14 digits, too few for µs since 1970;
# the bucket is forgotten once it would be full again (a missing bucket reads as full)
_STORE = """
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'ts_us', string.format('%d', ts))
redis.call('PEXPIRE', KEYS[1], math.max(1, math.ceil((burst - tokens) * 1000 / rate)))
"""

# ARGV[3] cost. Returns {allowed, tokens, retry_ms}.
TOKEN_BUCKET_LUA = _REFILL + """
local cost = tonumber(ARGV[3])
local allowed = 0
local retry_ms = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
else
  retry_ms = math.ceil((cost - tokens) * 1000 / rate)
end
""" + _STORE + """
return {allowed, string.format('%.17g', tokens), retry_ms}
"""

# Lease: takes as many whole tokens as there are, up to ARGV[3], for a replica to spend locally.
# Returns {granted, tokens left, ms until one token is back when none was granted}.
LEASE_LUA = _REFILL + """
local want = tonumber(ARGV[3])
local granted = math.min(want, math.floor(tokens))
tokens = tokens - granted
local retry_ms = 0
if granted == 0 then
  retry_ms = math.ceil((1 - tokens) * 1000 / rate)
end
""" + _STORE + """
return {granted, string.format('%.17g', tokens), retry_ms}
"""


@dataclass(frozen=True)
class Decision:
    """Outcome of one take: allowed or not, tokens left, and milliseconds to wait when denied (else 0)."""

    allowed: bool
    remaining: float
    retry_after_ms: int


class TokenBucket:
    """Buckets named ``keys.rate_limit(name, key)``, one per key (an API key id, a client address, ...)."""

    def __init__(self, client: redis.asyncio.Redis, keys: RedisKeys, rate_per_s: float, burst: int,
                 name: str = "default") -> None:
        if not rate_per_s > 0:
            raise ConfigError(f"token bucket rate_per_s must be > 0, got {rate_per_s}")
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
            raise ConfigError(f"token bucket burst must be an int >= 1, got {burst!r}")
        self._keys = keys
        self._keys.rate_limit(name, "-")  # reject a bad name now
        self.rate_per_s = float(rate_per_s)
        self.burst = burst
        self.name = name
        # register_script runs EVALSHA and loads the script again if Redis lost it (restart, SCRIPT FLUSH)
        self._script = client.register_script(TOKEN_BUCKET_LUA)
        self._lease = client.register_script(LEASE_LUA)

    async def take(self, key: str, cost: int = 1) -> Decision:
        """Take ``cost`` tokens from ``key``'s bucket if it has them; never pass a secret as ``key``."""
        if isinstance(cost, bool) or not isinstance(cost, int) or not 1 <= cost <= self.burst:
            raise ValueError(f"cost must be an int between 1 and burst={self.burst}, got {cost!r}")
        allowed, tokens, retry_ms = await self._script(keys=[self._keys.rate_limit(self.name, key)],
                                                       args=[repr(self.rate_per_s), self.burst, cost])
        return Decision(bool(allowed), float(tokens), int(retry_ms))

    async def lease(self, key: str, want: int) -> tuple[int, float, int]:
        """Take up to ``want`` whole tokens from ``key``'s bucket to spend elsewhere: (granted, tokens left,
        ms until a token is back when none were granted, else 0)."""
        if isinstance(want, bool) or not isinstance(want, int) or not 1 <= want <= self.burst:
            raise ValueError(f"want must be an int between 1 and burst={self.burst}, got {want!r}")
        granted, tokens, retry_ms = await self._lease(keys=[self._keys.rate_limit(self.name, key)],
                                                      args=[repr(self.rate_per_s), self.burst, want])
        return int(granted), float(tokens), int(retry_ms)
