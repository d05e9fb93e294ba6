"""Pure wallet analytics: robust z-scores, rolling in/out flows and address clusters.

Token amounts are exact Python ints (uint256 per transfer, sums may grow past it); USD values and
scores are floats. Timestamps are block timestamps in seconds. Nothing here does I/O.

Reorgs: :class:`RollingFlow` / :class:`FlowBook` drop the events of orphaned blocks with
``truncate(after_ts)``; :class:`Clusters` keeps an undo log, so ``rollback(checkpoint)`` restores
exactly the state it had when the checkpoint was taken (union-find without path compression).
"""

from __future__ import annotations

import math
import statistics
from bisect import bisect_right
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from engine.wallets.labels import LabelSet, normalise_address
from schemas.errors import ConfigError, InputError, StateError

MAD_SCALE = 1.4826
# returned (with the sign of value - median) when the MAD is 0 and value differs from the median:
# finite so that it survives JSON and float columns, and far above any sane alert threshold
DEGENERATE_Z = 1e9
UINT256_MAX = 2**256 - 1
HOUR, DAY = 3600, 86400


def robust_z(value: float, history: Sequence[float], min_scale: float = 0.0) -> float:
    """(value - median) / (1.4826 * MAD) of ``history``; 0 or +-DEGENERATE_Z when the MAD is 0.

    The MAD is 0 when more than half of the history is one value (a wallet that always moves the
    same amount, or nothing). Then a value equal to the median is 0 (nothing unusual), and any other
    value is infinitely far on that scale, reported as ``copysign(DEGENERATE_Z, value - median)``
    rather than inf, which breaks JSON and sorts badly next to NaN. ``min_scale`` floors the scale
    (e.g. a share of the median) so that a wallet with a constant history is not infinitely unusual.
    """
    if len(history) == 0:
        raise InputError("robust_z: history is empty")
    try:
        xs = [float(x) for x in history]
        v = float(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InputError(f"robust_z: value and history must be real numbers ({exc})") from exc
    if not math.isfinite(v) or not all(math.isfinite(x) for x in xs):
        raise InputError("robust_z: value and history must be finite")
    med = statistics.median(xs)
    mad = statistics.median([abs(x - med) for x in xs])
    scale = max(MAD_SCALE * mad, min_scale)
    if scale == 0.0:
        return 0.0 if v == med else math.copysign(DEGENERATE_Z, v - med)
    return (v - med) / scale


def _amount(value: object, what: str) -> int:
    # bool is an int subclass; a True amount is a bug upstream, not one wei
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= UINT256_MAX:
        raise InputError(f"{what} must be an int in [0, 2**256), got {value!r}")
    return value


def _timestamp(value: object, what: str = "ts") -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InputError(f"{what} must be an int of block-timestamp seconds, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class FlowTotals:
    """Exact inflow and outflow sums of one window."""

    inflow: int = 0
    outflow: int = 0

    @property
    def net(self) -> int:
        """Inflow minus outflow (negative when the wallet sent more than it received)."""
        return self.inflow - self.outflow


class RollingFlow:
    """Inflow/outflow sums of one wallet in one token over trailing windows ``(now - w, now]``.

    Events are kept with prefix sums, so a query is two bisections per window and exact. Events older
    than the longest window plus ``keep`` seconds are dropped on ``add``; the extra ``keep`` lets a
    reorg replace blocks with earlier-timestamped ones and still be queried exactly (a query that
    would need dropped events raises instead of answering wrong).
    """

    def __init__(self, windows: Sequence[int] = (HOUR, DAY), keep: int = HOUR) -> None:
        if not windows or any(not isinstance(w, int) or isinstance(w, bool) or w <= 0 for w in windows):
            raise ConfigError(f"RollingFlow: windows must be positive int seconds, got {windows!r}")
        if not isinstance(keep, int) or keep < 0:
            raise ConfigError(f"RollingFlow: keep must be a non-negative int, got {keep!r}")
        self.windows = tuple(sorted(set(windows)))
        self._keep = keep
        self._ts: list[int] = []
        # _cum_in[i] is the sum of all inflows (dropped ones included) before event i; one longer than _ts
        self._cum_in: list[int] = [0]
        self._cum_out: list[int] = [0]
        self._start = 0  # index of the first event still held
        self._dropped_to: int | None = None  # every event with ts <= this was dropped

    def add(self, ts: int, inflow: int = 0, outflow: int = 0) -> None:
        """Record a block's inflow and outflow at block time ``ts`` (non-decreasing)."""
        ts = _timestamp(ts)
        inflow, outflow = _amount(inflow, "inflow"), _amount(outflow, "outflow")
        if len(self) and ts < self._ts[-1]:
            raise InputError(f"RollingFlow.add: ts {ts} is before the latest event at {self._ts[-1]}")
        if self._dropped_to is not None and ts <= self._dropped_to:
            raise InputError(f"RollingFlow.add: ts {ts} falls in dropped history (up to {self._dropped_to})")
        self._ts.append(ts)
        self._cum_in.append(self._cum_in[-1] + inflow)
        self._cum_out.append(self._cum_out[-1] + outflow)
        self._drop(ts - self.windows[-1] - self._keep)

    def totals(self, now: int) -> dict[int, FlowTotals]:
        """Window length -> exact sums of the events with ``now - window < ts <= now``."""
        now = _timestamp(now, "now")
        if self._dropped_to is not None and now - self.windows[-1] < self._dropped_to:
            raise InputError(f"RollingFlow.totals: now {now} reaches back into dropped history "
                             f"(events up to {self._dropped_to}); raise keep")
        hi = bisect_right(self._ts, now, lo=self._start)
        out = {}
        for w in self.windows:
            lo = bisect_right(self._ts, now - w, lo=self._start, hi=hi)
            out[w] = FlowTotals(self._cum_in[hi] - self._cum_in[lo], self._cum_out[hi] - self._cum_out[lo])
        return out

    def truncate(self, after_ts: int) -> int:
        """Forget the events with ts > ``after_ts`` (blocks orphaned by a reorg); returns how many."""
        after_ts = _timestamp(after_ts, "after_ts")
        n = 0
        while len(self._ts) > self._start and self._ts[-1] > after_ts:
            self._ts.pop()
            self._cum_in.pop()
            self._cum_out.pop()
            n += 1
        return n

    def __len__(self) -> int:
        return len(self._ts) - self._start

    def _drop(self, horizon: int) -> None:
        idx = bisect_right(self._ts, horizon, lo=self._start)
        if idx == self._start:
            return
        last = self._ts[idx - 1]
        self._dropped_to = last if self._dropped_to is None else max(self._dropped_to, last)
        self._start = idx
        # compact lazily so that dropping stays amortised O(1) per event
        if self._start > 64 and self._start * 2 > len(self._ts):
            del self._ts[:self._start]
            del self._cum_in[:self._start]
            del self._cum_out[:self._start]
            self._start = 0


class FlowBook:
    """One :class:`RollingFlow` per (wallet, token); token ``""`` is the chain's native coin."""

    def __init__(self, windows: Sequence[int] = (HOUR, DAY), keep: int = HOUR) -> None:
        self._windows, self._keep = tuple(windows), keep
        RollingFlow(windows, keep)  # validate once, here, rather than on the first transfer
        self._flows: dict[tuple[str, str], RollingFlow] = {}

    def add_transfer(self, ts: int, token: str, sender: str, recipient: str, value: int) -> None:
        """A transfer is an outflow of the sender and an inflow of the recipient."""
        self._flow(sender, token).add(ts, 0, value)
        self._flow(recipient, token).add(ts, value, 0)

    def totals(self, wallet: str, token: str, now: int) -> dict[int, FlowTotals]:
        """Window length -> sums of one wallet in one token (zeros when it has no events)."""
        flow = self._flows.get((wallet.lower(), token.lower()))
        return flow.totals(now) if flow is not None else {w: FlowTotals() for w in sorted(set(self._windows))}

    def truncate(self, after_ts: int) -> int:
        """Forget every event with ts > ``after_ts`` (a reorg); returns how many."""
        return sum(f.truncate(after_ts) for f in self._flows.values())

    def prune(self) -> int:
        """Forget wallets whose events all fell out of the windows; returns how many."""
        empty = [k for k, f in self._flows.items() if len(f) == 0]
        for k in empty:
            del self._flows[k]
        return len(empty)

    def _flow(self, wallet: str, token: str) -> RollingFlow:
        key = (wallet.lower(), token.lower())
        flow = self._flows.get(key)
        if flow is None:
            flow = self._flows[key] = RollingFlow(self._windows, self._keep)
        return flow


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A position in a :class:`Clusters` undo log (``serial`` detects positions a rollback invalidated)."""

    position: int
    serial: int


class Clusters:
    """Address clusters from two heuristics, with exact undo for reorgs.

    **Common funder.** The first address that sends native ETH to a previously unseen address is its
    funder; addresses with the same funder are linked. "Seen" means it has sent anything or received
    native ETH: a fresh wallet often receives tokens (say, a USDT withdrawal) before the ETH for its
    gas, and the gas sender is the informative link. Funders that are labelled exchanges (or mixers)
    do not link: an exchange hot wallet pays withdrawals to thousands of unrelated customers (a mixer
    pays them out by design), so "same funder" there says nothing about common ownership. Unlabelled
    services (unknown exchanges, faucets, bridges) still link: feed labels to avoid that. When the
    stream starts mid-chain, old wallets look unseen too; their first observed ETH sender is taken as
    their funder.

    **Co-spend.** A fresh address (first seen as a recipient, unlabelled) is watched for
    ``cospend_window`` seconds; the distinct senders to it in that time (labelled exchanges and
    mixers excepted) are linked when the window closes, if there are 2..``max_cospenders`` of them.
    A user consolidating several wallets into a new exchange deposit address is the pattern; a new
    address paid by many senders (a merchant, a phishing drain) is not, hence the cap and the wait
    for the window to close. Windows close on the first observation (or :meth:`advance`) past their
    end.

    Cluster ids are the smallest address of the cluster. Union by size without path compression keeps
    every union a single parent pointer, so :meth:`rollback` undoes it exactly; :meth:`release` drops
    undo history that can no longer be needed (finalised blocks).
    """

    def __init__(self, labels: LabelSet | None = None, cospend_window: int = HOUR, max_cospenders: int = 5) -> None:
        if not isinstance(cospend_window, int) or cospend_window <= 0:
            raise ConfigError(f"Clusters: cospend_window must be positive int seconds, got {cospend_window!r}")
        if not isinstance(max_cospenders, int) or max_cospenders < 2:
            raise ConfigError(f"Clusters: max_cospenders must be an int >= 2, got {max_cospenders!r}")
        self._labels = labels
        self._window = cospend_window
        self._max = max_cospenders
        self._parent: dict[str, str] = {}  # non-roots only
        self._members: dict[str, list[str]] = {}  # roots of clusters with more than one address
        self._min: dict[str, str] = {}  # root -> smallest member (the cluster id)
        self._funder: dict[str, str] = {}
        self._first_funded: dict[str, str] = {}  # funder -> the first address it funded (siblings join it)
        self._active: set[str] = set()  # sent anything or received native ETH
        self._appeared: set[str] = set()  # in any role
        self._pending: dict[str, list[str]] = {}  # fresh address -> distinct senders while its window is open
        self._expiry: deque[tuple[int, str]] = deque()  # (window end, fresh address), in end order
        self._last_ts: int | None = None
        self._log: list[tuple[Any, ...]] = []
        self._serials: list[int] = []
        self._base = 0  # absolute position of _log[0] (entries before it were released)
        self._base_serial = 0  # serial of the entry just before _base
        self._next_serial = 1

    # ---- queries

    def cluster_of(self, address: str) -> str:
        """The cluster id (smallest address) of an address; itself when it is in no cluster."""
        root = self._find(self._addr(address))
        return self._min.get(root, root)

    def members(self, cluster_id: str) -> list[str]:
        """Sorted addresses of the cluster with this id; KeyError when it is not a cluster id."""
        cid = self._addr(cluster_id)
        root = self._find(cid)
        if self._min.get(root, root) != cid:
            raise KeyError(f"{cid} is not a cluster id (its cluster is {self._min.get(root, root)})")
        return sorted(self._members.get(root, [root]))

    def funder_of(self, address: str) -> str | None:
        """The address that first sent native ETH to this one when it was unseen, if observed."""
        return self._funder.get(self._addr(address))

    def state(self) -> tuple[Any, ...]:
        """A canonical copy of all clustering state; equal states behave identically."""
        return (sorted(self._parent.items()), sorted((k, tuple(v)) for k, v in self._members.items()),
                sorted(self._min.items()), sorted(self._funder.items()), sorted(self._first_funded.items()),
                sorted(self._active), sorted(self._appeared), sorted((k, tuple(v)) for k, v in self._pending.items()),
                tuple(self._expiry), self._last_ts)

    # ---- observations

    def observe(self, sender: str, recipient: str, ts: int, native: bool = True) -> None:
        """One transfer (native ETH when ``native``, else a token) at block time ``ts`` (non-decreasing)."""
        s, r = self._addr(sender), self._addr(recipient)
        self.advance(ts)
        if s != r:
            if native and r not in self._active:
                self._fund(s, r)
            self._cospend(s, r, ts)
        self._add(self._appeared, s)
        self._add(self._active, s)
        self._add(self._appeared, r)
        if native:
            self._add(self._active, r)

    def advance(self, now: int) -> None:
        """Move block time to ``now``: close (and link) the co-spend windows that ended before it."""
        now = _timestamp(now, "now")
        if self._last_ts is not None and now < self._last_ts:
            raise InputError(f"Clusters: block time went back from {self._last_ts} to {now}; roll back first")
        if now != self._last_ts:
            self._record(("last_ts", self._last_ts))
            self._last_ts = now
        while self._expiry and self._expiry[0][0] < now:
            item = self._expiry.popleft()
            self._record(("expiry_popleft", item))
            senders = self._pending.pop(item[1])
            self._record(("pending_pop", item[1], senders))
            if 2 <= len(senders) <= self._max:
                for other in senders[1:]:
                    self._union(senders[0], other)

    # ---- undo

    def checkpoint(self) -> Checkpoint:
        """The current position in the undo log, to pass to :meth:`rollback` or :meth:`release`."""
        return Checkpoint(self._base + len(self._log), self._serials[-1] if self._serials else self._base_serial)

    def rollback(self, checkpoint: Checkpoint) -> None:
        """Undo everything done after ``checkpoint`` (the orphaned blocks of a reorg), exactly."""
        idx = self._index(checkpoint)
        while len(self._log) > idx:
            self._undo(self._log.pop())
            self._serials.pop()

    def release(self, checkpoint: Checkpoint) -> None:
        """Drop the undo history before ``checkpoint`` (finalised); earlier checkpoints become invalid."""
        idx = self._index(checkpoint)
        if idx:
            self._base_serial = self._serials[idx - 1]
            del self._log[:idx]
            del self._serials[:idx]
            self._base += idx

    # ---- internals

    def _addr(self, raw: str) -> str:
        address = normalise_address(raw) if isinstance(raw, str) else None
        if address is None:
            raise InputError(f"Clusters: {raw!r} is not a 0x address")
        return address

    def _is_service(self, address: str) -> bool:
        # exchanges and mixers pay out to unrelated people, so sharing them as a source links nobody
        return self._labels is not None and (self._labels.is_exchange(address) is not None
                                             or "mixer" in self._labels.flags(address))

    def _fund(self, funder: str, funded: str) -> None:
        if funded in self._funder:
            return
        self._funder[funded] = funder
        self._record(("dict_new", self._funder, funded))
        if self._is_service(funder):
            return
        anchor = self._first_funded.get(funder)
        if anchor is None:
            self._first_funded[funder] = funded
            self._record(("dict_new", self._first_funded, funder))
        else:
            self._union(anchor, funded)

    def _cospend(self, sender: str, recipient: str, ts: int) -> None:
        senders = self._pending.get(recipient)
        if senders is None:
            if recipient in self._appeared or (self._labels is not None and recipient in self._labels):
                return
            senders = self._pending[recipient] = []
            self._record(("dict_new", self._pending, recipient))
            self._expiry.append((ts + self._window, recipient))
            self._record(("expiry_append",))
        # one past the cap is enough to know the address is not a personal deposit address
        if not self._is_service(sender) and sender not in senders and len(senders) <= self._max:
            senders.append(sender)
            self._record(("list_append", senders))

    def _find(self, address: str) -> str:
        while address in self._parent:
            address = self._parent[address]
        return address

    def _union(self, a: str, b: str) -> None:
        ra, rb = self._find(a), self._find(b)
        if ra == rb:
            return
        la, lb = len(self._members.get(ra, (ra,))), len(self._members.get(rb, (rb,)))
        # the larger cluster stays root (depth stays O(log n)); equal sizes: the smaller address, for determinism
        if la < lb or (la == lb and rb < ra):
            ra, rb = rb, ra
        ra_members, ra_min = self._members.get(ra), self._min.get(ra)
        rb_members, rb_min = self._members.pop(rb, None), self._min.pop(rb, None)
        self._record(("union", ra, rb, None if ra_members is None else len(ra_members), ra_min, rb_members, rb_min))
        if ra_members is None:
            ra_members = self._members[ra] = [ra]
        ra_members.extend(rb_members if rb_members is not None else [rb])
        self._min[ra] = min(ra_min or ra, rb_min or rb)
        self._parent[rb] = ra

    def _add(self, target: set[str], address: str) -> None:
        if address not in target:
            target.add(address)
            self._record(("set_add", target, address))

    def _record(self, entry: tuple[Any, ...]) -> None:
        self._log.append(entry)
        self._serials.append(self._next_serial)
        self._next_serial += 1

    def _index(self, checkpoint: Checkpoint) -> int:
        idx = checkpoint.position - self._base
        if not 0 <= idx <= len(self._log):
            raise StateError(f"Clusters: checkpoint {checkpoint} is outside the undo log "
                             f"[{self._base}, {self._base + len(self._log)}] (released or rolled back)")
        expected = self._serials[idx - 1] if idx else self._base_serial
        if checkpoint.serial != expected:
            raise StateError(f"Clusters: checkpoint {checkpoint} was invalidated by an earlier rollback")
        return idx

    def _undo(self, entry: tuple[Any, ...]) -> None:
        kind = entry[0]
        if kind == "set_add":
            entry[1].discard(entry[2])
        elif kind == "dict_new":
            del entry[1][entry[2]]
        elif kind == "list_append":
            entry[1].pop()
        elif kind == "expiry_append":
            self._expiry.pop()
        elif kind == "expiry_popleft":
            self._expiry.appendleft(entry[1])
        elif kind == "pending_pop":
            self._pending[entry[1]] = entry[2]
        elif kind == "last_ts":
            self._last_ts = entry[1]
        elif kind == "union":
            _, ra, rb, ra_len, ra_min, rb_members, rb_min = entry
            del self._parent[rb]
            if ra_len is None:
                del self._members[ra]
                del self._min[ra]
            else:
                del self._members[ra][ra_len:]
                self._min[ra] = ra_min
            if rb_members is not None:
                self._members[rb] = rb_members
                self._min[rb] = rb_min
        else:  # pragma: no cover - every kind recorded above is handled
            raise StateError(f"Clusters: unknown undo entry {kind!r}")
