"""Per-wallet state of one shard, applied block by block with an exact undo log for reorgs.

A shard owns the wallets whose address hashes to it (``owns``). For every canonical block it
applies the block's transfers to its wallets (exact integer balances per token, inflow/outflow,
counterparties, first/last seen, transaction count) and emits alerts; before touching a wallet
it saves the wallet's previous state under that block, so ``rollback`` restores exactly the state
before the block and retracts the block's alerts. Applying the final canonical chain after any
reorgs therefore ends in the same state, with the same live alerts, as a fresh run over it.
"""

from __future__ import annotations

import copy
import hashlib
from collections import Counter, OrderedDict
from dataclasses import dataclass, field

from engine.wallets.analytics import robust_z
from schemas.records import NATIVE, ChainAlert, ChainBlock, ValueTransfer

DAY_S = 86_400


@dataclass
class WalletState:
    balances: dict[str, int] = field(default_factory=dict)  # token -> exact net flow seen (balance delta)
    inflow: dict[str, int] = field(default_factory=dict)
    outflow: dict[str, int] = field(default_factory=dict)
    counterparties: Counter = field(default_factory=Counter)
    first_seen: int = 0  # block timestamp, s
    last_seen: int = 0
    tx_count: int = 0
    flow_history: list[float] = field(default_factory=list)  # USD moved per active block, for anomaly scores


@dataclass
class Thresholds:
    """When transfers and wallets become alerts."""

    whale_usd: float = 1_000_000.0
    whale_usd_by_token: dict[str, float] = field(default_factory=dict)
    dormant_days: float = 180.0
    unusual_z: float = 6.0
    unusual_min_history: int = 10


def shard_of(address: str, shards: int) -> int:
    """Stable shard of an address (not Python's salted hash: shards must agree across processes)."""
    return int.from_bytes(hashlib.blake2b(address.lower().encode(), digest_size=8).digest(), "big") % shards


class WalletBook:
    """The wallets of one shard."""

    def __init__(self, chain: str, shard: int = 0, shards: int = 1, *, labels=None,
                 prices: dict[str, tuple[float, int]] | None = None, thresholds: Thresholds | None = None,
                 window: int = 64) -> None:
        self.chain = chain
        self.shard, self.shards = shard, shards
        self.labels = labels  # engine.wallets.labels.LabelSet or None
        self.prices = prices or {}  # token -> (USD per whole token, decimals); native under ""
        self.thresholds = thresholds or Thresholds()
        self.window = window
        self.wallets: dict[str, WalletState] = {}
        self._undo: OrderedDict[str, tuple[dict[str, WalletState | None], list[ChainAlert]]] = OrderedDict()

    def owns(self, address: str) -> bool:
        return self.shards == 1 or shard_of(address, self.shards) == self.shard

    # ---- block application ----------------------------------------------------------------
    def apply_block(self, header: ChainBlock, transfers: list[ValueTransfer]) -> list[ChainAlert]:
        """Apply one canonical block's transfers to this shard's wallets; returns the alerts raised."""
        saved: dict[str, WalletState | None] = {}
        alerts: list[ChainAlert] = []
        moved_usd: dict[str, float] = {}
        for t in transfers:
            usd = self.usd(t.token, t.value)
            for address, other, sign in ((t.from_address, t.to_address, -1), (t.to_address, t.from_address, 1)):
                if not address or not self.owns(address):
                    continue
                w = self._touch(address, saved)
                if sign < 0 and w.last_seen and header.timestamp - w.last_seen >= self.thresholds.dormant_days * DAY_S:
                    alerts.append(self._alert("dormant_wake", header, t, address, other, usd, "medium",
                                              f"active again after {(header.timestamp - w.last_seen) / DAY_S:.0f} days"))
                w.balances[t.token] = w.balances.get(t.token, 0) + sign * t.value
                book = w.inflow if sign > 0 else w.outflow
                book[t.token] = book.get(t.token, 0) + t.value
                w.counterparties[other] += 1
                w.first_seen = w.first_seen or header.timestamp
                w.last_seen = header.timestamp
                w.tx_count += 1
                if usd is not None:
                    moved_usd[address] = moved_usd.get(address, 0.0) + usd
                alerts += self._counterparty_alerts(header, t, address, other, usd)
            if t.to_address and self.owns(t.to_address):  # transfer-level alerts: raised once, by the receiver's shard
                alerts += self._transfer_alerts(header, t, usd)
        for address, usd in moved_usd.items():
            alerts += self._unusual(header, address, usd)
        self._undo[header.hash] = (saved, alerts)
        while len(self._undo) > self.window:
            self._undo.popitem(last=False)
        return alerts

    def rollback(self, header: ChainBlock) -> list[ChainAlert]:
        """Undo an orphaned block (newest first); returns retractions of the alerts it raised."""
        entry = self._undo.pop(header.hash, None)
        if entry is None:
            return []
        saved, alerts = entry
        for address, state in saved.items():
            if state is None:
                self.wallets.pop(address, None)
            else:
                self.wallets[address] = state
        return [a.model_copy(update={"retracted": True}) for a in alerts]

    def _touch(self, address: str, saved: dict) -> WalletState:
        w = self.wallets.get(address)
        if address not in saved:
            saved[address] = copy.deepcopy(w)
        if w is None:
            w = self.wallets[address] = WalletState()
        return w

    # ---- alerts -----------------------------------------------------------------------------
    def usd(self, token: str, value: int) -> float | None:
        price = self.prices.get(token)
        return None if price is None else value / 10 ** price[1] * price[0]

    def _alert(self, kind: str, header: ChainBlock, t: ValueTransfer, address: str, other: str, usd: float | None,
               severity: str, message: str) -> ChainAlert:
        key = f"{self.chain}:{header.hash}:{t.tx_hash}:{t.log_index}:{kind}:{address}"
        return ChainAlert(id=hashlib.sha1(key.encode()).hexdigest()[:24], chain=self.chain, kind=kind,
                          ts=header.timestamp * 1_000_000_000, block_number=header.number, block_hash=header.hash,
                          tx_hash=t.tx_hash, address=address, counterparty=other, token_address=t.token,
                          amount=str(t.value), usd=usd, severity=severity, message=message)

    def _transfer_alerts(self, header: ChainBlock, t: ValueTransfer, usd: float | None) -> list[ChainAlert]:
        out = []
        limit = self.thresholds.whale_usd_by_token.get(t.token, self.thresholds.whale_usd)
        if usd is not None and usd >= limit:
            out.append(self._alert("whale_transfer", header, t, t.from_address, t.to_address, usd, "high",
                                   f"{usd:,.0f} USD moved"))
        if self.labels is not None:
            to_ex, from_ex = self.labels.is_exchange(t.to_address), self.labels.is_exchange(t.from_address)
            if to_ex and not from_ex:
                out.append(self._alert("exchange_inflow", header, t, t.from_address, t.to_address, usd, "medium",
                                       f"sent to {to_ex}"))
            elif from_ex and not to_ex:
                out.append(self._alert("exchange_outflow", header, t, t.to_address, t.from_address, usd, "medium",
                                       f"withdrawn from {from_ex}"))
        return out

    def _counterparty_alerts(self, header: ChainBlock, t: ValueTransfer, address: str, other: str,
                             usd: float | None) -> list[ChainAlert]:
        if self.labels is None:
            return []
        flags = self.labels.flags(other)
        if not flags or self.labels.flags(address):
            return []
        return [self._alert("flagged_interaction", header, t, address, other, usd, "high",
                            f"counterparty flagged {', '.join(sorted(flags))}")]

    def _unusual(self, header: ChainBlock, address: str, usd: float) -> list[ChainAlert]:
        w = self.wallets[address]
        history = w.flow_history
        out = []
        if len(history) >= self.thresholds.unusual_min_history:
            # scale floored at 5% of the median (or 1 USD): a constant history has MAD 0, and without
            # a floor any change at all would look infinitely unusual
            median = sorted(history)[len(history) // 2]
            z = robust_z(usd, history, min_scale=max(0.05 * abs(median), 1.0))
            if z >= self.thresholds.unusual_z:
                t = ValueTransfer("", -1, NATIVE, address, "", 0)
                out.append(self._alert("unusual_activity", header, t, address, "", usd, "medium",
                                       f"flow {usd:,.0f} USD, robust z {z:.1f} against its own history"))
        history.append(usd)
        if len(history) > 500:
            del history[0]
        return out

    # ---- views ------------------------------------------------------------------------------
    def state(self) -> dict:
        """Plain comparable view of every wallet (used by tests: reorged run == fresh run)."""
        return {a: (dict(sorted(w.balances.items())), dict(sorted(w.inflow.items())), dict(sorted(w.outflow.items())),
                    dict(sorted(w.counterparties.items())), w.first_seen, w.last_seen, w.tx_count,
                    list(w.flow_history))
                for a, w in sorted(self.wallets.items())}
