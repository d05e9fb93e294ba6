"""Live feed channel names, ``kind[:market[:timeframe]]`` with ``*`` wildcards: parsing and matching; no I/O.

Examples: ``candles:BINANCE:BTCUSDT:1m``, ``signals:*``, ``structure:ETHUSDT:15m``, ``alerts``,
``candles:*:5m``, ``candles:BINANCE``. A market pattern without ``:`` matches a market equal to it
or having it as one of its ``:`` parts (``ETHUSDT`` matches ``BINANCE:ETHUSDT``, ``BINANCE``
matches every Binance market); one with ``:`` matches part by part, ``*`` standing for any part.
Markets compare case-insensitively, timeframes exactly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, NamedTuple

from schemas.errors import InputError

# feed kind -> the Redis stream it is read from; whales are the alerts of kind "whale"
STREAMS: dict[str, str] = {"candles": "candles", "signals": "signals", "structure": "structure",
                           "alerts": "alerts", "whales": "alerts"}
WHALE_KIND = "whale"
WHALE_KINDS = {WHALE_KIND, "whale_transfer"}  # the on-chain follower's whale alerts are whale_transfer
MAX_CHANNEL_CHARS = 200

_PART = re.compile(r"^[A-Za-z0-9_.\-/]+$|^\*$")
_TIMEFRAME = re.compile(r"^(\d+[smhdwM]|\*)$")
_SEQ = re.compile(r"^(\d{1,20})(?:-(\d{1,20}))?$")


class ChannelError(InputError):
    """A channel name cannot be parsed or names an unknown kind; the message shows the syntax."""


class Subject(NamedTuple):
    """What channels match on, taken once from a record: market (lower case) and its parts, timeframe, kind."""

    market: str | None
    parts: tuple[str, ...]
    timeframe: str | None
    kind: str | None


def subject(record: dict[str, Any]) -> Subject:
    """The :class:`Subject` of a decoded feed record (candle, signal, structure event or alert)."""
    market = record.get("market")
    market = market.lower() if isinstance(market, str) else None
    timeframe = record.get("timeframe")
    kind = record.get("kind")
    return Subject(market, tuple(market.split(":")) if market else (),
                   timeframe if isinstance(timeframe, str) else None, kind if isinstance(kind, str) else None)


@dataclass(frozen=True)
class Channel:
    """One parsed subscription; ``name`` is the text the client sent and is echoed in data messages."""

    name: str
    kind: str
    market: tuple[str, ...] | None  # lower-case parts; None: any market
    timeframe: str | None  # None: any timeframe

    @property
    def stream(self) -> str:
        """The feed stream (``candles``, ``signals``, ``structure`` or ``alerts``) this channel reads."""
        return STREAMS[self.kind]

    @property
    def filtered(self) -> bool:
        """Whether matching needs the record at all (``candles:*`` takes everything on its stream)."""
        return self.market is not None or self.timeframe is not None or self.kind == "whales"

    def matches(self, s: Subject) -> bool:
        """Whether a record with subject ``s`` (from the same stream) belongs to this channel."""
        if self.kind == "whales" and s.kind not in WHALE_KINDS:
            return False
        if self.timeframe is not None and s.timeframe != self.timeframe:
            return False
        pattern = self.market
        if pattern is None:
            return True
        if s.market is None:
            return False
        if len(pattern) == 1:
            return pattern[0] == s.market or pattern[0] in s.parts
        return len(pattern) == len(s.parts) and all(p == "*" or p == m for p, m in zip(pattern, s.parts))


def parse_channel(name: str) -> Channel:
    """Parse ``kind[:market[:timeframe]]``; raises :class:`ChannelError` saying what is wrong."""
    if not isinstance(name, str) or not name.strip():
        raise ChannelError(f"channel must be a non-empty string like 'candles:BINANCE:BTCUSDT:1m', got {name!r}")
    text = name.strip()
    if len(text) > MAX_CHANNEL_CHARS:
        raise ChannelError(f"channel name longer than {MAX_CHANNEL_CHARS} characters")
    kind, *rest = text.split(":")
    if kind not in STREAMS:
        raise ChannelError(f"unknown channel kind {kind!r} in {text!r}; use one of {', '.join(STREAMS)}")
    timeframe: str | None = None
    # the last part is a timeframe when it looks like one ("1m", "4h", "*") and a market precedes it;
    # otherwise "candles:BINANCE:BTCUSDT" would read as market BINANCE, timeframe BTCUSDT
    if len(rest) >= 2 and _TIMEFRAME.match(rest[-1]):
        timeframe = None if rest[-1] == "*" else rest[-1]
        rest = rest[:-1]
    for part in rest:
        if not _PART.match(part):
            raise ChannelError(f"bad market part {part!r} in {text!r}: use letters, digits, '_', '.', '-', '/' "
                               "or '*' alone; syntax kind[:market[:timeframe]]")
    market = tuple(p.lower() for p in rest) if rest and rest != ["*"] else None
    if market is not None and all(p == "*" for p in market):
        market = None
    return Channel(text, kind, market, timeframe)


def parse_seq(seq: str) -> tuple[int, int]:
    """A Redis stream id (``"1700000000000-3"`` or ``"1700000000000"``) as a comparable pair."""
    match = _SEQ.match(seq) if isinstance(seq, str) else None
    if not match:
        raise ChannelError(f"bad seq {seq!r}: pass the 'seq' of the last data message received, e.g. '1700000000000-0'")
    return int(match.group(1)), int(match.group(2) or 0)
