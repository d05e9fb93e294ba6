"""Live venue sources from the command line or a config file.

``--source binance:BTCUSDT,ETHUSDT`` (venue, then its own symbols), optionally with channels
``--source binance:BTCUSDT@aggTrade+depth``; ``--venue-url binance.ws=URL --venue-url binance.rest=URL``.
A TOML config file says the same::

    sources = ["binance:BTCUSDT,ETHUSDT", "coinbase:BTC-USD"]
    [venue_urls]
    "binance.ws" = "ws://127.0.0.1:9001"
    "binance.rest" = "http://127.0.0.1:9001"
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from engine.venues.registry import VENUES
from schemas.errors import ConfigError


@dataclass(frozen=True)
class SourceSpec:
    """One venue and the symbols to follow on it, with base URLs (None: the venue's production URLs)."""

    venue: str
    symbols: tuple[str, ...]
    channels: tuple[str, ...] | None = None
    ws_url: str | None = None
    rest_url: str | None = None


def parse_source(text: str) -> SourceSpec:
    venue, sep, rest = text.partition(":")
    venue = venue.strip().lower()
    if not sep or not rest.strip():
        raise ConfigError(f"bad source {text!r}: write VENUE:SYMBOL[,SYMBOL...], e.g. binance:BTCUSDT,ETHUSDT")
    if venue not in VENUES:
        raise ConfigError(f"bad source {text!r}: unknown venue {venue!r}; venues are {', '.join(VENUES)}")
    symbols, _, channels = rest.partition("@")
    syms = tuple(s.strip() for s in symbols.split(",") if s.strip())
    if not syms:
        raise ConfigError(f"bad source {text!r}: no symbols")
    chans = tuple(c.strip() for c in channels.split("+") if c.strip()) or None
    return SourceSpec(venue, syms, chans)


def parse_venue_urls(items: list[str]) -> dict[str, dict[str, str]]:
    """``NAME.ws=URL`` / ``NAME.rest=URL`` pairs as ``{venue: {"ws": URL, "rest": URL}}``."""
    urls: dict[str, dict[str, str]] = {}
    for item in items:
        key, sep, url = item.partition("=")
        venue, dot, kind = key.strip().lower().partition(".")
        if not sep or not dot or kind not in ("ws", "rest") or not url.strip():
            raise ConfigError(f"bad --venue-url {item!r}: write VENUE.ws=URL or VENUE.rest=URL")
        if venue not in VENUES:
            raise ConfigError(f"bad --venue-url {item!r}: unknown venue {venue!r}; venues are {', '.join(VENUES)}")
        if not url.strip().split("://", 1)[0] in ("ws", "wss", "http", "https"):
            raise ConfigError(f"bad --venue-url {item!r}: the URL needs a ws://, wss://, http:// or https:// scheme")
        urls.setdefault(venue, {})[kind] = url.strip()
    return urls


def load_config(path: str | Path) -> tuple[list[str], list[str]]:
    """``(sources, venue_url items)`` from a TOML config file."""
    try:
        doc = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{e.object[e.start]:02x} cannot be decoded); "
                          "a config file is TOML, which is UTF-8") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the config file: {e.strerror or e}") from None
    unknown = set(doc) - {"sources", "venue_urls"}
    if unknown:
        raise ConfigError(f"{path}: unknown keys {sorted(unknown)}; known: sources, venue_urls")
    sources = doc.get("sources", [])
    if not isinstance(sources, list) or not all(isinstance(s, str) for s in sources):
        raise ConfigError(f"{path}: sources must be a list of strings like \"binance:BTCUSDT,ETHUSDT\"")
    urls = doc.get("venue_urls", {})
    if not isinstance(urls, dict):
        raise ConfigError(f"{path}: [venue_urls] must be a table of \"venue.ws\" = \"URL\"")
    return sources, [f"{k}={v}" for k, v in urls.items()]


def build_sources(sources: list[str], venue_urls: list[str]) -> list[SourceSpec]:
    """One spec per venue (symbols of repeated sources merged), with any base-URL overrides applied."""
    urls = parse_venue_urls(venue_urls)
    merged: dict[str, SourceSpec] = {}
    for text in sources:
        spec = parse_source(text)
        old = merged.get(spec.venue)
        if old:
            spec = SourceSpec(spec.venue, tuple(dict.fromkeys(old.symbols + spec.symbols)),
                              spec.channels or old.channels)
        merged[spec.venue] = spec
    out = []
    for venue, spec in merged.items():
        u = urls.get(venue, {})
        out.append(SourceSpec(venue, spec.symbols, spec.channels, u.get("ws"), u.get("rest")))
    return out
