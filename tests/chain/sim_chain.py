"""An in-memory chain that answers the follower's three RPC calls with raw JSON-RPC shapes, and can
reorganise: enough to test reorg logic exhaustively and fast. Real-node tests use Hardhat."""

from __future__ import annotations

import hashlib
import random

from engine.chain.errors import RpcError


def _h(*parts) -> str:
    return "0x" + hashlib.sha256(repr(parts).encode()).hexdigest()


class SimChain:
    """Canonical blocks by number; ``mine`` appends, ``reorg`` replaces the top ``depth`` blocks."""

    def __init__(self, wallets: list[str], seed: int = 1) -> None:
        self.rng = random.Random(seed)
        self.wallets = wallets
        self.fork = 0
        self.blocks: list[dict] = [self._block(0, "0x" + "0" * 64, [])]

    def _block(self, number: int, parent: str, txs: list[dict]) -> dict:
        h = _h(number, parent, self.fork, [t["hash"] for t in txs])
        for t in txs:
            t["blockHash"] = h
        return {"number": hex(number), "hash": h, "parentHash": parent, "timestamp": hex(1_700_000_000 + 12 * number),
                "transactions": txs}

    def _txs(self, number: int, n: int) -> list[dict]:
        txs = []
        for i in range(n):
            a, b = self.rng.sample(self.wallets, 2)
            txs.append({"hash": _h("tx", number, i, self.fork, self.rng.random()), "from": a, "to": b,
                        "value": hex(self.rng.randrange(1, 10**21)), "transactionIndex": hex(i)})
        return txs

    def mine(self, n: int = 1, txs_per_block: int = 3) -> None:
        for _ in range(n):
            number = len(self.blocks)
            self.blocks.append(self._block(number, self.blocks[-1]["hash"], self._txs(number, txs_per_block)))

    def reorg(self, depth: int, extra: int = 1) -> list[str]:
        """Replace the top ``depth`` blocks by ``depth + extra`` different ones; returns orphaned hashes."""
        self.fork += 1
        orphaned = [b["hash"] for b in self.blocks[-depth:]]
        del self.blocks[-depth:]
        self.mine(depth + extra)
        return orphaned

    # -- the RPC surface the follower uses ------------------------------------------------------
    async def block_number(self) -> int:
        return len(self.blocks) - 1

    async def get_block(self, number: int, full_tx: bool = True) -> dict:
        if number >= len(self.blocks):
            raise RpcError("eth_getBlockByNumber", f"block {number} not found")
        b = self.blocks[number]
        return b if full_tx else {**b, "transactions": [t["hash"] for t in b["transactions"]]}

    async def get_logs(self, from_block: int, to_block: int) -> list:
        return []

    async def get_block_receipts(self, block: dict) -> list:
        return [{"transactionHash": t["hash"] if isinstance(t, dict) else t, "status": "0x1", "logs": []}
                for t in block["transactions"]]
