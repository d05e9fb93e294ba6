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
    return EventBatch(markets, market.astype(np.int32), tf.astype(np.int64, copy=False), kind.astype(np.int16),
                      ts.astype(np.int64, copy=False), confirmed.astype(np.int64, copy=False),
                      price.astype(np.float64, copy=False), full, ids)
