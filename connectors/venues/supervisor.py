"""Keeps a venue's market data flowing and complete: connection state machine, reconnects, repairs.

Per connection: connecting -> subscribed -> live -> (stale | error) -> reconnecting -> connecting...
with exponential backoff and jitter, app-level pings where the venue wants them, a stale timeout,
and outgoing frames paced to the venue's messages-per-second limit. Trades go through a
:class:`TradeSequencer`: duplicates dropped, id gaps backfilled over REST while the market's later
trades are held (bounded in time), so downstream sees every trade once, in order. Books go through
:class:`BookSync`: a sequence gap triggers a snapshot resync (REST) or a resubscription. Every
state change, gap, repair, resync and give-up is a :class:`VenueEvent`.

Nothing fails silently: a malformed REST answer is counted and reported as ``unrepaired`` (a book
stays out of sync, its diffs buffered, and the snapshot is retried with backoff on later diffs), and
a spawned task that still ends with an exception is counted (``stats["task_errors"]``), logged with
its traceback and reported as an event.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

from connectors.retry import Backoff
from connectors.venues.rest import RestError, VenueRest
from engine.venues.book import APPLIED, BUFFERED, GAP, BookSync
from engine.venues.frames import FrameError, FrameOutput, parse_frame
from engine.venues.sequencer import Gap, TradeSequencer, rows_to_batch
from engine.venues.venue import Venue
from schemas.batches import TradeBatch
from schemas.records import BookUpdate, Candle, MarkPrice, VenueEvent

CONNECTING, SUBSCRIBED, LIVE, STALE, RECONNECTING, STOPPED = (
    "connecting", "subscribed", "live", "stale", "reconnecting", "stopped")
BOOK_RULES = {"binance": "binance_spot", "binance_futures": "binance_futures", "okx": "prev_id",
              "bybit": "consecutive"}
# what a REST answer's parser raises on odd input it did not turn into a FrameError itself
_PARSE_ERRORS = (ValueError, KeyError, TypeError, IndexError)

log = logging.getLogger(__name__)


def _one_line(text: str, limit: int = 300) -> str:
    return " ".join(str(text).split())[:limit]


@dataclass
class SupervisorConfig:
    """Timing and bounds of a venue supervisor (defaults suit production; tests shorten them)."""

    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    hold_s: float = 2.0  # how long a market's trades wait for a gap repair before going out degraded
    stale_after_s: float | None = None  # None: the venue's own limit
    ping_interval_s: float | None = None
    max_pending_rows: int = 1_000_000  # unread trades before reading from the venue pauses
    rest_attempts: int = 5
    rest_timeout_s: float = 10.0
    book_channels: bool = False  # keep L2 books (needs the venue's depth channel subscribed)


@dataclass
class SourceOutput:
    """What a supervisor produced since the last drain."""

    trades: TradeBatch
    late_trades: TradeBatch  # recovered after their gap's hold ran out (their bars were degraded)
    events: list[VenueEvent] = field(default_factory=list)
    books: list[BookUpdate] = field(default_factory=list)
    candles: list[Candle] = field(default_factory=list)
    marks: list[MarkPrice] = field(default_factory=list)


class VenueSupervisor:
    """Runs one venue's connections for a list of venue symbols; ``drain()`` hands over the output."""

    def __init__(self, venue: Venue, symbols: list[str], *, ws_url: str | None = None,
                 rest_url: str | None = None, config: SupervisorConfig | None = None) -> None:
        if not symbols:
            raise ValueError(f"{venue.name}: give at least one symbol")
        self.venue = venue
        self.symbols = list(dict.fromkeys(symbols))
        self.ws_url = ws_url or venue.ws_url
        self.rest_url = rest_url or venue.rest_url
        self.config = config or SupervisorConfig()
        self.sequencer = TradeSequencer(venue.trade_ids_contiguous, self.config.hold_s)
        self.symbol_of = {venue.market(s): s for s in self.symbols}
        self.books: dict[str, BookSync] = {}
        self.state = STOPPED
        self.conn_states: dict[int, str] = {}
        self._ready: list[tuple] = []
        self._late: list[tuple] = []
        self._events: list[VenueEvent] = []
        self._books: list[BookUpdate] = []
        self._candles: list[Candle] = []
        self._marks: list[MarkPrice] = []
        self._drained = asyncio.Event()
        self.data_ready = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self._stopping = False
        self._session: aiohttp.ClientSession | None = None
        self._rest: VenueRest | None = None
        self._send_times: deque = deque()
        self._skew_ms: deque = deque(maxlen=1000)
        self._rate_window: deque = deque()
        self.rejects: Counter[str] = Counter()
        self.stats = Counter()
        self.last_error = ""
        self._resyncing: set[str] = set()  # markets with a snapshot request in flight
        self._resync_due: dict[str, float] = {}  # out-of-sync markets: when the next snapshot may be tried
        self._resync_backoff: dict[str, Backoff] = {}

    # ---- public -----------------------------------------------------------------------------
    async def run(self) -> None:
        """Run every connection until ``stop()``; never returns early on venue errors."""
        self._stopping = False
        self._session = aiohttp.ClientSession()
        self._rest = VenueRest(self._session, self.rest_url, attempts=self.config.rest_attempts,
                               timeout_s=self.config.rest_timeout_s,
                               backoff_s=self.config.backoff_initial_s, max_backoff_s=self.config.backoff_max_s)
        per_conn = max(1, self.venue.limits.max_streams_per_connection // max(1, self._streams_per_symbol()))
        chunks = [self.symbols[i:i + per_conn] for i in range(0, len(self.symbols), per_conn)]
        try:
            conns = [self._spawn(self._connection(i, chunk)) for i, chunk in enumerate(chunks)]
            self._spawn(self._expire_loop())
            await asyncio.gather(*conns)
        finally:
            for t in list(self._tasks):
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._session.close()
            self._set_state(-1, STOPPED)

    async def stop(self) -> None:
        self._stopping = True
        for t in list(self._tasks):
            t.cancel()

    def drain(self) -> SourceOutput:
        out = SourceOutput(rows_to_batch(self._ready), rows_to_batch(self._late), self._events, self._books,
                           self._candles, self._marks)
        self._ready, self._late, self._events, self._books, self._candles, self._marks = [], [], [], [], [], []
        self.data_ready.clear()
        self._drained.set()
        return out

    def pending_rows(self) -> int:
        return len(self._ready) + len(self._late)

    def metrics(self) -> dict:
        """Counters and gauges for dashboards: messages, rates, reconnects, gaps, lag, skew, state."""
        now = time.monotonic()
        while self._rate_window and now - self._rate_window[0] > 10.0:
            self._rate_window.popleft()
        skew = min(self._skew_ms) if self._skew_ms else float("nan")
        return {"venue": self.venue.name, "state": self.state, "connections": dict(self.conn_states),
                "messages": self.stats["frames"], "messages_per_s": len(self._rate_window) / 10.0,
                "trades": self.stats["trades"], "reconnects": self.stats["reconnects"],
                "gaps": self.sequencer.stats["gaps"], "missing": self.sequencer.stats["missing"],
                "recovered": self.sequencer.stats["recovered"], "duplicates": self.sequencer.stats["duplicates"],
                "degraded": self.sequencer.stats["released"], "book_resyncs": self.stats["book_resyncs"],
                "rejects": dict(self.rejects), "last_error": self.last_error,
                # min(local receive - venue event time): clock skew plus the fastest network delay
                "clock_skew_ms": skew, "lag_ms": self._skew_ms[-1] if self._skew_ms else float("nan"),
                "open_gaps": len(self.sequencer.open_gaps()), "rest": dict(self._rest.stats) if self._rest else {},
                "bad_snapshots": self.stats["bad_snapshots"], "task_errors": self.stats["task_errors"],
                "books_out_of_sync": sum(not b.synced for b in self.books.values())}

    # ---- connections ------------------------------------------------------------------------
    def _streams_per_symbol(self) -> int:
        fn = getattr(self.venue, "streams_per_symbol", None)
        return fn() if fn else 1

    def _spawn(self, coro, what: str = "", market: str = "",
               on_error: Callable[[str], None] | None = None) -> asyncio.Task:
        """Run ``coro`` in the background. Should it end with an exception, that is counted, logged with its
        traceback and reported: by ``on_error(detail)`` (which emits the event) or an ``error`` event."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        what = what or getattr(coro, "__name__", "task").lstrip("_")
        task.add_done_callback(lambda t: self._task_done(t, what, market, on_error))
        return task

    def _task_done(self, task: asyncio.Task, what: str, market: str,
                   on_error: Callable[[str], None] | None) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()  # retrieved: asyncio never logs it as "never retrieved"
        if exc is None:
            return
        self.stats["task_errors"] += 1
        detail = _one_line(f"{what} task failed: {type(exc).__name__}: {exc}")
        self.last_error = detail
        log.error("%s %s: %s", self.venue.name, market or "-", detail, exc_info=exc)
        try:
            if on_error is not None:
                on_error(detail)
            else:
                self._event("error", market, detail)
        except Exception:  # reporting must not fail silently either
            log.exception("%s %s: reporting a failed %s task failed", self.venue.name, market or "-", what)
            self._event("error", market, detail)

    def _event(self, kind: str, market: str = "", detail: str = "", **kw) -> None:
        self._events.append(VenueEvent(venue=self.venue.name, market=market, kind=kind, ts=time.time_ns(),
                                       detail=detail, **kw))
        self.data_ready.set()

    def _set_state(self, conn: int, state: str, detail: str = "") -> None:
        if conn >= 0:
            if self.conn_states.get(conn) == state:
                return
            self.conn_states[conn] = state
        order = [STALE, RECONNECTING, CONNECTING, SUBSCRIBED, LIVE, STOPPED]
        states = list(self.conn_states.values()) or [state]
        new = min(states, key=order.index) if conn >= 0 else state
        self._event("state", detail=f"connection {conn}: {state}" + (f" ({detail})" if detail else ""))
        self.state = new

    async def _connection(self, conn: int, symbols: list[str]) -> None:
        backoff = Backoff(self.config.backoff_initial_s, self.config.backoff_max_s)
        first = True
        while not self._stopping:
            if not first:
                self.stats["reconnects"] += 1
                self._set_state(conn, RECONNECTING, self.last_error)
                await asyncio.sleep(backoff.next())
            first = False
            self._set_state(conn, CONNECTING)
            try:
                live = await self._session_once(conn, symbols)
                if live:
                    backoff.reset()  # it worked for a while: start backoff afresh
            except asyncio.CancelledError:
                raise
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ConnectionError) as e:
                self.last_error = f"{type(e).__name__}: {e}"[:300]
            if self._stopping:
                break

    async def _session_once(self, conn: int, symbols: list[str]) -> bool:
        """One connection's life; returns whether it reached live."""
        url = self.venue.connect_url(self.ws_url, symbols)
        stale = self.config.stale_after_s or self.venue.limits.stale_after_s
        reached_live = False
        async with self._session.ws_connect(url, autoping=True, heartbeat=None, max_msg_size=0,
                                            timeout=aiohttp.ClientWSTimeout(ws_close=2.0)) as ws:
            for frame in self.venue.subscribe_frames(symbols):
                await self._paced_send(ws, frame)
            self._set_state(conn, SUBSCRIBED)
            pinger = self._spawn(self._ping_loop(ws)) if self.venue.ping_frame() else None
            try:
                while not self._stopping:
                    await self._backpressure()
                    try:
                        msg = await ws.receive(timeout=stale)
                    except asyncio.TimeoutError:
                        self._set_state(conn, STALE, f"no frame for {stale:g}s")
                        self.last_error = f"stale: no frame for {stale:g}s"
                        return reached_live
                    if msg.type == aiohttp.WSMsgType.TEXT or msg.type == aiohttp.WSMsgType.BINARY:
                        if not reached_live:
                            reached_live = True
                            self._set_state(conn, LIVE)
                        self._on_frame(msg.data)
                    elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING,
                                      aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                        self.last_error = f"closed by venue ({msg.type.name}: {msg.extra or ws.close_code})"
                        return reached_live
            finally:
                if pinger:
                    pinger.cancel()
        return reached_live

    async def _paced_send(self, ws, frame: str) -> None:
        """Send within the venue's outgoing messages-per-second limit."""
        rate = self.venue.limits.max_messages_per_second
        now = time.monotonic()
        while self._send_times and now - self._send_times[0] >= 1.0:
            self._send_times.popleft()
        if len(self._send_times) >= rate:
            await asyncio.sleep(1.0 - (now - self._send_times[0]) + 0.01)
        self._send_times.append(time.monotonic())
        await ws.send_str(frame)

    async def _ping_loop(self, ws) -> None:
        interval = self.config.ping_interval_s or self.venue.limits.ping_interval_s
        while not ws.closed:
            await asyncio.sleep(interval)
            try:
                await self._paced_send(ws, self.venue.ping_frame())
            except (aiohttp.ClientError, ConnectionError):
                return  # the connection is going away; its receive loop notices and reconnects

    async def _backpressure(self) -> None:
        while self.pending_rows() >= self.config.max_pending_rows and not self._stopping:
            self._drained.clear()
            await self._drained.wait()

    # ---- frames -----------------------------------------------------------------------------
    def _on_frame(self, data) -> None:
        if not hasattr(self, "_parser"):
            self._parser = self.venue.parser()
            self._out = FrameOutput()
        out = self._out
        before = sum(out.rejects.values())
        parse_frame(self._parser, data, out)
        self.stats["frames"] += 1
        self._rate_window.append(time.monotonic())
        if sum(out.rejects.values()) != before:
            self.rejects = Counter(out.rejects)
            self.last_error = out.last_error
            self._event("reject", detail=out.last_error)
        trades = out.take_rows()
        books, candles, marks = out.books, out.candles, out.marks
        out.books, out.candles, out.marks, out.control = [], [], [], []
        if trades:
            self.stats["trades"] += len(trades)
            self._skew_ms.append((time.time_ns() - trades[-1][1]) / 1e6)
            ready, gaps = self.sequencer.accept_rows(trades, time.monotonic())
            self._ready.extend(ready)
            for gap in gaps:
                self._event("gap", gap.market, f"{gap.missing} trades missing", from_id=gap.from_id,
                            to_id=gap.to_id, start_ts=gap.start_ts, end_ts=gap.end_ts)
                self._spawn(self._backfill(gap), "backfill", gap.market, on_error=self._backfill_died(gap))
        for upd in books:
            self._on_book(upd)
        self._candles.extend(candles)
        self._marks.extend(marks)
        if self._ready or books or candles or marks:
            self.data_ready.set()

    def _on_book(self, upd: BookUpdate) -> None:
        """Keep the market's book in sync; only what applies to an intact book goes downstream (a snapshot,
        then the diffs that chain onto it), so no consumer applies a diff to a book with a hole."""
        sync = self.books.get(upd.market)
        if sync is None:
            rule = BOOK_RULES.get(self.venue.name, "none")
            sync = self.books[upd.market] = BookSync(upd.market, rule)
            if not upd.snapshot and self.venue.book_snapshot_request(self.symbol_of.get(upd.market, "")):
                self._request_resync(upd.market, "initial snapshot")
        if upd.snapshot:
            self._apply_snapshot(sync, upd, "venue snapshot")
            return
        last = sync.book.last_seq
        verdict = sync.on_update(upd)
        if verdict == APPLIED:
            self._books.append(upd)
        elif verdict == GAP:
            self._event("gap", upd.market, f"book sequence gap after {last}", from_id=last + 1,
                        to_id=upd.first_seq - 1)
            self._request_resync(upd.market, "sequence gap")
        elif verdict == BUFFERED:
            due = self._resync_due.get(upd.market)
            if due is not None and time.monotonic() >= due:  # an earlier snapshot attempt failed: try again
                self._request_resync(upd.market, "retry")

    def _request_resync(self, market: str, why: str) -> None:
        if market in self._resyncing:
            return  # the snapshot on its way repairs this too
        self._resyncing.add(market)
        self._resync_due.pop(market, None)
        task = self._spawn(self._resync(market, why), "book resync", market,
                           on_error=lambda detail: self._resync_failed(market, detail))
        task.add_done_callback(lambda _: self._resyncing.discard(market))

    def _resync_failed(self, market: str, detail: str) -> None:
        """The book stays out of sync (diffs buffered); the next diff after a backoff asks for a snapshot again."""
        self.stats["book_resync_failures"] += 1
        sync = self.books.get(market)
        if sync is not None:
            sync.synced = False  # never apply diffs to a book whose repair did not happen
        backoff = self._resync_backoff.setdefault(
            market, Backoff(self.config.backoff_initial_s, self.config.backoff_max_s))
        delay = backoff.next()
        self._resync_due[market] = time.monotonic() + delay
        detail = _one_line(f"{detail}; book out of sync, next snapshot attempt in {delay:.2g}s")
        self.last_error = detail
        self._event("unrepaired", market, detail)

    async def _resync(self, market: str, why: str) -> None:
        symbol = self.symbol_of.get(market)
        req = self.venue.book_snapshot_request(symbol) if symbol else None
        if req is None:
            self._event("unrepaired", market, f"book {why}: venue has no REST snapshot; resubscribe needed")
            return
        try:
            body = await self._rest.get(*req)
        except RestError as e:
            self._resync_failed(market, f"book {why}: snapshot request failed: {e}")
            return
        try:
            snap = self.venue.parse_book_snapshot(symbol, body)
        except FrameError as e:
            self.stats["bad_snapshots"] += 1
            self._resync_failed(market, f"book {why}: malformed snapshot ({e}); body {body[:60]!r}")
            return
        except Exception as e:  # the parser did not foresee this input: still a bad snapshot, never a dead task
            self.stats["bad_snapshots"] += 1
            self.stats["snapshot_parser_errors"] += 1
            log.warning("%s %s: snapshot parser raised on a malformed body", self.venue.name, market, exc_info=e)
            self._resync_failed(market, f"book {why}: malformed snapshot, parser raised {type(e).__name__}: {e}; "
                                        f"body {body[:60]!r}")
            return
        self.stats["book_resyncs"] += 1
        self._apply_snapshot(self.books[market], snap, why)

    def _apply_snapshot(self, sync: BookSync, snap: BookUpdate, why: str) -> None:
        """Reset the book from ``snap`` and replay the buffered diffs; downstream gets the snapshot and the
        replayed diffs that applied. Diffs that do not chain onto it leave the book out of sync for a retry."""
        pending = list(sync.buffer)
        verdicts = sync.on_snapshot(snap)
        self._books.append(snap)
        self._books.extend(u for u, v in zip(pending, verdicts) if v == APPLIED)
        self.data_ready.set()
        market = sync.book.market
        if sync.synced:
            self._resync_due.pop(market, None)
            if market in self._resync_backoff:
                self._resync_backoff[market].reset()
            if why != "venue snapshot":
                self._event("resync", market, f"book {why}: snapshot at {snap.last_seq}", to_id=snap.last_seq)
            return
        self._event("gap", market, f"book {why}: buffered diffs do not chain onto the snapshot at {snap.last_seq}",
                    from_id=snap.last_seq + 1)
        if self.venue.book_snapshot_request(self.symbol_of.get(market, "")):
            self._resync_failed(market, f"book {why}: snapshot at {snap.last_seq} does not reach the buffered diffs")

    # ---- trade gaps -------------------------------------------------------------------------
    async def _backfill(self, gap: Gap) -> None:
        symbol = self.symbol_of.get(gap.market)
        cursor = gap.from_id - 1
        while not gap.repaired:
            req = self.venue.trades_request(symbol, cursor, gap.to_id - cursor) if symbol else None
            if req is None:
                self._give_up(gap, "the venue has no REST endpoint for missing trades")
                return
            try:
                body = await self._rest.get(*req)
            except RestError as e:
                self._give_up(gap, str(e))
                return
            out = FrameOutput()
            try:
                self.venue.parse_trades_response(symbol, body, out)
            except Exception as e:  # FrameError and whatever else odd input makes the parser raise
                self.stats["bad_trade_responses"] += 1
                if not isinstance(e, _PARSE_ERRORS):
                    self.stats["trades_parser_errors"] += 1
                    log.warning("%s %s: trades parser raised on a malformed body", self.venue.name, gap.market,
                                exc_info=e)
                self._give_up(gap, _one_line(f"bad REST trades response: {type(e).__name__}: {e}"))
                return
            batch = out.drain_trades()
            ids = batch.trade_id[batch.trade_id > cursor]
            ready, late = self.sequencer.repair(gap, batch)
            self._ready.extend(ready)
            self._late.extend(late)
            if gap.repaired:
                self._event("repair", gap.market, "late: bars rebuilt" if gap.released else "in time",
                            from_id=gap.from_id, to_id=gap.to_id, start_ts=gap.start_ts, end_ts=gap.end_ts,
                            count=gap.recovered)
                self.data_ready.set()
                return
            if not len(ids):
                self._give_up(gap, f"REST returned nothing after id {cursor}")
                return
            cursor = int(ids.max())

    def _backfill_died(self, gap: Gap) -> Callable[[str], None]:
        def report(detail: str) -> None:
            if gap.repaired:
                self._event("error", gap.market, detail)
            else:  # release the trades held behind the gap: they must not wait for a repair that died
                self._give_up(gap, detail)
        return report

    def _give_up(self, gap: Gap, why: str) -> None:
        self._ready.extend(self.sequencer.forget(gap))
        self._event("unrepaired", gap.market, why[:300], from_id=gap.from_id, to_id=gap.to_id,
                    start_ts=gap.start_ts, end_ts=gap.end_ts, count=gap.recovered)

    async def _expire_loop(self) -> None:
        while True:
            await asyncio.sleep(min(0.1, self.config.hold_s / 4))
            ready, released = self.sequencer.expire(time.monotonic())
            self._ready.extend(ready)
            for gap in released:
                self._event("degraded", gap.market, f"repair not done within {self.config.hold_s:g}s",
                            from_id=gap.from_id, to_id=gap.to_id, start_ts=gap.start_ts, end_ts=gap.end_ts)
            if ready:
                self.data_ready.set()
