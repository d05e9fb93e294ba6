"""Venue names (as written in ``--source NAME:SYMBOLS``) and the adapter class of each."""

from __future__ import annotations

import importlib

from engine.venues.venue import Venue
from schemas.errors import ConfigError

VENUES = {
    "binance": ("engine.venues.binance", "BinanceSpot"),
    "binance_futures": ("engine.venues.binance", "BinanceFutures"),
    "coinbase": ("engine.venues.coinbase", "Coinbase"),
    "kraken": ("engine.venues.kraken", "Kraken"),
    "bybit": ("engine.venues.bybit", "Bybit"),
    "okx": ("engine.venues.okx", "Okx"),
}


def venue_class(name: str) -> type[Venue]:
    try:
        module, cls = VENUES[name.lower()]
    except KeyError:
        raise ConfigError(f"unknown venue {name!r}; venues are {', '.join(VENUES)}") from None
    return getattr(importlib.import_module(module), cls)


def make_venue(name: str, channels: tuple[str, ...] | None = None) -> Venue:
    """A venue adapter, with its default channels unless ``channels`` are given."""
    cls = venue_class(name)
    return cls(channels=tuple(channels)) if channels else cls()
