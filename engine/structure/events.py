"""Structure events as the structure operators emit them: columns (``schemas.batches.EventBatch``) with ids
computed in compiled code, labelled by cached timeframe text, and put in one order whatever the order of the
batch's rows.

Events sort by (confirmed_ts, market, timeframe, then operator-specific integer keys), comparing market and
timeframe as text. The sort is stable, so events with equal keys keep the order they were found in.
"""

from __future__ import annotations

import numpy as np

from schemas.batches import EventBatch
from schemas.records import StructureEvent
from schemas.timeframes import format_timeframe

_SMALL = 48  # below this many events, sorting key tuples in Python is cheaper than numpy's set-up
_TF_LABELS: dict[int, str] = {}
TF_NS: dict[str, int] = {}  # the inverse, for reading events back (format_timeframe is one-to-one)
_FIELDS = {"id", "market", "timeframe", "kind", "ts", "confirmed_ts", "price", "meta"}
_new_object = object.__new__
_set_attr = object.__setattr__


def timeframe_label(tf_ns: int) -> str:
    """``format_timeframe``, remembered."""
    label = _TF_LABELS.get(tf_ns)
    if label is None:
        label = _TF_LABELS[tf_ns] = format_timeframe(tf_ns)
        TF_NS[label] = tf_ns
    return label


def trusted_event(id: str, market: str, timeframe: str, kind: str, ts: int, confirmed_ts: int, price: float,
                  meta: dict) -> StructureEvent:
    """A StructureEvent from values an operator made itself, without re-validating them.

    The caller passes exactly the validated types (str, int, float and a fresh ``dict[str, float]``), so the
    record equals, dumps and pickles exactly as ``StructureEvent(...)`` of the same values would.
    """
    ev = _new_object(StructureEvent)
    _set_attr(ev, "__dict__", {"id": id, "market": market, "timeframe": timeframe, "kind": kind, "ts": ts,
                               "confirmed_ts": confirmed_ts, "price": price, "meta": meta})
    _set_attr(ev, "__pydantic_fields_set__", _FIELDS.copy())
    _set_attr(ev, "__pydantic_extra__", None)
    _set_attr(ev, "__pydantic_private__", None)
    return ev


def _text_rank(codes: np.ndarray, text) -> np.ndarray:
    """Per element, the rank of ``text(code)`` among the distinct texts of ``codes``."""
    uniq, inverse = np.unique(codes, return_inverse=True)
    names = [text(u) for u in uniq.tolist()]
    rank = {name: i for i, name in enumerate(sorted(set(names)))}
    return np.array([rank[name] for name in names], np.int64)[inverse.reshape(-1)]


def event_order(markets: list[str], market: np.ndarray, tf: np.ndarray, confirmed: np.ndarray,
                *minor: np.ndarray) -> np.ndarray | list[int] | None:
    """Permutation that sorts events (one per element of the equal-length arrays) by confirmed time, market
    name, timeframe label and then ``minor`` in turn; None when there is at most one event."""
    n = len(confirmed)
    if n <= 1:
        return None
    if n < _SMALL:
        names = [markets[m] for m in market.tolist()]
        labels = [timeframe_label(t) for t in tf.tolist()]
        keys = list(zip(confirmed.tolist(), names, labels, *(k.tolist() for k in minor)))
        return sorted(range(n), key=keys.__getitem__)
    m_rank = _text_rank(market, markets.__getitem__)
    tf_rank = _text_rank(tf, timeframe_label)
    return np.lexsort((*minor[::-1], tf_rank, m_rank, confirmed))


def timeframe_codes(tf: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Per element, the index of its timeframe's label in the returned list of labels (for ``stable_ids``)."""
    if len(tf) and (tf == tf[0]).all():
        return np.zeros(len(tf), np.int64), [timeframe_label(int(tf[0]))]
    uniq, inverse = np.unique(tf, return_inverse=True)
    return inverse.reshape(-1), [timeframe_label(t) for t in uniq.tolist()]


def event_columns(markets: list[str], market: np.ndarray, tf: np.ndarray, kind: np.ndarray, ts: np.ndarray,
                  confirmed: np.ndarray, price: np.ndarray, meta: np.ndarray, ids: np.ndarray) -> EventBatch:
    """An EventBatch from a kernel's event fields; ``meta`` holds the kind's meta values in order (rows, k <= 7)."""
    from schemas.batches import META_WIDTH
    n = len(ts)
    full = np.full((n, META_WIDTH), np.nan)
    full[:, :meta.shape[1]] = meta
    # copies: the fields are often views of a kernel's event buffers, which the next batch reuses
    return EventBatch(markets, market.astype(np.int32), tf.astype(np.int64), kind.astype(np.int16),
                      ts.astype(np.int64), confirmed.astype(np.int64), price.astype(np.float64), full, ids)


def _id_families() -> tuple[np.ndarray, np.ndarray, np.ndarray, list, list]:
    """Per kind code: its id family, its prefix code and its step code (see ``derive_ids``)."""
    from schemas.batches import KIND_NAMES
    family, prefix, step = (np.zeros(len(KIND_NAMES), np.int64) for _ in range(3))
    prefixes: list[str] = []
    steps: list[str] = []
    for code, name in enumerate(KIND_NAMES):
        for fam, head in ((1, "fvg_"), (2, "ob_"), (3, "liquidity_")):
            if name.startswith(head):
                side, _, rest = name[len(head):].partition("_")
                pre, st = head + side, rest
                break
        else:
            fam, pre, st = 0, name, ""
        if pre not in prefixes:
            prefixes.append(pre)
        if st not in steps:
            steps.append(st)
        family[code], prefix[code], step[code] = fam, prefixes.index(pre), steps.index(st)
    return family, prefix, step, prefixes, steps


_FAMILY, _PREFIX, _STEP, _PREFIXES, _STEPS = _id_families()


def derive_ids(batch: EventBatch) -> np.ndarray:
    """Every event's id from its columns, equal to the ids the operators have always given:

    swings and breaks   stable_id(market, tf, kind, ts)
    fair value gaps     stable_id(stable_id(market, tf, "fvg_bull"|"fvg_bear", ts), step)
    order blocks        stable_id(stable_id(market, tf, "ob_bull"|"ob_bear", ts, break_ts), step)
    liquidity pools     stable_id(stable_id(market, tf, "liquidity_high"|"liquidity_low", ts), step, members)
    """
    from engine.ids import stable_ids
    from schemas.batches import KIND_NAMES

    out = np.empty(len(batch), "S16")
    family = _FAMILY[batch.kind]
    for fam in np.unique(family).tolist():
        rows = np.flatnonzero(family == fam)
        market, tf, kind, ts = batch.market[rows], batch.tf[rows], batch.kind[rows], batch.ts[rows]
        tf_code, labels = timeframe_codes(tf)
        head = [(market, batch.markets), (tf_code, labels)]
        if fam == 0:
            out[rows] = stable_ids(*head, (kind, KIND_NAMES), ts)
            continue
        extra = (batch.meta[rows, 6].astype(np.int64),) if fam == 2 else ()  # the order block's break_ts
        parent = stable_ids(*head, (_PREFIX[kind], _PREFIXES), ts, *extra)
        tail = (batch.meta[rows, 0].astype(np.int64),) if fam == 3 else ()  # the pool's members
        out[rows] = stable_ids(parent, (_STEP[kind], _STEPS), *tail)
    return out


EventBatch.derive_ids = staticmethod(derive_ids)
