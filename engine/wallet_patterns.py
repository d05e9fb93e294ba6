"""A wallet's behaviour profile, cluster and behaviour labels from its stored token transfers; pure.

The cluster comes from :class:`engine.wallets.analytics.Clusters` (common funder, co-spend) replayed
over the transfers given (the wallet's and its counterparties'), so it reflects what is stored,
not the whole chain. Behaviour labels are plain rules on the profile, listed in ``RULES``.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from engine.wallets.analytics import Clusters
from engine.wallets.labels import LabelSet
from schemas.records import NATIVE

DAY_S = 86_400
MAX_MEMBERS = 50
RULES = {
    "accumulator": "at least 5 transfers, 80% or more of them incoming",
    "distributor": "at least 5 transfers, 80% or more of them outgoing",
    "high_frequency": "at least 20 transfers with a median gap under 60 s",
    "bursty": "at least 10 transfers whose gaps have burstiness above 0.5",
    "hub": "50 or more distinct counterparties",
    "single_token": "every transfer in one token",
    "new": "first and last transfer within one day, at most 5 transfers",
    "dormant": "no transfer in the 30 days before the newest transfer stored",
    "clustered": "shares a cluster (common funder or co-spend) with other addresses",
}


def _burstiness(gaps: Sequence[float]) -> float | None:
    # Goh and Barabasi (2008): -1 periodic, 0 Poisson, -> 1 bursty
    if len(gaps) < 2:
        return None
    mu, sd = statistics.fmean(gaps), statistics.pstdev(gaps)
    return None if mu + sd == 0 else (sd - mu) / (sd + mu)


def _order(t: dict[str, Any]) -> tuple:
    return (int(t["block_ts"]), int(t.get("block_number") or 0), int(t.get("log_index") or 0))


def wallet_profile(address: str, transfers: Iterable[dict[str, Any]], labels: Iterable[str] = (),
                   label_set: LabelSet | None = None, newest_ts_ns: int | None = None) -> dict[str, Any]:
    """Profile, cluster and behaviour labels of ``address`` from transfer rows (``from_address``,
    ``to_address``, ``token_address``, ``value`` int, ``block_ts`` ns); amounts stay exact (decimal strings)."""
    me = address.lower() if address[:2].lower() == "0x" else address
    rows = sorted({(t.get("block_hash"), t.get("log_index"), t.get("tx_hash"), t["from_address"], t["to_address"]): t
                   for t in transfers}.values(), key=_order)
    mine = [t for t in rows if me in (t["from_address"], t["to_address"])]
    clusters = Clusters(labels=label_set)
    for t in rows:
        clusters.observe(t["from_address"], t["to_address"], int(t["block_ts"]) // 10**9,
                         native=t["token_address"] == NATIVE)
    if rows:
        clusters.advance(int(rows[-1]["block_ts"]) // 10**9 + 10 * DAY_S)  # close the open co-spend windows
    incoming = [t for t in mine if t["to_address"] == me]
    outgoing = [t for t in mine if t["from_address"] == me]
    counterparties = Counter(t["from_address"] if t["to_address"] == me else t["to_address"] for t in mine)
    tokens: dict[str, dict[str, int]] = {}
    for t in mine:
        entry = tokens.setdefault(t["token_address"], {"in": 0, "out": 0, "transfers": 0})
        entry["in" if t["to_address"] == me else "out"] += int(t["value"])
        entry["transfers"] += 1
    ts = [int(t["block_ts"]) for t in mine]
    gaps = [(b - a) / 1e9 for a, b in zip(ts, ts[1:], strict=False)]
    newest = newest_ts_ns if newest_ts_ns is not None else (int(rows[-1]["block_ts"]) if rows else None)
    n = len(mine)
    profile = {
        "transfers": n, "incoming": len(incoming), "outgoing": len(outgoing),
        "counterparties": len(counterparties), "tokens": len(tokens),
        "first_ts": ts[0] if ts else None, "last_ts": ts[-1] if ts else None,
        "active_days": len({x // (DAY_S * 10**9) for x in ts}),
        "median_gap_s": statistics.median(gaps) if gaps else None,
        "burstiness": _burstiness(gaps),
        "in_share": len(incoming) / n if n else None,
        "top_counterparties": [{"address": a, "transfers": c} for a, c in counterparties.most_common(5)],
        "per_token": {tok: {"in": str(v["in"]), "out": str(v["out"]), "net": str(v["in"] - v["out"]),
                            "transfers": v["transfers"]} for tok, v in sorted(tokens.items())},
    }
    cid = clusters.cluster_of(me)
    members = clusters.members(cid)
    cluster = {"id": cid, "size": len(members), "members": members[:MAX_MEMBERS], "funder": clusters.funder_of(me)}
    known = sorted({*labels, *(f"{lb.category}:{lb.name}" if lb.name else lb.category
                               for lb in (label_set.labels(me) if label_set is not None else []))})
    return {"address": me, "profile": profile, "cluster": cluster, "labels": known,
            "behaviour": _behaviour(profile, cluster, newest), "rules": RULES}


def _behaviour(p: dict[str, Any], cluster: dict[str, Any], newest: int | None) -> list[str]:
    out = []
    n = p["transfers"]
    if n >= 5 and p["in_share"] >= 0.8:
        out.append("accumulator")
    if n >= 5 and p["in_share"] <= 0.2:
        out.append("distributor")
    if n >= 20 and p["median_gap_s"] is not None and p["median_gap_s"] < 60:
        out.append("high_frequency")
    if n >= 10 and (p["burstiness"] or 0) > 0.5:
        out.append("bursty")
    if p["counterparties"] >= 50:
        out.append("hub")
    if n and p["tokens"] == 1:
        out.append("single_token")
    if n and n <= 5 and p["last_ts"] - p["first_ts"] <= DAY_S * 10**9:
        out.append("new")
    if n and newest is not None and newest - p["last_ts"] > 30 * DAY_S * 10**9:
        out.append("dormant")
    if cluster["size"] > 1:
        out.append("clustered")
    return out
