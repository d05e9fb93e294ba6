"""A small async Ethereum JSON-RPC client over aiohttp: batches, timeouts, retries, fallbacks.

Connection errors, timeouts, 5xx and 429 answers are retried with exponential backoff and jitter
(a 429's ``Retry-After`` is honoured up to ``max_backoff_s``); a node's JSON-RPC error becomes an
:class:`RpcError` naming the method and the node's message. An answer that is not the JSON-RPC the
method promises (not JSON, truncated, no ``result``, wrong types, numbers over 256 bits) raises
:class:`ChainDataError` and is counted in ``stats["malformed"]``; the client stays usable.

Where nodes differ, the client falls back and remembers it: ``eth_getBlockReceipts`` to one
``eth_getTransactionReceipt`` per transaction, ``eth_getLogs`` to ``eth_newFilter`` +
``eth_getFilterLogs`` + ``eth_uninstallFilter``, a refused batch to single requests.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from connectors.http import Answer, HttpClient, snippet
from engine.chain.decode import (
    block_transaction_hashes,
    check_receipts,
    hex_data,
    quantity,
)
from engine.chain.errors import (
    ChainDataError,
    RpcError,
    RpcMethodNotFound,
    RpcUnavailable,
)
from schemas.errors import ConfigError

log = logging.getLogger(__name__)

BlockId = int | str  # a number, or a tag such as "latest"
Call = tuple[str, Sequence[Any]]

# how nodes and providers say "no such method" besides the standard -32601
_NOT_FOUND = re.compile(r"method .*(not found|does not exist|not (supported|available))|unsupported method|"
                        r"not supported|unknown method", re.IGNORECASE)
# how they say a log query spans too much (worth splitting the block range)
_TOO_MANY = re.compile(r"more than \d+ results|too many|limit exceeded|range is too (large|wide)|"
                       r"block range|response size", re.IGNORECASE)


@dataclass(frozen=True)
class RpcConfig:
    """Where the node is and how hard to try."""

    url: str
    timeout_s: float = 30.0
    attempts: int = 5  # tries per HTTP request for connection errors, timeouts, 5xx and 429
    backoff_s: float = 0.5  # first retry delay; doubles per attempt, with jitter
    max_backoff_s: float = 10.0
    max_batch: int = 100  # calls per JSON-RPC batch request (providers cap it, often at 100)

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ConfigError(f"--rpc must be an http:// or https:// URL, got {self.url!r}")
        if self.attempts < 1 or self.max_batch < 1 or self.timeout_s <= 0 or self.backoff_s < 0:
            raise ConfigError("rpc: attempts and max_batch must be >= 1, timeout_s > 0, backoff_s >= 0")


def block_param(block: BlockId) -> str:
    """A block number as the hex quantity JSON-RPC wants; tags pass through."""
    if isinstance(block, bool) or not isinstance(block, int | str):
        raise ConfigError(f"block must be a number or a tag, got {block!r}")
    if isinstance(block, int):
        if block < 0:
            raise ConfigError(f"block number must be >= 0, got {block}")
        return hex(block)
    return block


class RpcClient(HttpClient):
    """Ethereum JSON-RPC over HTTP; counters in :attr:`stats`, fallbacks remembered per client."""

    REQUESTS = "http_requests"

    def __init__(self, config: RpcConfig | str, session: aiohttp.ClientSession | None = None) -> None:
        self.config = RpcConfig(config) if isinstance(config, str) else config
        super().__init__(name="rpc", attempts=self.config.attempts, backoff_s=self.config.backoff_s,
                         max_backoff_s=self.config.max_backoff_s, timeout_s=self.config.timeout_s, session=session)
        self._ids = itertools.count(1)
        self.stats.update({"calls": 0, "batches": 0, "errors": 0, "malformed": 0, "fallbacks": 0})
        self.last_malformed = ""
        # None: not tried yet; False: the node refused it, use the fallback from now on
        self.supports: dict[str, bool | None] = {"batch": None, "eth_getBlockReceipts": None, "eth_getLogs": None}

    # ------------------------------------------------------------------------------------------ transport

    def malformed(self, message: str) -> ChainDataError:
        """Count a malformed answer and return the error to raise."""
        self.stats["malformed"] += 1
        self.last_malformed = message
        return ChainDataError(message)

    def rejected(self, shown: str, url: str, answer: Answer) -> Exception:
        self.stats["errors"] += 1
        return RpcError(shown, f"rejected with HTTP {answer.status}: {snippet(answer.body)}")

    def unavailable(self, shown: str, url: str, last: str, last_status: int) -> Exception:
        self.stats["errors"] += 1
        return RpcUnavailable(shown, f"failed after {self.attempts} attempts; last error: {last}")

    async def _post(self, payload: Any, shown: str) -> Any:
        """POST one JSON-RPC payload and return the decoded JSON, retrying what is worth retrying."""
        answer = await self.send("POST", self.config.url, shown=shown, accept=_answered, data=orjson.dumps(payload),
                                 headers={"Content-Type": "application/json"})
        try:
            return orjson.loads(answer.body)
        except orjson.JSONDecodeError as e:
            raise self.malformed(f"{shown}: HTTP {answer.status} answer is not JSON ({e}); {len(answer.body)} bytes "
                                 f"starting {snippet(answer.body)!r}") from None

    def _unwrap(self, envelope: Any, method: str, call_id: int) -> Any:
        """The ``result`` of one JSON-RPC response object, or the :class:`RpcError` it carries (returned: in a
        batch one call's error must not hide the others' results)."""
        if not isinstance(envelope, dict):
            raise self.malformed(f"{method}: expected a JSON-RPC response object, got {snippet(repr(envelope))!r}")
        error = envelope.get("error")
        if envelope.get("id") != call_id and not (error is not None and envelope.get("id") is None):
            # (an error may come with id null: the node could not read the request's id)
            raise self.malformed(f"{method}: response id {envelope.get('id')!r} does not match request id {call_id}")
        if error is not None:
            if not isinstance(error, dict) or not isinstance(error.get("message"), str) or \
                    not isinstance(error.get("code", 0), int):
                raise self.malformed(f"{method}: unreadable JSON-RPC error {snippet(repr(error))!r}")
            code, message = error.get("code"), error["message"]
            self.stats["errors"] += 1
            if code == -32601 or _NOT_FOUND.search(message):
                return RpcMethodNotFound(method, message, code)
            return RpcError(method, message, code)
        if "result" not in envelope:
            raise self.malformed(f"{method}: JSON-RPC response has neither 'result' nor 'error'")
        return envelope["result"]

    async def request(self, method: str, params: Sequence[Any] = ()) -> Any:
        """The result of one JSON-RPC call; a node error raises :class:`RpcError`."""
        result = await self._single(method, params)
        if isinstance(result, RpcError):
            raise result
        return result

    async def _single(self, method: str, params: Sequence[Any]) -> Any:
        call_id = next(self._ids)
        self.stats["calls"] += 1
        envelope = await self._post({"jsonrpc": "2.0", "id": call_id, "method": method, "params": list(params)},
                                    method)
        return self._unwrap(envelope, method, call_id)

    async def batch(self, calls: Sequence[Call]) -> list[Any]:
        """Results of many calls in their order: a value, or the :class:`RpcError` the node answered with.

        Sent as JSON-RPC batches of up to ``max_batch`` calls; a node that refuses batches gets the
        calls one by one (and from then on).
        """
        out: list[Any] = []
        for start in range(0, len(calls), self.config.max_batch):
            chunk = calls[start:start + self.config.max_batch]
            if len(chunk) == 1 or self.supports["batch"] is False:
                out.extend([await self._single(m, p) for m, p in chunk])
                continue
            out.extend(await self._batch_chunk(chunk))
        return out

    async def _batch_chunk(self, chunk: Sequence[Call]) -> list[Any]:
        ids = [next(self._ids) for _ in chunk]
        payload = [{"jsonrpc": "2.0", "id": i, "method": m, "params": list(p)} for i, (m, p) in zip(ids, chunk)]
        self.stats["calls"] += len(chunk)
        self.stats["batches"] += 1
        shown = f"batch of {len(chunk)} ({chunk[0][0]}...)"
        answer = await self._post(payload, shown)
        if isinstance(answer, dict) and answer.get("error") is not None:
            if self.supports["batch"] is True:  # batches worked before: this error is about something else
                error = self._unwrap({**answer, "id": ids[0]}, shown, ids[0])
                raise error if isinstance(error, RpcError) else self.malformed(f"{shown}: unreadable error")
            # a single error object for a whole first batch: the node does not do batches
            self.supports["batch"] = False
            self.stats["fallbacks"] += 1
            log.info("rpc: node refused a batch (%s); sending calls one by one", snippet(repr(answer["error"])))
            return [await self._single(m, p) for m, p in chunk]
        if not isinstance(answer, list):
            raise self.malformed(f"{shown}: expected a JSON array of responses, got {snippet(repr(answer))!r}")
        self.supports["batch"] = True
        by_id = {}
        for item in answer:
            if isinstance(item, dict) and isinstance(item.get("id"), int):
                by_id[item["id"]] = item
        missing = [m for i, (m, _) in zip(ids, chunk) if i not in by_id]
        if missing:
            raise self.malformed(f"{shown}: {len(missing)} of {len(chunk)} responses missing (first: {missing[0]})")
        return [self._unwrap(by_id[i], m, i) for i, (m, _) in zip(ids, chunk)]

    async def batch_or_raise(self, calls: Sequence[Call]) -> list[Any]:
        """Like :meth:`batch`, raising the first node error instead of returning it."""
        results = await self.batch(calls)
        for r in results:
            if isinstance(r, RpcError):
                raise r
        return results

    # ------------------------------------------------------------------------------------------ methods

    async def chain_id(self) -> int:
        """``eth_chainId``: 1 for Ethereum mainnet."""
        return self._quantity("eth_chainId", await self.request("eth_chainId", []))

    async def block_number(self) -> int:
        """``eth_blockNumber``: the node's head."""
        return self._quantity("eth_blockNumber", await self.request("eth_blockNumber", []))

    async def get_block(self, number: BlockId, full_tx: bool = True) -> dict[str, Any]:
        """``eth_getBlockByNumber``; a block the node does not know raises :class:`RpcError`."""
        return (await self.get_blocks([number], full_tx))[0]

    async def get_blocks(self, numbers: Sequence[BlockId], full_tx: bool = True) -> list[dict[str, Any]]:
        """Many ``eth_getBlockByNumber`` in batches, in the order asked."""
        params = [block_param(n) for n in numbers]
        results = await self.batch_or_raise([("eth_getBlockByNumber", [p, full_tx]) for p in params])
        for n, p, block in zip(numbers, params, results):
            if block is None:
                raise RpcError("eth_getBlockByNumber", f"block {p} not found (beyond the node's head, or pruned)")
            if not isinstance(block, dict) or not isinstance(block.get("transactions"), list):
                raise self.malformed(f"eth_getBlockByNumber({p}): expected a block object, "
                                     f"got {snippet(repr(block))!r}")
            if isinstance(n, int) and block.get("number") != p:
                try:
                    same = quantity(block.get("number"), "block.number") == n
                except ChainDataError:
                    same = False
                if not same:
                    raise self.malformed(f"eth_getBlockByNumber({p}): the node answered block "
                                         f"{snippet(repr(block.get('number')))}")
        return results

    async def get_block_receipts(self, block: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The receipts of one block (as returned by :meth:`get_block`), in transaction order."""
        return (await self.get_blocks_receipts([block]))[0]

    async def get_blocks_receipts(self, blocks: Sequence[Mapping[str, Any]]) -> list[list[dict[str, Any]]]:
        """Receipts of many blocks: ``eth_getBlockReceipts`` per block, else one receipt call per transaction."""
        try:
            hashes = [block_transaction_hashes(b) for b in blocks]
            numbers = [quantity(b.get("number"), "block.number") for b in blocks]
        except ChainDataError as e:
            raise self.malformed(str(e)) from None
        out: list[list[dict[str, Any]] | None] = [None if h else [] for h in hashes]
        todo = [i for i, h in enumerate(hashes) if h]
        if todo and self.supports["eth_getBlockReceipts"] is not False:
            results = await self.batch([("eth_getBlockReceipts", [hex(numbers[i])]) for i in todo])
            if any(isinstance(r, RpcMethodNotFound) for r in results):
                self.supports["eth_getBlockReceipts"] = False
                self.stats["fallbacks"] += 1
                log.info("rpc: eth_getBlockReceipts not offered; fetching receipts one transaction at a time")
            else:
                for i, r in zip(todo, results):
                    if isinstance(r, RpcError):
                        raise r
                    out[i] = self._receipt_list(f"eth_getBlockReceipts({hex(numbers[i])})", r)
                self.supports["eth_getBlockReceipts"] = True
                todo = []
        if todo:
            calls = [("eth_getTransactionReceipt", [h]) for i in todo for h in hashes[i]]
            flat = iter(await self.batch_or_raise(calls))
            for i in todo:
                out[i] = self._receipt_list(f"eth_getTransactionReceipt (block {numbers[i]})",
                                            [next(flat) for _ in hashes[i]])
        for b, receipts in zip(blocks, out):
            try:
                check_receipts(b, receipts)
            except ChainDataError as e:
                raise self.malformed(str(e)) from None
        return out  # type: ignore[return-value]

    def _receipt_list(self, shown: str, value: Any) -> list[dict[str, Any]]:
        if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
            raise self.malformed(f"{shown}: expected receipt objects, got {snippet(repr(value))!r}")
        return value

    async def get_logs(self, from_block: BlockId, to_block: BlockId, address: str | Sequence[str] | None = None,
                       topics: Sequence[str | Sequence[str] | None] | None = None) -> list[dict[str, Any]]:
        """Logs of a block range matching ``address``/``topics``; a range a provider finds too big is halved."""
        try:
            return await self._get_logs_once(from_block, to_block, address, topics)
        except RpcError as e:
            if not (isinstance(from_block, int) and isinstance(to_block, int) and from_block < to_block
                    and _TOO_MANY.search(e.node_message)) or isinstance(e, RpcMethodNotFound):
                raise
            mid = (from_block + to_block) // 2
            log.info("rpc: log query %d..%d too large (%s); splitting", from_block, to_block, e.node_message)
            return (await self.get_logs(from_block, mid, address, topics)
                    + await self.get_logs(mid + 1, to_block, address, topics))

    async def _get_logs_once(self, from_block: BlockId, to_block: BlockId, address: Any, topics: Any) -> list[dict]:
        flt: dict[str, Any] = {"fromBlock": block_param(from_block), "toBlock": block_param(to_block)}
        if address is not None:
            flt["address"] = address
        if topics is not None:
            flt["topics"] = list(topics)
        if self.supports["eth_getLogs"] is not False:
            try:
                result = await self.request("eth_getLogs", [flt])
            except RpcMethodNotFound:
                self.supports["eth_getLogs"] = False
                self.stats["fallbacks"] += 1
                log.info("rpc: eth_getLogs not offered; using eth_newFilter + eth_getFilterLogs")
            else:
                self.supports["eth_getLogs"] = True
                return self._log_list("eth_getLogs", result)
        filter_id = await self.request("eth_newFilter", [flt])
        if not isinstance(filter_id, str):
            raise self.malformed(f"eth_newFilter: expected a filter id string, got {snippet(repr(filter_id))!r}")
        try:
            return self._log_list("eth_getFilterLogs", await self.request("eth_getFilterLogs", [filter_id]))
        finally:
            try:
                await self.request("eth_uninstallFilter", [filter_id])
            except (RpcError, ChainDataError) as e:  # a filter left behind expires on the node by itself
                log.debug("rpc: eth_uninstallFilter(%s) failed: %s", filter_id, e)

    def _log_list(self, shown: str, value: Any) -> list[dict[str, Any]]:
        if not isinstance(value, list) or not all(isinstance(x, dict) for x in value):
            raise self.malformed(f"{shown}: expected a JSON array of log objects, got {snippet(repr(value))!r}")
        return value

    async def call(self, to: str, data: str, block: BlockId = "latest") -> str:
        """``eth_call`` of ``data`` on contract ``to``: the returned bytes as hex."""
        result = await self.request("eth_call", [{"to": to, "data": data}, block_param(block)])
        try:
            return hex_data(result, "eth_call result")
        except ChainDataError as e:
            raise self.malformed(str(e)) from None

    def _quantity(self, method: str, value: Any) -> int:
        try:
            return quantity(value, f"{method} result")
        except ChainDataError as e:
            raise self.malformed(str(e)) from None


def _answered(answer: Answer) -> bool:
    """2xx, or a 4xx (not 429) whose body is a JSON-RPC answer: some providers send node errors that way."""
    if 200 <= answer.status < 300:
        return True
    if answer.status == 429 or not 400 <= answer.status < 500:
        return False
    try:
        body = orjson.loads(answer.body)
    except orjson.JSONDecodeError:
        return False
    return isinstance(body, list) or (isinstance(body, dict) and body.get("error") is not None)


