"""The live structure picture of a market from its event log: latest swings and breaks, order
blocks still standing (breakers included), fair value gaps still open, liquidity pools not yet
swept. Pure logic over event dicts (``kind``, ``id``, ...), oldest first."""

from __future__ import annotations

from collections.abc import Iterable

FAMILIES = ("ob", "fvg", "liquidity")
# steps after which an object no longer matters to a trader
CLOSED = {"mitigated", "invalidated", "evicted", "swept", "breaker_invalidated"}


def _step(kind: str) -> tuple[str, str] | None:
    """(family, step) of a lifecycle event kind like ``ob_bull_breaker_created``; None otherwise."""
    fam = kind.split("_", 1)[0]
    if fam not in FAMILIES:
        return None
    rest = kind.split("_", 2)[2] if kind.count("_") >= 2 else ""
    return fam, rest


def structure_view(events: Iterable[dict], recent: int = 20) -> dict:
    """Fold events into the latest swings and breaks and the objects still live."""
    swings, breaks = [], []
    objects: dict[tuple[str, str], dict] = {}
    for e in events:
        kind = e["kind"]
        if kind in ("swing_high", "swing_low"):
            swings.append(e)
            continue
        if kind.startswith(("bos_", "choch_")):
            breaks.append(e)
            continue
        parsed = _step(kind)
        if parsed is None:
            continue
        fam, step = parsed
        key = (fam, e["id"])
        if step == "created" or key not in objects:
            objects.setdefault(key, {**e, "family": fam, "state": "created", "steps": []})
        obj = objects[key]
        obj["steps"].append(step)
        obj["state"] = "breaker" if step == "breaker_created" else step
    live = [o for o in objects.values() if o["state"] not in CLOSED]
    return {"swings": swings[-recent:], "breaks": breaks[-recent:],
            "order_blocks": [o for o in live if o["family"] == "ob"],
            "fair_value_gaps": [o for o in live if o["family"] == "fvg"],
            "liquidity": [o for o in live if o["family"] == "liquidity"]}
