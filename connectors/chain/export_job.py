"""``chain export``: blocks, transactions, logs and token transfers of a block range, in ethereum-etl's files.

The range is cut into batches of ``batch_size`` blocks; a few batches are fetched at once (JSON-RPC
batch requests inside each) and written in block order. Logs come from the receipts (one
``eth_getBlockReceipts`` per block, or one receipt per transaction); when only token transfers are
asked for, a single ``eth_getLogs`` per batch filtered on the Transfer topic replaces the receipts,
as ethereum-etl's ``export_token_transfers`` does. A batch whose answers turn out malformed is
fetched again (up to ``attempts`` times) before the export stops with the reason.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from connectors.chain.rpc import RpcClient, RpcConfig
from engine.chain.decode import (
    TRANSFER_TOPIC,
    decode_block,
    decode_block_transactions,
    decode_log,
    decode_receipt,
    decode_receipt_logs,
    token_transfer_from_log,
)
from engine.chain.errors import ChainDataError, RpcError
from engine.chain.formats import RowWriter, with_receipt
from engine.progress import Progress
from schemas.errors import ConfigError

ENTITIES = ("blocks", "transactions", "logs", "token_transfers")  # the default set
ALL_ENTITIES = ENTITIES + ("receipts",)
FORMATS = ("csv", "json", "stream")


@dataclass(frozen=True)
class ExportConfig:
    """What to export from where, and how."""

    rpc_url: str
    from_block: int
    to_block: int
    out_dir: Path
    batch_size: int = 100  # blocks per batch
    entities: tuple[str, ...] = ENTITIES
    fmt: str = "csv"  # csv | json (ethereum-etl export files) | stream (ethereum-etl stream items, JSON)
    logs_format: str | None = None  # default json beside CSV files (ethereum-etl export_all), else fmt's
    concurrency: int = 4  # batches in flight
    attempts: int = 3  # fetches of a batch whose answers are malformed
    rpc_timeout_s: float = 30.0
    rpc_attempts: int = 5

    def __post_init__(self) -> None:
        if not self.rpc_url.startswith(("http://", "https://")):
            raise ConfigError(f"--rpc must be an http:// or https:// URL, got {self.rpc_url!r}")
        if self.from_block < 0 or self.to_block < self.from_block:
            raise ConfigError(f"block range {self.from_block}..{self.to_block} is empty or negative: "
                              "--from-block must be >= 0 and <= --to-block")
        if self.batch_size < 1 or self.concurrency < 1 or self.attempts < 1:
            raise ConfigError("--batch-size, concurrency and attempts must be at least 1")
        unknown = [e for e in self.entities if e not in ALL_ENTITIES]
        if unknown or not self.entities:
            raise ConfigError(f"unknown entities {unknown or '(none given)'}; choose from {', '.join(ALL_ENTITIES)}")
        if self.fmt not in FORMATS:
            raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {self.fmt!r}")
        if self.logs_format not in (None, "csv", "json") or (self.fmt != "csv" and self.logs_format == "csv"):
            raise ConfigError("--logs-format must be csv or json, and csv only with --format csv")

    def entity_format(self, entity: str) -> str:
        """The format one entity is written in: logs beside CSV files default to JSON, as in ethereum-etl's
        ``export_all`` (topics are a list; JSON keeps it one)."""
        if self.fmt != "csv":
            return self.fmt
        return (self.logs_format or "json") if entity == "logs" else "csv"

    def file_name(self, entity: str) -> str:
        """The file an entity goes to, e.g. ``blocks.csv``, ``logs.json``."""
        return f"{entity}.{'csv' if self.entity_format(entity) == 'csv' else 'json'}"


@dataclass
class ExportResult:
    """What an export wrote and what it took."""

    blocks: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)
    elapsed_s: float = 0.0
    refetched_batches: int = 0
    rpc_stats: dict[str, int] = field(default_factory=dict)
    fallbacks: dict[str, bool | None] = field(default_factory=dict)

    def summary(self, config: ExportConfig) -> str:
        """One line for stderr."""
        n = self.counts
        rate = self.blocks / self.elapsed_s if self.elapsed_s > 0 else 0.0
        s = self.rpc_stats
        text = (f"blocks {config.from_block}..{config.to_block}: {self.blocks:,} blocks, "
                + ", ".join(f"{n[e]:,} {e.replace('_', ' ')}" for e in config.entities if e != "blocks")
                + f" -> {config.out_dir} ({self.elapsed_s:.1f}s, {rate:,.0f} blocks/s; rpc: "
                f"{s.get('http_requests', 0):,} requests, {s.get('retries', 0)} retries, "
                f"{s.get('malformed', 0)} malformed answers, {self.refetched_batches} batches fetched again)")
        off = [m for m, ok in self.fallbacks.items() if ok is False]
        return text + (f"; node lacks {', '.join(off)}: used fallbacks" if off else "")


@dataclass
class _Batch:
    first: int
    last: int
    rows: dict[str, list[dict[str, Any]]]


class _Plan:
    """Which RPC calls the requested entities need."""

    def __init__(self, config: ExportConfig) -> None:
        wanted = set(config.entities)
        stream = config.fmt == "stream"
        self.receipts = bool(wanted & {"logs", "receipts"}) or (stream and "transactions" in wanted)
        # token transfers alone come cheaper from one filtered eth_getLogs per batch
        self.transfer_logs = "token_transfers" in wanted and not self.receipts
        # stream token transfers carry block_timestamp: blocks are needed for it
        self.blocks = bool(wanted & {"blocks", "transactions"}) or self.receipts or \
            (stream and "token_transfers" in wanted)
        self.wanted = wanted


async def _fetch_batch(client: RpcClient, plan: _Plan, first: int, last: int) -> _Batch:
    rows: dict[str, list[dict[str, Any]]] = {e: [] for e in plan.wanted}
    timestamps: dict[int, int] = {}
    blocks: list[dict[str, Any]] = []
    if plan.blocks:
        blocks = await client.get_blocks(list(range(first, last + 1)), full_tx=True)
    receipts = await client.get_blocks_receipts(blocks) if plan.receipts else [[] for _ in blocks]
    for block, block_receipts in zip(blocks, receipts):
        b = decode_block(block)
        timestamps[b["number"]] = b["timestamp"]
        if "blocks" in plan.wanted:
            rows["blocks"].append(b)
        by_hash = {}
        for r in block_receipts:
            receipt = decode_receipt(r)
            receipt["block_timestamp"] = b["timestamp"]
            by_hash[receipt["transaction_hash"].lower()] = receipt
            if "receipts" in plan.wanted:
                rows["receipts"].append(receipt)
            for entry in decode_receipt_logs(r, b["timestamp"]):
                if "logs" in plan.wanted:
                    rows["logs"].append(entry)
                if "token_transfers" in plan.wanted and (t := token_transfer_from_log(entry)) is not None:
                    rows["token_transfers"].append(t)
        if "transactions" in plan.wanted:
            for tx in decode_block_transactions(block):
                rows["transactions"].append(with_receipt(tx, by_hash.get(tx["hash"].lower())) if plan.receipts
                                            else tx)
    if plan.transfer_logs:
        entries = [decode_log(x) for x in await client.get_logs(first, last, topics=[TRANSFER_TOPIC])]
        entries.sort(key=lambda x: (x["block_number"], x["log_index"]))
        for entry in entries:
            if not first <= entry["block_number"] <= last:
                raise client.malformed(f"eth_getLogs {first}..{last}: the node returned a log of block "
                                       f"{entry['block_number']}")
            entry["block_timestamp"] = timestamps.get(entry["block_number"])
            if (t := token_transfer_from_log(entry)) is not None:
                rows["token_transfers"].append(t)
    return _Batch(first, last, rows)


async def _fetch_with_retries(client: RpcClient, plan: _Plan, config: ExportConfig, first: int, last: int,
                              result: ExportResult) -> _Batch:
    for attempt in range(1, config.attempts + 1):
        try:
            return await _fetch_batch(client, plan, first, last)
        except ChainDataError as e:
            # a truncated or garbled answer is often a proxy's hiccup: the same calls usually come back whole
            if attempt == config.attempts:
                raise ChainDataError(f"blocks {first}..{last}: malformed data from the node after "
                                     f"{config.attempts} attempts: {e}") from None
            result.refetched_batches += 1
            print(f"chain export: blocks {first}..{last}: {e}; fetching again ({attempt}/{config.attempts})",
                  file=sys.stderr)
        except RpcError as e:  # same class (callers tell "unavailable" from "not found"), with the range added
            raise type(e)(e.method, f"{e.node_message} (fetching blocks {first}..{last})", e.code) from None
    raise AssertionError("unreachable")


async def export_range(config: ExportConfig, client: RpcClient | None = None,
                       progress_stream: IO[str] | None = None,
                       on_batch: Callable[[int, int], None] | None = None) -> ExportResult:
    """Export ``config``'s block range to its files; ``client`` defaults to one on ``config.rpc_url``."""
    own = client is None
    if client is None:
        client = RpcClient(RpcConfig(config.rpc_url, timeout_s=config.rpc_timeout_s, attempts=config.rpc_attempts))
    plan = _Plan(config)
    result = ExportResult(counts={e: 0 for e in config.entities})
    config.out_dir.mkdir(parents=True, exist_ok=True)
    writers = {}
    for e in config.entities:
        writers[e] = RowWriter(config.out_dir / config.file_name(e), e, config.entity_format(e))
        result.files[e] = writers[e].path
    total = config.to_block - config.from_block + 1
    ranges = [(a, min(a + config.batch_size - 1, config.to_block))
              for a in range(config.from_block, config.to_block + 1, config.batch_size)]
    progress = Progress(total, "chain export blocks", stream=progress_stream) if len(ranges) > 1 else None
    started = time.monotonic()
    in_flight: deque[asyncio.Task[_Batch]] = deque()
    try:
        for first, last in ranges:
            in_flight.append(asyncio.create_task(_fetch_with_retries(client, plan, config, first, last, result)))
            if len(in_flight) >= config.concurrency:
                _write(await in_flight.popleft(), writers, result, progress, on_batch)
        while in_flight:
            _write(await in_flight.popleft(), writers, result, progress, on_batch)
    finally:
        for task in in_flight:  # after a failure: stop the batches still running, and collect them
            task.cancel()
        await asyncio.gather(*in_flight, return_exceptions=True)
        for w in writers.values():
            w.close()
        if progress is not None:
            if result.blocks == total:
                progress.draw()  # the final 100% line, whatever the redraw interval skipped
            progress.close()
        result.elapsed_s = time.monotonic() - started
        result.rpc_stats = dict(client.stats)
        result.fallbacks = dict(client.supports)
        if own:
            await client.close()
    return result


def _write(batch: _Batch, writers: dict[str, RowWriter], result: ExportResult, progress: Progress | None,
           on_batch: Callable[[int, int], None] | None) -> None:
    for entity, w in writers.items():
        w.write_all(batch.rows[entity])
        result.counts[entity] += len(batch.rows[entity])
    n = batch.last - batch.first + 1
    result.blocks += n
    if progress is not None:
        progress.advance(n)
    if on_batch is not None:
        on_batch(batch.first, batch.last)


def run_export(config: ExportConfig, progress_stream: IO[str] | None = None) -> ExportResult:
    """Run :func:`export_range` to completion in a fresh event loop (the CLI's entry point)."""
    return asyncio.run(export_range(config, progress_stream=progress_stream))
