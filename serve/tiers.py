"""Subscription tiers (request rate, channels, markets, history, connections) and user roles; no I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass

from schemas.errors import ConfigError

ROLES = ("admin", "user")
# the feed channel kinds a tier may grant; "whales" is the on-chain large-transfer feed
CHANNEL_KINDS = frozenset({"candles", "signals", "structure", "alerts", "whales"})

# tier names become part of Redis rate-limit key names, so keep them to safe characters
_NAME = re.compile(r"^[a-z0-9_\-]{1,32}$")


class UnknownTierError(ConfigError):
    """A tier name is not one of the configured tiers."""


class UnknownRoleError(ConfigError):
    """A role name is not one of :data:`ROLES`."""


@dataclass(frozen=True)
class Tier:
    """What a subscription tier allows: request rate and burst, feed channels, markets, history, sockets."""

    name: str
    rate_per_s: float
    burst: int
    channels: frozenset[str]
    max_markets: int | None  # None: every market
    history_days: int
    max_ws_connections: int

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ConfigError(f"tier name {self.name!r} is invalid: use 1-32 of a-z, 0-9, '_' or '-'")
        if not self.rate_per_s > 0:
            raise ConfigError(f"tier {self.name}: rate_per_s must be > 0, got {self.rate_per_s}")
        if isinstance(self.burst, bool) or not isinstance(self.burst, int) or self.burst < 1:
            raise ConfigError(f"tier {self.name}: burst must be an int >= 1, got {self.burst!r}")
        unknown = set(self.channels) - CHANNEL_KINDS
        if unknown:
            raise ConfigError(f"tier {self.name}: unknown channels {sorted(unknown)}; "
                              f"known: {sorted(CHANNEL_KINDS)}")
        if self.max_markets is not None and self.max_markets < 1:
            raise ConfigError(f"tier {self.name}: max_markets must be >= 1 or None (all), got {self.max_markets}")
        if self.history_days < 0 or self.max_ws_connections < 0:
            raise ConfigError(f"tier {self.name}: history_days and max_ws_connections must be >= 0")
        object.__setattr__(self, "channels", frozenset(self.channels))

    def allows_channel(self, channel: str) -> bool:
        """Whether this tier may subscribe to ``channel``."""
        return channel in self.channels

    def allows_markets(self, count: int) -> bool:
        """Whether this tier may follow ``count`` markets at once."""
        return self.max_markets is None or count <= self.max_markets


TIERS: dict[str, Tier] = {
    "free": Tier("free", rate_per_s=2.0, burst=20, channels=frozenset({"candles", "signals"}),
                 max_markets=5, history_days=7, max_ws_connections=1),
    "pro": Tier("pro", rate_per_s=20.0, burst=100,
                channels=frozenset({"candles", "signals", "structure", "alerts"}),
                max_markets=100, history_days=365, max_ws_connections=5),
    # admin-grade: every channel and market; still rate limited so one key cannot starve the API
    "enterprise": Tier("enterprise", rate_per_s=200.0, burst=1000, channels=CHANNEL_KINDS,
                       max_markets=None, history_days=3650, max_ws_connections=50),
}


def tier(name: str) -> Tier:
    """The tier called ``name``; raises :class:`UnknownTierError` naming the known tiers."""
    try:
        return TIERS[name]
    except (KeyError, TypeError):
        raise UnknownTierError(f"unknown tier {name!r}; choose one of {', '.join(TIERS)}") from None


def check_role(role: str) -> str:
    """``role`` if it is one of :data:`ROLES`, else :class:`UnknownRoleError` naming them."""
    if role not in ROLES:
        raise UnknownRoleError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
    return role
