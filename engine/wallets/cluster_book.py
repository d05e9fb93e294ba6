"""Wallet clusters over the canonical chain, block by block, undone exactly when blocks are orphaned.

Clusters need every address at once, so one instance runs beside the wallet shards (in the
follower's process). See :class:`engine.wallets.analytics.Clusters` for the two heuristics.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

from engine.wallets.analytics import Clusters
from schemas.records import NATIVE, ChainAlert, ChainBlock, ValueTransfer


class ClusterBook:
    """Feeds each block's transfers to :class:`Clusters`; raises ``cluster_link`` alerts; rolls back."""

    def __init__(self, chain: str, labels=None, window: int = 64) -> None:
        self.chain = chain
        self.clusters = Clusters(labels=labels)
        self.window = window
        self._undo: OrderedDict[str, tuple] = OrderedDict()  # block hash -> (checkpoint, alerts)

    def apply_block(self, header: ChainBlock, transfers: list[ValueTransfer]) -> list[ChainAlert]:
        cp = self.clusters.checkpoint()
        touched = sorted({a for t in transfers for a in (t.from_address, t.to_address) if a})
        before = {a: self.clusters.cluster_of(a) for a in touched}
        self.clusters.advance(header.timestamp)
        for t in transfers:
            if t.from_address and t.to_address:
                self.clusters.observe(t.from_address, t.to_address, header.timestamp, native=t.token == NATIVE)
        alerts = []
        for a in touched:
            cid = self.clusters.cluster_of(a)
            if cid != before[a]:
                size = len(self.clusters.members(cid))
                key = f"{self.chain}:{header.hash}:cluster:{a}:{cid}"
                alerts.append(ChainAlert(
                    id=hashlib.sha1(key.encode()).hexdigest()[:24], chain=self.chain, kind="cluster_link",
                    ts=header.timestamp * 1_000_000_000, block_number=header.number, block_hash=header.hash,
                    address=a, counterparty=cid, severity="info",
                    message=f"linked to cluster {cid} ({size} addresses) by common funding or co-spending"))
        self._undo[header.hash] = (cp, alerts)
        while len(self._undo) > self.window:
            _, (old_cp, _) = self._undo.popitem(last=False)
            self.clusters.release(next(iter(self._undo.values()))[0])
        return alerts

    def rollback(self, header: ChainBlock) -> list[ChainAlert]:
        """Undo one orphaned block (call newest first); returns its alerts' retractions."""
        entry = self._undo.pop(header.hash, None)
        if entry is None:
            return []
        cp, alerts = entry
        self.clusters.rollback(cp)
        return [a.model_copy(update={"retracted": True}) for a in alerts]
