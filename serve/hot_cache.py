"""Pre-encoded API answers kept in the replica, dropped when the live feed says their data changed; no I/O.

An answer is stored the first time a hot read is asked (``GET`` of candles, indicators,
structure, summary, signals, alerts or the market list) as the exact bytes the API produced,
with an ETag, and gzip bytes made on first need. Each entry depends on feed scopes
``(kind, market)`` (``market`` None: any market of that kind). The replica's stream watcher calls
:meth:`ResponseCache.changed` for every record the live feed carries; an entry whose scopes saw a
record since it was computed is stale and is computed again by the next request for it.

Postgres receives rows a little after the feed announces them (the store's writer batches for up to
its linger), so an answer computed within ``settle_s`` of a change may miss that change's rows:
such an answer is kept only until ``settle_s`` after the change, then computed once more. An
answer is therefore never older than the latest change by more than ``settle_s`` plus one query.
While the watcher is not connected to the feed nothing is cached at all.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

Scope = tuple[str, str | None]

API = "/api/v1"
GZIP_MIN_BYTES = 1024  # below this gzip saves too little to pay for itself

# path -> the feed kinds its answer is made of; "{market}" scopes take the path's market or ?market=
_ROUTES: list[tuple[re.Pattern[str], tuple[str, ...], bool]] = [
    (re.compile(rf"^{API}/markets$"), ("candles",), False),
    (re.compile(rf"^{API}/markets/(?P<market>[^/]+)/candles$"), ("candles",), True),
    (re.compile(rf"^{API}/markets/(?P<market>[^/]+)/indicators$"), ("candles",), True),
    (re.compile(rf"^{API}/markets/(?P<market>[^/]+)/structure$"), ("structure",), True),
    (re.compile(rf"^{API}/market/summary$"), ("candles", "signals"), True),
    (re.compile(rf"^{API}/signals$"), ("signals",), True),
    (re.compile(rf"^{API}/signals/[^/]+$"), ("signals",), False),
    (re.compile(rf"^{API}/alerts$"), ("alerts",), False),
]


def scopes_of(path: str, market_param: str | None) -> tuple[Scope, ...] | None:
    """The feed scopes a hot-read path's answer depends on, or None when the path is not a hot read."""
    for pattern, kinds, per_market in _ROUTES:
        m = pattern.match(path)
        if m is None:
            continue
        market = (m.groupdict().get("market") or market_param) if per_market else None
        return tuple((k, market.lower() if market else None) for k in kinds)
    return None


def etag_of(body: bytes) -> str:
    """A strong validator for ``body``: 128 bits of BLAKE2b, quoted as HTTP wants."""
    return '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'


def etag_matches(if_none_match: str, etag: str) -> bool:
    """Whether an ``If-None-Match`` header names ``etag`` (weak comparison, ``*`` matches all)."""
    for tag in if_none_match.split(","):
        tag = tag.strip()
        if tag == "*" or tag.removeprefix("W/") == etag:
            return True
    return False


@dataclass
class Entry:
    """One answer: its bytes, ETag, content type, and when and against which changes it was computed."""

    body: bytes
    etag: str
    content_type: bytes
    computed_at: float
    scopes: tuple[Scope, ...]
    provisional_until: float = 0.0  # computed right after a change: recompute once this time has passed
    _gzipped: bytes | None = field(default=None, repr=False)

    def gzipped(self) -> bytes:
        """The body gzip-compressed, made once."""
        if self._gzipped is None:
            self._gzipped = gzip.compress(self.body, compresslevel=5, mtime=0)
        return self._gzipped


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    stale: int = 0
    not_modified: int = 0
    changes: int = 0
    evicted: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class ResponseCache:
    """Answers by request key, at most ``max_entries`` (least recently used go first)."""

    def __init__(self, settle_s: float = 1.0, max_entries: int = 4096,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settle_s = settle_s
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._changed_at: dict[Scope, float] = {}
        self._flights: dict[str, asyncio.Future] = {}
        self.live = False  # set by the stream watcher while it is reading the feed
        self.stats = CacheStats()

    def changed(self, kind: str, market: str | None) -> None:
        """A record of ``kind`` for ``market`` arrived on the live feed."""
        now = self._clock()
        self._changed_at[(kind, None)] = now
        if market:
            self._changed_at[(kind, market.lower())] = now
        self.stats.changes += 1

    def forget_all(self) -> None:
        """Drop every answer (the feed was lost: changes may have been missed)."""
        self._entries.clear()
        self._changed_at.clear()

    def _last_change(self, scopes: tuple[Scope, ...]) -> float:
        last = 0.0
        for scope in scopes:
            # an answer for all markets changes with any market; one market's with its own records
            last = max(last, self._changed_at.get(scope, 0.0))
        return last

    def get(self, key: str) -> Entry | None:
        """The fresh answer for ``key``, or None (missing or stale)."""
        entry = self._entries.get(key)
        if entry is None:
            self.stats.misses += 1
            return None
        now = self._clock()
        if self._last_change(entry.scopes) > entry.computed_at or (
                entry.provisional_until and now >= entry.provisional_until):
            del self._entries[key]
            self.stats.stale += 1
            return None
        self._entries.move_to_end(key)
        self.stats.hits += 1
        return entry

    def put(self, key: str, body: bytes, content_type: bytes, scopes: tuple[Scope, ...], started_at: float) -> Entry:
        """Keep an answer computed from data read at ``started_at`` (a clock reading taken before the query)."""
        last = self._last_change(scopes)
        entry = Entry(body, etag_of(body), content_type, started_at, scopes)
        if last and started_at - last < self.settle_s:
            entry.provisional_until = last + self.settle_s
        if self.live:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
                self.stats.evicted += 1
        return entry

    def now(self) -> float:
        return self._clock()

    def flight(self, key: str) -> asyncio.Future | None:
        """The computation of ``key`` already under way, if any."""
        return self._flights.get(key)

    def begin(self, key: str) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        self._flights[key] = fut
        return fut

    def end(self, key: str, entry: Entry | None) -> None:
        fut = self._flights.pop(key, None)
        if fut is not None and not fut.done():
            fut.set_result(entry)

    def __len__(self) -> int:
        return len(self._entries)
