"""Trade continuity per market: duplicates dropped, gaps found, held trades released in order."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.venues.sequencer import TradeSequencer, rows_to_batch
from schemas.batches import TradeBatch


def batch(ids, market="BINANCE:BTCUSDT") -> TradeBatch:
    ids = np.asarray(ids, np.int64)
    return TradeBatch.for_market(market, ids * 1000, ids * 1.0 + 1, np.ones(len(ids)), trade_id=ids)


def ids(rows) -> list[int]:
    return [r[5] for r in rows]


def test_in_order_trades_pass_and_duplicates_drop() -> None:
    seq = TradeSequencer(contiguous=True)
    assert ids(seq.accept(batch([1, 2, 3]), 0)[0]) == [1, 2, 3]
    ready, gaps = seq.accept(batch([2, 3, 4]), 0)
    assert ids(ready) == [4] and not gaps
    assert seq.stats["duplicates"] == 2


def test_gap_holds_later_trades_until_repaired_then_releases_in_order() -> None:
    seq = TradeSequencer(contiguous=True, hold_s=5)
    seq.accept(batch([1, 2]), 0)
    ready, gaps = seq.accept(batch([5, 6]), 0.1)
    assert ready == [] and len(gaps) == 1
    gap = gaps[0]
    assert (gap.from_id, gap.to_id, gap.start_ts, gap.end_ts) == (3, 4, 2000, 5000)
    assert ids(seq.accept(batch([7]), 0.2)[0]) == []  # still held behind the gap
    ready, late = seq.repair(gap, batch([3, 4, 99]))  # ids outside the gap are ignored
    assert ids(ready) == [3, 4, 5, 6, 7] and late == []
    assert ids(seq.accept(batch([8]), 0.3)[0]) == [8]


def test_hold_expires_then_late_repair_goes_to_the_repair_path() -> None:
    seq = TradeSequencer(contiguous=True, hold_s=1)
    seq.accept(batch([1]), 0)
    _, (gap,) = seq.accept(batch([4, 5]), 0)
    ready, released = seq.expire(0.5)
    assert ready == [] and released == []
    ready, released = seq.expire(1.0)
    assert ids(ready) == [4, 5] and released == [gap] and gap.released
    assert ids(seq.accept(batch([6]), 1.1)[0]) == [6]  # no longer held
    ready, late = seq.repair(gap, batch([2, 3]))
    assert ready == [] and ids(late) == [2, 3] and gap.repaired
    assert seq.open_gaps() == []


def test_partial_repair_pages_and_give_up() -> None:
    seq = TradeSequencer(contiguous=True, hold_s=10)
    seq.accept(batch([1]), 0)
    _, (gap,) = seq.accept(batch([10]), 0)
    ready, _ = seq.repair(gap, batch([2, 3, 4]))
    assert ready == [] and gap.recovered == 3 and not gap.repaired
    assert ids(seq.forget(gap)) == [2, 3, 4, 10]  # given up: what was found and held goes on
    assert seq.open_gaps() == []


def test_markets_are_independent_and_non_contiguous_venues_pass_through() -> None:
    seq = TradeSequencer(contiguous=True)
    seq.accept(batch([1], "A"), 0)
    ready, gaps = seq.accept(TradeBatch.concat([batch([3], "A"), batch([1, 2], "B")]), 0)
    assert ids(ready) == [1, 2] and [g.market for g in gaps] == ["A"]
    free = TradeSequencer(contiguous=False)
    assert ids(free.accept(batch([5, 1, 1]), 0)[0]) == [5, 1, 1]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 60), min_size=1, max_size=120), st.data())
def test_any_arrival_order_with_repairs_yields_each_trade_once_in_order(arrivals, data) -> None:
    """Whatever arrives (duplicates, holes), after repairing every gap the output is 1..max, once each."""
    seq = TradeSequencer(contiguous=True, hold_s=1e9)
    top = max(arrivals)
    arrivals = [1] + arrivals + [top]
    out = []
    for i in arrivals:
        ready, gaps = seq.accept(batch([i]), 0)
        out += ids(ready)
        for gap in gaps:
            if data.draw(st.booleans()):  # repair now or at the end
                out += ids(seq.repair(gap, batch(range(gap.from_id, gap.to_id + 1)))[0])
    for gap in list(seq.open_gaps()):
        out += ids(seq.repair(gap, batch(range(gap.from_id, gap.to_id + 1)))[0])
    # trades that arrive late (below the last seen id) are duplicates of what the repair supplied
    assert out == list(range(1, top + 1))


def test_rows_to_batch_round_trip() -> None:
    b = rows_to_batch([("A", 1, 2.0, 3.0, 1, 7), ("B", 2, 4.0, 5.0, -1, 8)])
    assert b.markets == ["A", "B"] and b.trade_id.tolist() == [7, 8] and b.side.tolist() == [1, -1]
