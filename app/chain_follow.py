"""``crypto-intel chain follow``: follow a chain live, keep per-wallet state, write alerts as they come.

With Ray (default), wallet state lives in ``--shards`` wallet shard actors; ``--in-process`` keeps
it in this process. Alerts (and retractions of alerts whose block was orphaned) are appended to
``<out-dir>/chain-alerts.jsonl``; ``chain-status.json`` holds the follower's counters at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

from connectors.chain.follower import ChainFollower, FollowerConfig
from connectors.chain.rpc import RpcClient
from engine.chain.confirmed import ConfirmedSwaps, priced_assets, trade_batch
from engine.wallets.book import Thresholds


async def follow(args: argparse.Namespace) -> dict:
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    prices = {"": (args.native_usd, 18)} if args.native_usd else {}
    thresholds = Thresholds(whale_usd=args.whale_usd)
    if args.in_process:
        from engine.chain.state import ChainState
        from engine.wallets.labels import LabelSet
        inner = ChainState(args.chain_name, args.shards, labels=LabelSet.load(), prices=prices, window=args.window,
                           thresholds=thresholds)
    else:
        from actors.runtime import start_ray
        from actors.wallet_shard import RayChainSink, WalletShardActor
        start_ray(dashboard=False)
        from engine.wallets.labels import LabelSet
        inner = RayChainSink([WalletShardActor.remote(args.chain_name, i, args.shards, prices, thresholds, args.window)
                              for i in range(args.shards)], chain=args.chain_name, labels=LabelSet.load(),
                             window=args.window)
    store = await _store(args.chain_name)
    markets = MarketFeed(out_dir, None if args.in_process or args.no_markets else _pipeline(args, out_dir))
    sink = RecordingSink(inner, store, args.chain_name, out_dir / "chain-alerts.jsonl", markets)
    config = FollowerConfig(window=args.window, confirmations=args.confirmations, poll_s=args.poll_s)
    try:
        async with RpcClient(args.rpc) as rpc:
            follower = ChainFollower(rpc, sink, from_block=args.from_block, ws_url=args.ws, config=config,
                                     chain=args.chain_name)
            prices_poller = await _price_feed(args, follower, inner, prices)
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, follower.stop)
            t0 = time.monotonic()
            runner = asyncio.ensure_future(follower.run(until_block=args.to_block))
            while not runner.done():
                await asyncio.wait([runner], timeout=args.status_s)
                s = follower.stats
                print(f"{time.monotonic() - t0:6.1f}s  block {follower.next - 1}  head {follower.target}  "
                      f"{s['blocks']} blocks  {s['reorgs']} reorgs ({s['orphaned']} orphaned)  "
                      f"{s['reconnects']} reconnects  {s['rejected']} rejected", file=sys.stderr)
                if args.max_seconds and time.monotonic() - t0 >= args.max_seconds:
                    follower.stop()
            await runner
            if prices_poller is not None:
                await prices_poller.stop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
    finally:
        sink.close()
        market_status = markets.finish()
        if store is not None:
            await store.close()
    status = {**follower.stats, "next_block": follower.next, "last_error": follower.last_error,
              "processed": len(follower.processed), "alerts": sink.counts, "markets": market_status}
    (out_dir / "chain-status.json").write_text(json.dumps(status, indent=1))
    return status


async def _store(chain: str):
    """Postgres (migrated) and the Redis live feed when DATABASE_URL / REDIS_URL are set."""
    db, redis_url = os.environ.get("DATABASE_URL"), os.environ.get("REDIS_URL")
    if not db and not redis_url:
        return None
    from connectors.storage.chain_store import ChainStore
    feed = None
    if db:
        from connectors.storage.migrate import migrate
        await migrate(db)
    if redis_url:
        from connectors.storage.redis_feed import RedisFeed
        from connectors.storage.redis_keys import RedisKeys
        feed = RedisFeed.from_url(redis_url, keys=RedisKeys(namespace=os.environ.get("CRYPTO_INTEL_REDIS_NAMESPACE",
                                                                                        "ci")))
    store = await ChainStore(db, feed).start()
    if chain == "ethereum":  # the bundled labels are Ethereum mainnet addresses
        from engine.wallets.labels import LabelSet
        added = await store.load_labels(chain, LabelSet.load())
        if added:
            print(f"loaded {added:,} wallet labels into wallet_labels", file=sys.stderr)
    return store


class RecordingSink:
    """Wraps the wallet state (in-process or Ray shards): writes each block's alerts to a JSON Lines
    file and, when configured, its transfers and alerts to Postgres and the live feed."""

    def __init__(self, inner, store, chain: str, alerts_path: Path, markets: "MarketFeed | None" = None) -> None:
        self.inner, self.store, self.chain, self.markets = inner, store, chain, markets
        self.file = open(alerts_path, "a", encoding="utf-8")
        self.counts = {"alerts": 0, "retracted": 0}

    def _write(self, alerts) -> None:
        for a in alerts:
            self.file.write(a.model_dump_json() + "\n")
            self.counts["retracted" if a.retracted else "alerts"] += 1
            if a.severity == "high" or a.retracted:
                print(f"{'RETRACTED ' if a.retracted else ''}{a.kind} block {a.block_number} {a.address}: "
                      f"{a.message}", file=sys.stderr)
        self.file.flush()

    async def apply(self, block) -> None:
        n = len(self.inner.alerts)
        await self.inner.apply(block)
        new = self.inner.alerts[n:]
        self._write(new)
        if self.markets is not None:
            self.markets.hold(block)
        if self.store is not None:
            await self.store.block(self.chain, block.header, block.transfers, new)

    async def retract(self, orphaned, deep) -> None:
        if deep:
            print(f"DEEP REORG: no common ancestor within the window; retracting {len(orphaned)} blocks and "
                  "rebuilding from the new chain", file=sys.stderr)
        if self.markets is not None:
            self.markets.drop(orphaned)
        n = len(self.inner.alerts)
        await self.inner.retract(orphaned, deep)
        new = self.inner.alerts[n:]
        self._write(new)
        if self.store is not None:
            await self.store.retract(self.chain, orphaned, new)

    async def confirmed(self, numbers) -> None:
        await self.inner.confirmed(numbers)
        if self.markets is not None:
            self.markets.release(numbers)

    def close(self) -> None:
        self.file.close()


async def _price_feed(args: argparse.Namespace, follower: ChainFollower, inner, prices: dict):
    """USD prices for whale alerts from CoinGecko, refreshed while following (``--price-source coingecko``).

    The native coin is ``--native-id`` (default ethereum); ``--token-id ADDRESS=ID`` adds tokens, whose
    decimals come from the chain. Prices are current ones: a block's alert uses the price when it is seen.
    """
    if args.price_source != "coingecko":
        return None
    from connectors.refdata.coingecko import CoinGecko, coingecko_config
    from connectors.refdata.poller import RefDataPoller
    ids: dict[str, str] = {"": args.native_id}
    for item in args.token_id or []:
        address, _, cid = item.partition("=")
        ids[address.strip().lower()] = cid.strip()

    async def on_records(records) -> None:
        for token, usd in priced_assets(records, ids).items():
            meta = (18, "") if token == "" else await follower.tokens.token(token)
            if meta:
                prices[token] = (usd, meta[0])
        await inner.set_prices(dict(prices))

    config = coingecko_config(base_url=args.coingecko_url)
    poller = RefDataPoller(coingecko=CoinGecko(config), coingecko_ids=sorted(set(ids.values())),
                           interval_s=args.price_interval_s, on_records=on_records)
    try:  # the first prices before the first block, so early transfers are valued too
        await on_records(await poller.poll_once())
    except Exception as e:  # a price source down is not a reason to stop following the chain
        print(f"prices: first CoinGecko round failed ({e}); retrying in the background", file=sys.stderr)
    poller.start()
    return poller


def _market_config(args: argparse.Namespace):
    """The market pipeline's config (``--timeframes``, ``--strategy``)."""
    from app.inputs import make_config
    return make_config({"timeframes": "--timeframes", "strategy": "--strategy"},
                       timeframes=tuple(t for t in args.timeframes.split(",") if t), strategy=args.strategy,
                       batch_size=4096)


def _pipeline(args: argparse.Namespace, out_dir: Path):
    from actors.pipeline import RayPipeline
    return RayPipeline(_market_config(args), out_path=str(out_dir / "chain-signals.jsonl"), keep=False)


class MarketFeed:
    """Confirmed DEX swaps into the market pipeline (see :class:`ConfirmedSwaps`); every priced swap is
    also written to ``chain-trades.jsonl``."""

    def __init__(self, out_dir: Path, pipe) -> None:
        self.pipe = pipe
        self.swaps = ConfirmedSwaps()
        self.file = open(out_dir / "chain-trades.jsonl", "a", encoding="utf-8")
        self.sent = 0

    def hold(self, block) -> None:
        self.swaps.hold(block.header.number, block.header.hash, block.trades)

    def drop(self, orphaned) -> None:
        self.swaps.drop(orphaned)

    def release(self, numbers: list[int]) -> None:
        trades = self.swaps.release(numbers)
        if not trades:
            return
        for t in trades:
            self.file.write(t.model_dump_json() + "\n")
        self.file.flush()
        self.sent += len(trades)
        if self.pipe is not None:
            self.pipe.send(trade_batch(trades), {"chain": trades[-1].trade_id})

    def finish(self) -> dict:
        self.file.close()
        if self.pipe is None:
            return {"trades": self.sent}
        self.pipe.finish()
        st = self.pipe.status()
        self.pipe.shutdown()
        return {"trades": self.sent, "candles": st["candles"], "signals": st["signals"]}


def check_args(args: argparse.Namespace) -> None:
    """What can be refused before Ray, the node or the services are touched."""
    from app.flags import check_out_dir
    from app.inputs import CommandLineError, check_strategy
    if args.to_block is not None and args.to_block < args.from_block:
        raise CommandLineError(f"--to-block {args.to_block} is before --from-block {args.from_block}")
    check_out_dir("--out-dir", args.out_dir)
    if not (args.in_process or args.no_markets):
        check_strategy(_market_config(args))


def cmd_follow(args: argparse.Namespace) -> int:
    check_args(args)
    status = asyncio.run(follow(args))
    print(f"followed {status['blocks']} blocks ({status['reorgs']} reorgs, {status['orphaned']} orphaned, "
          f"{status['deep_reorgs']} deeper than the window), {status['rejected']} rejected responses", file=sys.stderr)
    return 0
