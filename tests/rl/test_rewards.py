"""Rewards are pure functions of the step return and their own state."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rl.rewards import REWARDS, initial_state, make_reward


def _roll(name: str, rets, **params) -> list[float]:
    fn, state, out = make_reward(name, params), initial_state(name), []
    for r in rets:
        x, state = fn(r, state)
        out.append(x)
    return out


def test_rewards_are_pure_and_tunable() -> None:
    rets = np.random.default_rng(0).normal(0, 0.01, 300).tolist()
    for name in REWARDS:
        assert _roll(name, rets) == _roll(name, rets)
    assert _roll("pnl", [0.01], scale=1.0) == [0.01]
    assert _roll("dsr", rets, eta=0.05) != _roll("dsr", rets, eta=0.01)


def test_differential_sharpe_matches_moody_saffell() -> None:
    a, b, eta = 0.001, 0.0002, 0.01
    r = 0.004
    d, (a2, b2) = REWARDS["differential_sharpe"](r, (a, b), eta=eta)
    expect = (b * (r - a) - 0.5 * a * (r * r - b)) / (b - a * a) ** 1.5
    assert d == pytest.approx(expect) and a2 == pytest.approx(a + eta * (r - a))
    assert b2 == pytest.approx(b + eta * (r * r - b))
    assert REWARDS["differential_sharpe"](0.01, (0.0, 0.0))[0] == 0.0  # no variance yet


def test_drawdown_penalty_costs_only_deepening_losses() -> None:
    rets = [0.02, -0.05, 0.03, 0.02]
    pen = _roll("drawdown", rets, penalty=2.0, scale=1.0)
    plain = _roll("pnl", rets, scale=1.0)
    assert pen[0] == plain[0] and pen[2] == plain[2] and pen[3] == plain[3]
    assert pen[1] == pytest.approx(-0.05 - 2.0 * 0.05)
    assert math.isclose(sum(plain), sum(rets))
