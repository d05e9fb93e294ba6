"""Every registered indicator: streaming equals batch, snapshots restore, reset starts fresh."""

from __future__ import annotations

import numpy as np
import pytest

from engine.indicators.registry import available
from tests.indicators.contract import STREAM_VS_BATCH_RTOL, assert_close, stream_many
from tests.indicators.series import all_series

NAMES = sorted(available())


@pytest.mark.parametrize("name", NAMES)
def test_streaming_equals_batch(name: str) -> None:
    series = [b for _, b in all_series()]
    ind = available()[name]()
    streamed = stream_many(ind, series)
    for k, bars in enumerate(series):
        expected = available()[name]().batch(bars)
        assert_close(streamed[k], expected, STREAM_VS_BATCH_RTOL, f"{name} series {k}", atol=1e-300)


@pytest.mark.parametrize("name", NAMES)
def test_snapshot_restore_and_reset(name: str) -> None:
    bars = all_series()[0][1]
    head, tail = bars.take(slice(0, 700)), bars.take(slice(700, 1400))
    whole = stream_many(available()[name](), [bars.take(slice(0, 1400))])[0]

    ind = available()[name]()
    stream_many(ind, [head])
    state = ind.get_state()
    fresh = available()[name]()
    fresh.set_state(state)
    assert_close(stream_many(fresh, [tail])[0], whole[700:], 0.0, f"{name} restored")

    ind.reset()
    assert_close(stream_many(ind, [head])[0], whole[:700], 0.0, f"{name} after reset")


@pytest.mark.parametrize("name", NAMES)
def test_lookback_matches_first_value(name: str) -> None:
    bars = all_series()[0][1]
    out = available()[name]().batch(bars)
    first = int(np.flatnonzero(~np.isnan(out).all(axis=1))[0])
    assert first == available()[name]().lookback
