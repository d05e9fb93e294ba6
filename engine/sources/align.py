"""Lining up replayed inputs in time, so markets recorded on different days trade at once."""

from __future__ import annotations

from schemas.batches import CandleBatch

DAY_NS = 86_400 * 1_000_000_000


def align_starts(batches: list) -> list:
    """Shift each input by whole days so all start on the same day: several markets trade at once.

    Whole days keep every candle bucket aligned as it was.
    """
    def start(b) -> int:
        return int((b.open_ts if isinstance(b, CandleBatch) else b.ts).min())

    batches = [b for b in batches if len(b)]
    if not batches:
        return []
    origin_day = min(start(b) for b in batches) // DAY_NS
    out = []
    for b in batches:
        shift = (start(b) // DAY_NS - origin_day) * DAY_NS
        if isinstance(b, CandleBatch):
            b = b.take(slice(None))
            b.open_ts = b.open_ts - shift
        else:
            b = b.take(slice(None))
            b.ts = b.ts - shift
        out.append(b)
    return out


def last_event_ts(batch) -> int:
    if not len(batch):
        return 0
    return int((batch.open_ts + batch.tf).max() if isinstance(batch, CandleBatch) else batch.ts.max())
