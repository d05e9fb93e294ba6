"""Determinism on Ray: the signal stream is byte-identical in-process and on Ray with 1, 2 or 4
shards per stage (staged or fused), whatever the batch size."""

from __future__ import annotations

import pytest

from actors.pipeline import RayPipeline, run_on_ray
from engine.config import PipelineConfig
from engine.pipeline import run_in_process
from engine.sources.replay import Replay
from tests.pipeline_inputs import real_inputs, signal_bytes

pytestmark = pytest.mark.ray
CONFIG = PipelineConfig(timeframes=("1m", "5m"))


@pytest.fixture(scope="module")
def reference() -> bytes:
    out = signal_bytes(run_in_process(Replay(list(real_inputs(True)), batch_size=8192), CONFIG).signals)
    assert out.count(b"\n") > 5, "the determinism input must produce signals to compare"
    return out


@pytest.mark.parametrize("shards", [1, 2, 4])
@pytest.mark.parametrize("batch_size", [1, 64, 8192])
def test_ray_matches_in_process(ray_local, reference: bytes, shards: int, batch_size: int) -> None:
    config = CONFIG.with_shards(shards).model_copy(update={"batch_size": batch_size})
    result = run_on_ray(Replay(list(real_inputs(True)), batch_size=batch_size), config)
    assert signal_bytes(result.signals) == reference


@pytest.mark.parametrize("shards", [1, 2])
def test_fused_layout_matches(ray_local, reference: bytes, shards: int) -> None:
    config = CONFIG.with_shards(shards).model_copy(update={"fused": True, "batch_size": 64})
    result = run_on_ray(Replay(list(real_inputs(True)), batch_size=64), config)
    assert signal_bytes(result.signals) == reference


@pytest.mark.parametrize("fused", [False, True])
def test_lingering_micro_batches_match(ray_local, reference: bytes, fused: bool) -> None:
    """Parts held back and merged (max batch size + linger) change nothing in the output."""
    config = CONFIG.with_shards(2).model_copy(update={"fused": fused, "batch_size": 4096, "linger_ms": 30.0})
    result = run_on_ray(Replay(list(real_inputs(True)), batch_size=256), config)
    assert signal_bytes(result.signals) == reference


def test_shard_snapshots_carry_state_and_offsets(ray_local) -> None:
    """Every shard snapshots its keys with the source offsets they reflect; a restored shard continues
    exactly as the original would."""
    import pickle

    import ray

    from actors.shard import StageShard

    config = CONFIG.with_shards(2).model_copy(update={"fused": True})
    batches = list(Replay(list(real_inputs(True)), batch_size=512))
    head, tail = batches[: len(batches) // 2], batches[len(batches) // 2:]
    pipe = RayPipeline(config)
    try:
        for i, batch in enumerate(head):
            pipe.send(batch, {"replay": (i + 1) * 512})
        ray.get(pipe.inflight)
        (layer,) = pipe.snapshot()
        assert len(layer) == 2
        assert all(pickle.loads(s)["offsets"]["replay"] == len(head) * 512 for s in layer)
        pipe.finish()
    finally:
        pipe.shutdown()

    # replay the head into a local shard, and restore another from the actor's snapshot
    from engine.routing import partition
    original = StageShard(["candles", "indicators", "structure", "signals"], config.model_dump_json(), 0)
    for batch in head:
        for shard, part in partition(batch, 2):
            if shard == 0:
                original.chain.update(part)
    restored = StageShard(original.stages, config.model_dump_json(), 0)
    restored.restore(layer[0])
    got, want = [], []
    for batch in tail:
        for shard, part in partition(batch, 2):
            if shard == 0:
                got += restored.chain.update(part).value
                want += original.chain.update(part).value
    assert want and [s.id for s in got] == [s.id for s in want]


def test_stage_metrics_count_every_row(ray_local) -> None:
    import ray

    inputs = list(real_inputs(True))
    pipe = RayPipeline(CONFIG.with_shards(2))
    try:
        for batch in Replay(inputs, batch_size=1024):
            pipe.send(batch)
        result = pipe.finish()
        layers = [ray.get([a.stats.remote() for a in layer]) for layer in pipe.topology.layers]
    finally:
        pipe.shutdown()
    assert sum(s["in"] for s in layers[0]) == sum(len(b) for b in inputs)
    # every candle the first stage emitted reached the indicator stage, and on to the signal stage
    assert sum(s["out"] for s in layers[0]) == sum(s["in"] for s in layers[1]) == result.candles
    assert sum(s["in"] for s in layers[3]) == result.candles
    assert sum(s["out"] for s in layers[3]) == len(result.signals)
    assert all(s["batches"] > 0 and s["busy_s"] > 0 for layer in layers for s in layer)


def test_sink_keeps_latest_state(ray_local) -> None:
    import ray

    pipe = RayPipeline(CONFIG)
    try:
        for batch in Replay(list(real_inputs(True)), batch_size=4096):
            pipe.send(batch)
        result = pipe.finish()
        state = ray.get(pipe.topology.sink.latest_state.remote())
    finally:
        pipe.shutdown()
    markets = {b.markets[0] for b in real_inputs(True)}
    assert {c["market"] for c in state["candles"]} == markets
    assert any(c["timeframe"] == "5m" and c["market"] == "ADA_BTC" for c in state["candles"])
    assert any("rsi_14" in row["values"] for row in state["indicators"])
    assert state["signals"] and {s["id"] for s in state["signals"]} <= {s.id for s in result.signals}


def test_replay_command_on_ray_writes_parquet(ray_local, tmp_path) -> None:
    import pyarrow.parquet as pq

    from app.cli import main
    from tests.data_paths import SHARED_DATA

    out = tmp_path / "signals.parquet"
    argv = ["replay", "--input", str(SHARED_DATA / "trades" / "XRP_ETH-trades.parquet"),
            str(SHARED_DATA / "candles" / "ADA_BTC-5m.feather"), "--out", str(out), "--shards", "2",
            "--timeframes", "1m,5m"]
    assert main(argv) == 0
    on_ray = pq.read_table(out)
    assert main(argv[:-6] + argv[-6:] + ["--in-process"]) == 0
    assert on_ray.num_rows > 0 and pq.read_table(out).equals(on_ray)
