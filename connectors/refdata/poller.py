"""Keeps the latest CoinGecko prices and DexScreener pools in memory by polling them on an interval."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence

from connectors.refdata.coingecko import CoinGecko
from connectors.refdata.dexscreener import DexScreener, address_key
from connectors.refdata.http import RateLimited, RefDataError
from connectors.retry import Backoff
from schemas.records import DexPair, ReferencePrice

log = logging.getLogger(__name__)

RefRecord = ReferencePrice | DexPair
OnRecords = Callable[[list[RefRecord]], Awaitable[None]]


def _changed(old: RefRecord | None, new: RefRecord) -> bool:
    # a DexPair's ts is the fetch time, so it always moves; only its values make it news
    if old is None:
        return True
    if isinstance(new, DexPair):
        return old.model_dump(exclude={"ts"}) != new.model_dump(exclude={"ts"})
    return old != new


class RefDataPoller:
    """Polls the configured CoinGecko ids and DexScreener pools every ``interval_s``, never dying on errors.

    ``on_records`` (optional, async) receives the records that are new in each round: a price CoinGecko
    updated, a pool whose values moved. A round with errors doubles the wait before the next one, up to
    ``max_backoff_s`` (or longer when the source's Retry-After says so); a clean round resets it.
    """

    def __init__(self, *, coingecko: CoinGecko | None = None, coingecko_ids: Sequence[str] = (),
                 use_markets: bool = False, dexscreener: DexScreener | None = None,
                 dex_pairs: Mapping[str, Sequence[str]] | None = None, interval_s: float = 60.0,
                 max_backoff_s: float = 600.0, on_records: OnRecords | None = None,
                 stop_grace_s: float = 5.0) -> None:
        if coingecko_ids and coingecko is None:
            raise ValueError("coingecko_ids need a CoinGecko client")
        if dex_pairs and dexscreener is None:
            raise ValueError("dex_pairs need a DexScreener client")
        if interval_s <= 0:
            raise ValueError("interval_s must be > 0")
        self.coingecko = coingecko
        self.coingecko_ids = list(coingecko_ids)
        self.use_markets = use_markets
        self.dexscreener = dexscreener
        self.dex_pairs = {chain: list(addrs) for chain, addrs in (dex_pairs or {}).items()}
        self.interval_s = interval_s
        self.max_backoff_s = max(max_backoff_s, interval_s)
        self._backoff = Backoff(interval_s, self.max_backoff_s)  # after failed rounds: interval doubling
        self.on_records = on_records
        self.stop_grace_s = stop_grace_s
        self._prices: dict[str, ReferencePrice] = {}
        self._pairs: dict[tuple[str, str], DexPair] = {}
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.consecutive_errors = 0
        self.last_error: str | None = None
        self.stats: dict[str, int] = {"rounds": 0, "records": 0, "delivered": 0, "errors": 0,
                                      "callback_errors": 0}

    def latest_price(self, asset: str) -> ReferencePrice | None:
        """The newest price of a CoinGecko id, or None before the first successful fetch."""
        return self._prices.get(asset)

    def latest_pair(self, chain: str, address: str) -> DexPair | None:
        """The newest state of a pool, or None before the first successful fetch."""
        return self._pairs.get((chain, address_key(address)))

    @property
    def running(self) -> bool:
        """Whether the polling task is alive."""
        return self._task is not None and not self._task.done()

    def start(self) -> asyncio.Task[None]:
        """Start polling in a background task (idempotent while running)."""
        if self._task is None or self._task.done():
            self._stop.clear()
            self._task = asyncio.create_task(self.run(), name="refdata-poller")
        return self._task

    async def stop(self) -> None:
        """Stop polling: let a round in flight finish for ``stop_grace_s``, then cancel it."""
        self._stop.set()
        task, self._task = self._task, None
        if task is None or task.done():
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), self.stop_grace_s)
        except TimeoutError:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def run(self) -> None:
        """Poll until :meth:`stop`; errors are counted and logged and make the next wait longer."""
        while not self._stop.is_set():
            wait = await self._round()
            try:
                await asyncio.wait_for(self._stop.wait(), wait)
            except TimeoutError:
                pass

    async def poll_once(self) -> list[RefRecord]:
        """One round over every source; returns the new records, then raises the first source error if any."""
        fresh, errors = await self._collect()
        if errors:
            raise errors[0]
        return fresh

    def _fetches(self) -> list[Callable[[], Awaitable[list[RefRecord]]]]:
        calls: list[Callable[[], Awaitable[list[RefRecord]]]] = []
        if self.coingecko is not None and self.coingecko_ids:
            cg, ids = self.coingecko, self.coingecko_ids
            calls.append(lambda: (cg.markets(ids) if self.use_markets else cg.prices(ids)))
        if self.dexscreener is not None:
            for chain, addresses in self.dex_pairs.items():
                calls.append(lambda ds=self.dexscreener, c=chain, a=addresses: ds.pairs(c, a))
        return calls

    def _remember(self, records: Sequence[RefRecord]) -> list[RefRecord]:
        fresh = []
        for r in records:
            self.stats["records"] += 1
            if isinstance(r, ReferencePrice):
                old: RefRecord | None = self._prices.get(r.asset)
                if old is not None and r.ts < old.ts:
                    continue  # an older quote (a lagging edge cache) must not replace a newer one
                self._prices[r.asset] = r
            else:
                key = (r.chain, address_key(r.pair_address))
                old = self._pairs.get(key)
                self._pairs[key] = r
            if _changed(old, r):
                fresh.append(r)
        return fresh

    async def _collect(self) -> tuple[list[RefRecord], list[Exception]]:
        """Fetch every source, remember and deliver what is new; source errors are returned, not raised."""
        delivered: list[RefRecord] = []
        errors: list[Exception] = []
        for fetch in self._fetches():
            try:
                fresh = self._remember(await fetch())
            except RefDataError as e:
                errors.append(e)
                log.warning("refdata poll failed: %s", e)
                continue
            except Exception as e:  # a bug or an unforeseen answer: log with traceback, keep polling
                errors.append(e)
                log.exception("refdata poll failed unexpectedly")
                continue
            delivered.extend(fresh)
            if fresh and self.on_records is not None:
                try:
                    await self.on_records(fresh)
                    self.stats["delivered"] += len(fresh)
                except Exception:  # the consumer's failure is not the source's: no backoff
                    self.stats["callback_errors"] += 1
                    log.exception("refdata on_records callback failed")
        if errors:
            self.stats["errors"] += len(errors)
            self.last_error = f"{type(errors[-1]).__name__}: {errors[-1]}"
        return delivered, errors

    async def _round(self) -> float:
        """Run one round, never raising; returns how long to wait before the next."""
        self.stats["rounds"] += 1
        _, errors = await self._collect()
        if not errors:
            self.consecutive_errors = 0
            return self.interval_s
        self.consecutive_errors += 1
        wait = self._backoff.base(min(self.consecutive_errors, 30) + 1)
        # a source that named its own wait gets at least that
        hinted = [e.retry_after_s for e in errors if isinstance(e, RateLimited) and e.retry_after_s]
        return max([wait, *hinted])
