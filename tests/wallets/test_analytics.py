"""Robust z-scores, exact rolling flows on big ints, and address clusters with exact rollback."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.wallets.analytics import (
    DEGENERATE_Z,
    MAD_SCALE,
    Clusters,
    FlowBook,
    FlowTotals,
    RollingFlow,
    robust_z,
)
from engine.wallets.labels import Label, LabelSet
from schemas.errors import ConfigError, InputError, StateError

BIG = 2**200


def addr(n: int) -> str:
    return f"0x{n:040x}"


EXCHANGE = addr(0xE0)
MIXER = addr(0xE1)
LABELS = LabelSet([Label(EXCHANGE, "exchange", "Binance", "test"), Label(MIXER, "mixer", "Tornado", "test")])

# ---- robust z


def test_robust_z_by_hand() -> None:
    history = [1, 2, 3, 4, 100]  # median 3, |x - 3| = 2 1 0 1 97, MAD 1
    assert robust_z(10, history) == pytest.approx(7 / 1.4826, rel=1e-15)
    assert robust_z(3, history) == 0.0
    assert robust_z(0, history) == pytest.approx(-3 / 1.4826, rel=1e-15)


def test_robust_z_matches_numpy() -> None:
    rng = np.random.default_rng(7)
    for n in (2, 5, 100, 101):
        history = rng.standard_t(3, size=n) * 1000.0
        value = float(rng.normal() * 5000.0)
        med = np.median(history)
        mad = np.median(np.abs(history - med))
        assert robust_z(value, list(history)) == pytest.approx((value - med) / (MAD_SCALE * mad), rel=1e-12)


def test_robust_z_zero_mad_and_errors() -> None:
    history = [5.0, 5.0, 5.0, 7.0]  # median 5, deviations 0 0 0 2: MAD 0
    assert robust_z(5.0, history) == 0.0
    assert robust_z(6.0, history) == DEGENERATE_Z
    assert robust_z(4.0, history) == -DEGENERATE_Z
    assert math.isfinite(robust_z(1e300, history))
    with pytest.raises(InputError):
        robust_z(1.0, [])
    with pytest.raises(InputError):
        robust_z(1.0, [1.0, float("nan")])


# ---- rolling flows


def _brute(events: list[tuple[int, int, int]], now: int, w: int) -> FlowTotals:
    inside = [(i, o) for ts, i, o in events if now - w < ts <= now]
    return FlowTotals(sum(i for i, _ in inside), sum(o for _, o in inside))


def test_rolling_flow_windows_exact_with_big_ints() -> None:
    flow = RollingFlow((3600, 86400))
    flow.add(1000, BIG + 1, 0)
    flow.add(1000, 2**64 + 5, 3)  # two transfers in one block
    flow.add(4600, 0, BIG * 3)
    t = flow.totals(4600)
    # (1000, 4600]: the 1000 events sit exactly on the 1h boundary and are out
    assert t[3600] == FlowTotals(0, BIG * 3)
    assert t[86400] == FlowTotals(BIG + 1 + 2**64 + 5, BIG * 3 + 3)
    assert t[86400].net == BIG + 1 + 2**64 + 5 - BIG * 3 - 3
    assert flow.totals(4599)[3600] == FlowTotals(BIG + 1 + 2**64 + 5, 3)


def test_rolling_flow_random_against_brute_force() -> None:
    rnd = random.Random(3)
    windows = (60, 3600, 86400)
    flow, events, ts = RollingFlow(windows, keep=3600), [], 1_700_000_000
    for _ in range(3000):
        ts += rnd.choice((0, 1, 12, 12, 12, 600, 7200))
        ev = (ts, rnd.randrange(2**256), rnd.randrange(2**256) if rnd.random() < 0.5 else 0)
        flow.add(*ev)
        events.append(ev)
        if rnd.random() < 0.1:
            now = ts + rnd.randrange(0, 100)
            got = flow.totals(now)
            assert got == {w: _brute(events, now, w) for w in windows}
    assert len(flow) < len(events)  # history beyond the longest window + keep was dropped


def test_rolling_flow_truncate_and_guards() -> None:
    flow = RollingFlow((3600,), keep=0)
    for ts in (100, 200, 300):
        flow.add(ts, BIG, 1)
    assert flow.truncate(200) == 1  # the block at 300 was orphaned
    flow.add(250, 7, 0)
    assert flow.totals(300)[3600] == FlowTotals(2 * BIG + 7, 2)
    with pytest.raises(InputError):
        flow.add(240, 1, 0)  # before the latest event
    for bad in (-1, 2**256, True, 1.0):
        with pytest.raises(InputError):
            flow.add(400, bad, 0)
    flow.add(10_000, 1, 0)  # drops everything at or before 10000 - 3600
    with pytest.raises(InputError):
        flow.totals(3000)  # would need the dropped events
    with pytest.raises(ConfigError):
        RollingFlow((0,))


def test_flow_book_transfers() -> None:
    book = FlowBook((3600,))
    a, b, usdt = addr(1), addr(2), "0xdAC17F958D2ee523a2206206994597C13D831ec7"
    book.add_transfer(100, usdt, a, b, BIG)
    book.add_transfer(200, "", b, a, 5)
    assert book.totals(a, usdt, 200)[3600] == FlowTotals(0, BIG)
    assert book.totals(b, usdt.lower(), 200)[3600] == FlowTotals(BIG, 0)
    assert book.totals(a, "", 200)[3600] == FlowTotals(5, 0)
    assert book.totals(addr(9), "", 200)[3600] == FlowTotals()
    assert book.truncate(150) == 2
    assert book.totals(a, "", 200)[3600] == FlowTotals()


# ---- clusters


def test_common_funder_links_siblings() -> None:
    c = Clusters(LABELS)
    funder, a, b, d = addr(0x50), addr(0x30), addr(0x20), addr(0x40)
    c.observe(funder, a, 10)
    c.observe(funder, b, 20)
    assert c.funder_of(a) == funder and c.funder_of(b) == funder
    assert c.cluster_of(a) == c.cluster_of(b) == b  # id: the smallest address
    assert c.members(b) == [b, a]
    assert c.cluster_of(funder) == funder  # the funder itself is not linked
    c.observe(d, a, 30)  # a already has a funder: no new link
    assert c.cluster_of(d) == d
    with pytest.raises(KeyError):
        c.members(a)


def test_funding_needs_an_unseen_recipient() -> None:
    c = Clusters()
    f, a, b, x = addr(0x50), addr(1), addr(2), addr(3)
    c.observe(f, a, 1)
    c.observe(b, x, 2)  # b has sent: it was funded before our view
    c.observe(f, b, 3)
    assert c.funder_of(b) is None and c.cluster_of(b) == b
    # a token receipt first does not make the wallet "seen": its gas funder still counts
    c.observe(x, addr(4), 4, native=False)
    c.observe(f, addr(4), 5)
    assert c.funder_of(addr(4)) == f and c.cluster_of(addr(4)) == a


def test_exchange_and_mixer_funders_do_not_link() -> None:
    c = Clusters(LABELS)
    a, b, m1, m2 = addr(1), addr(2), addr(3), addr(4)
    c.observe(EXCHANGE, a, 10)
    c.observe(EXCHANGE, b, 11)
    c.observe(MIXER, m1, 12)
    c.observe(MIXER, m2, 13)
    assert c.funder_of(a) == EXCHANGE
    assert len({c.cluster_of(x) for x in (a, b, m1, m2)}) == 4


def test_real_binance_hot_wallet_does_not_link() -> None:
    c = Clusters(LabelSet.load())
    binance = "0x3f5ce5fbfe3e9af3971dd833d26ba9b5c936f0be"
    c.observe(binance, addr(1), 1)
    c.observe(binance, addr(2), 2)
    assert c.cluster_of(addr(1)) != c.cluster_of(addr(2))


def test_cospend_links_when_the_window_closes() -> None:
    c = Clusters(LABELS, cospend_window=600)
    deposit, a, b, late = addr(0xD0), addr(3), addr(2), addr(1)
    c.observe(a, deposit, 1000, native=False)
    c.observe(b, deposit, 1300, native=False)
    c.observe(EXCHANGE, deposit, 1400)  # a labelled service sending is ignored
    c.advance(1600)
    assert c.cluster_of(a) != c.cluster_of(b)  # the window (1000..1600) is still open
    c.observe(late, deposit, 1601)  # closes the window first, so late is not a co-spender
    assert c.cluster_of(a) == c.cluster_of(b) == b
    assert c.cluster_of(late) == late and c.cluster_of(EXCHANGE) == EXCHANGE
    assert c.cluster_of(deposit) == deposit


def test_cospend_many_senders_do_not_link() -> None:
    c = Clusters(cospend_window=600, max_cospenders=3)
    drain = addr(0xD0)
    victims = [addr(i) for i in range(1, 6)]
    for i, v in enumerate(victims):
        c.observe(v, drain, 100 + i, native=False)
    c.advance(10_000)
    assert len({c.cluster_of(v) for v in victims}) == len(victims)


def test_checkpoint_rollback_release() -> None:
    c = Clusters()
    f = addr(0x50)
    c.observe(f, addr(1), 1)
    cp = c.checkpoint()
    before = c.state()
    c.observe(f, addr(2), 2)
    later = c.checkpoint()
    assert c.cluster_of(addr(2)) == addr(1)
    c.rollback(cp)
    assert c.state() == before and c.cluster_of(addr(2)) == addr(2)
    with pytest.raises(StateError):
        c.rollback(later)  # rolled away
    c.observe(f, addr(3), 3)
    with pytest.raises(StateError):
        c.rollback(later)  # same position, different history
    final = c.checkpoint()
    c.release(final)
    with pytest.raises(StateError):
        c.rollback(cp)  # released
    c.rollback(final)
    assert c.cluster_of(addr(3)) == addr(1)
    with pytest.raises(InputError):
        c.observe(f, addr(4), 2)  # block time went back without a rollback
    with pytest.raises(InputError):
        c.observe("0x123", addr(4), 5)


POOL = [addr(i) for i in range(1, 25)] + [EXCHANGE]
ADDRESS = st.sampled_from(POOL)
DT = st.integers(0, 400)
# single transfers and advances, plus pairs that often link: one sender funding two addresses (ETH),
# two senders paying one address (tokens)
op = st.one_of(
    st.tuples(st.just("obs"), DT, ADDRESS, ADDRESS, st.booleans()),
    st.tuples(st.just("adv"), st.integers(0, 900)),
    st.tuples(st.just("fund"), DT, ADDRESS, ADDRESS, ADDRESS),
    st.tuples(st.just("cospend"), DT, ADDRESS, ADDRESS, ADDRESS),
)


def _apply(c: Clusters, ops: list[tuple], ts: int) -> int:
    for kind, dt, *args in ops:
        ts += dt
        if kind == "obs":
            c.observe(args[0], args[1], ts, args[2])
        elif kind == "adv":
            c.advance(ts)
        elif kind == "fund":
            c.observe(args[0], args[1], ts)
            c.observe(args[0], args[2], ts)
        else:
            c.observe(args[0], args[2], ts, native=False)
            c.observe(args[1], args[2], ts, native=False)
    return ts


@settings(max_examples=150, deadline=None)
@given(first=st.lists(op, max_size=25), second=st.lists(op, max_size=25), third=st.lists(op, max_size=10))
def test_rollback_restores_exactly(first: list, second: list, third: list) -> None:
    c = Clusters(LABELS, cospend_window=500, max_cospenders=3)
    ts = _apply(c, first, 0)
    cp, at_cp = c.checkpoint(), c.state()
    _apply(c, second, ts)
    c.rollback(cp)
    assert c.state() == at_cp
    # and it behaves as if the orphaned operations never happened
    _apply(c, third, ts)
    fresh = Clusters(LABELS, cospend_window=500, max_cospenders=3)
    _apply(fresh, third, _apply(fresh, first, 0))
    assert c.state() == fresh.state()
    for a in POOL:
        cid = c.cluster_of(a)
        assert a in c.members(cid) and cid == min(c.members(cid))


def _random_op(rnd: random.Random) -> tuple:
    kind = rnd.choice(("obs", "obs", "adv", "fund", "cospend"))
    dt = rnd.choice((0, 5, 50, 400))
    if kind == "obs":
        return kind, dt, rnd.choice(POOL), rnd.choice(POOL), rnd.random() < 0.5
    if kind == "adv":
        return kind, rnd.choice((0, 300, 900))
    return kind, dt, rnd.choice(POOL), rnd.choice(POOL), rnd.choice(POOL)


def test_rollback_to_any_of_many_checkpoints() -> None:
    rnd = random.Random(11)
    unions = 0
    for _ in range(40):
        c = Clusters(LABELS, cospend_window=500, max_cospenders=3)
        ts, saved = 0, []
        for _ in range(8):
            saved.append((c.checkpoint(), c.state(), ts))
            ts = _apply(c, [_random_op(rnd) for _ in range(15)], ts)
        unions += sum(e[0] == "union" for e in c._log)
        cp, state, _ = saved[rnd.randrange(len(saved))]
        c.rollback(cp)
        assert c.state() == state
    assert unions > 100  # the walk really merged clusters that rollback had to split again
