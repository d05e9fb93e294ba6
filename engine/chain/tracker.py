"""Canonical-chain bookkeeping for a follower: parent-hash checks, fork points, confirmations.

Pure: the follower fetches blocks and asks the tracker what each one means. The tracker keeps the
last ``window`` canonical blocks (:class:`ChainBlock`). A block whose parent is the head extends the chain; anything
else is resolved by walking back through the node's canonical blocks (fetched by number) until a
stored header matches: that is the fork point, and every stored block above it is orphaned.
A fork deeper than the window cannot be proven: it is reported as a deep reorg and handled by the
documented policy (see :meth:`ChainTracker.deep_reorg`).
"""

from __future__ import annotations

from collections import OrderedDict

from schemas.errors import CryptoIntelError
from schemas.records import ChainBlock


class DeepReorg(CryptoIntelError, RuntimeError):
    """The node's chain no longer contains any block the tracker holds (a fork deeper than the window)."""

    def __init__(self, head: int, window: int) -> None:
        super().__init__(f"reorg deeper than the {window}-block window below block {head}: no common ancestor kept")
        self.head = head
        self.window = window


class ChainTracker:
    """Last ``window`` canonical headers, by number."""

    def __init__(self, window: int = 64, confirmations: int = 12) -> None:
        if window < 1 or confirmations < 0:
            raise ValueError("window must be >= 1 and confirmations >= 0")
        self.window = window
        self.confirmations = confirmations
        self.headers: OrderedDict[int, ChainBlock] = OrderedDict()
        self.confirmed_through = -1

    @property
    def head(self) -> ChainBlock | None:
        return next(reversed(self.headers.values())) if self.headers else None

    def extends(self, block: ChainBlock) -> bool:
        """Does ``block`` sit directly on the current head (or start an empty tracker)?"""
        head = self.head
        return head is None or (block.number == head.number + 1 and block.parent_hash == head.hash)

    def known(self, number: int) -> ChainBlock | None:
        return self.headers.get(number)

    def append(self, block: ChainBlock) -> list[int]:
        """Add the next canonical block; returns the block numbers that just became confirmed."""
        if not self.extends(block):
            raise ValueError(f"block {block.number} does not extend head {self.head}")
        self.headers[block.number] = block
        while len(self.headers) > self.window:
            self.headers.popitem(last=False)
        return self._confirm()

    def _confirm(self) -> list[int]:
        head = self.head
        upto = head.number - self.confirmations
        start = max(self.confirmed_through + 1, next(iter(self.headers)))
        newly = list(range(start, upto + 1)) if upto >= start else []
        if newly:
            self.confirmed_through = newly[-1]
        return newly

    def fork_point(self, canonical: dict[int, str]) -> int | None:
        """Highest stored block whose hash equals the node's canonical hash at that number, or None.

        ``canonical`` maps numbers to the node's current hashes (the caller fetches what it needs,
        walking down from the head; see ``needed_for_fork``).
        """
        for number in sorted(self.headers, reverse=True):
            h = canonical.get(number)
            if h is not None and h == self.headers[number].hash:
                return number
        return None

    def rollback_to(self, number: int) -> list[ChainBlock]:
        """Drop every stored block above ``number``; returns them, newest first (to be retracted)."""
        orphaned = [self.headers.pop(n) for n in sorted(self.headers, reverse=True) if n > number]
        if orphaned and orphaned[-1].number <= self.confirmed_through:
            # a confirmed block was orphaned: confirmations were too shallow for this chain
            self.confirmed_through = number
        return orphaned

    def deep_reorg(self) -> list[ChainBlock]:
        """Policy for a fork below the window: retract everything held and restart from the new chain.

        Effects older than the window were already confirmed (confirmations <= window) and stay; the
        caller reports the event loudly and resumes at ``lowest held number`` on the new chain.
        """
        orphaned = list(reversed(self.headers.values()))
        self.headers.clear()
        return orphaned

    @property
    def lowest(self) -> int | None:
        return next(iter(self.headers)) if self.headers else None
