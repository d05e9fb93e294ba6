"""What every venue adapter provides: URLs, limits, subscriptions, a frame parser and REST repairs.

A venue module (``binance.py``, ``coinbase.py``, ...) subclasses :class:`Venue`; the supervisor
(``connectors/venues/supervisor.py``) drives any of them the same way, so a fake venue on 127.0.0.1
and the real exchange are reached by the same code, only the base URLs differ.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.venues.frames import FrameOutput, VenueParser
from schemas.records import BookUpdate


@dataclass(frozen=True)
class VenueLimits:
    """Published connection limits the supervisor respects."""

    max_streams_per_connection: int = 200
    max_messages_per_second: float = 5.0  # frames the client may send (subscribe, ping)
    max_connections: int = 5
    ping_interval_s: float = 20.0  # app-level or WebSocket ping period
    stale_after_s: float = 30.0  # no frame for this long: the connection is stale, reconnect


class Venue:
    """Base adapter: subclasses set the class attributes and override what their venue supports."""

    name = ""  # config name, e.g. "binance"
    key = ""  # market-key prefix, e.g. "BINANCE"
    ws_url = ""  # production WebSocket base URL
    rest_url = ""  # production REST base URL
    limits = VenueLimits()
    # Consecutive trades of one market carry consecutive ids (no holes): a jump is a gap.
    trade_ids_contiguous = False
    max_backfill_per_request = 1000

    def parser(self) -> VenueParser:
        raise NotImplementedError

    def connect_url(self, ws_base: str, symbols: list[str]) -> str:
        """Full URL of one connection carrying ``symbols`` (venue symbols, e.g. ``BTCUSDT``)."""
        return ws_base

    def subscribe_frames(self, symbols: list[str]) -> list[str]:
        """Text frames to send after connecting; empty when the URL itself subscribes."""
        return []

    def ping_frame(self) -> str | None:
        """App-level ping to send every ``limits.ping_interval_s``; None: WebSocket pings are enough."""
        return None

    def market(self, symbol: str) -> str:
        """Normalised market key of a venue symbol."""
        from engine.venues.symbols import market_key
        return market_key(self.key, symbol)

    # REST repairs: return None where the venue offers no such endpoint.
    def trades_request(self, symbol: str, after_id: int, limit: int) -> tuple[str, dict] | None:
        """(path, params) of a REST call returning trades of ``symbol`` with id > ``after_id``, oldest first."""
        return None

    def parse_trades_response(self, symbol: str, body: bytes, out: FrameOutput) -> None:
        """Append the trades of a ``trades_request`` response to ``out``; raise FrameError on a bad body."""
        raise NotImplementedError

    def book_snapshot_request(self, symbol: str) -> tuple[str, dict] | None:
        """(path, params) of a REST call returning a full L2 snapshot of ``symbol``."""
        return None

    def parse_book_snapshot(self, symbol: str, body: bytes) -> BookUpdate:
        raise NotImplementedError
