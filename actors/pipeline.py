"""Builds the sharded actor topology on Ray and drives a source through it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import ray

from actors.shard import StageShardActor, settle
from actors.sink import Sink
from engine.config import STAGES, PipelineConfig
from engine.pipeline import RunResult
from engine.routing import merge, partition
from schemas.batches import CandleBatch

SinkActor = ray.remote(Sink)


def stage_groups(config: PipelineConfig) -> list[list[str]]:
    """Stages per actor layer: one layer per stage, or all fused into one (operator chaining)."""
    return [list(STAGES)] if config.fused else [[s] for s in STAGES]


@dataclass
class Topology:
    """The actors of one pipeline: layers of shards (first = entry) and the sink."""

    layers: list[list] = field(default_factory=list)
    sink: object = None

    def actors(self) -> list:
        return [a for layer in self.layers for a in layer] + [self.sink]


def build_topology(config: PipelineConfig, out_path: str | None = None, keep: bool = True, store=None) -> Topology:
    """Create shard actors per layer and wire each to the next layer and the sink."""
    opts = {"num_cpus": config.actor_cpus}
    cfg = config.model_dump_json()
    groups = stage_groups(config)
    layers = []
    for group in groups:
        n = config.shards[group[0]]
        layers.append([StageShardActor.options(name=None, **opts).remote(group, cfg, i) for i in range(n)])
    sink = SinkActor.options(**opts).remote(len(layers[-1]), out_path, keep, store=store)
    wiring = []
    for k, layer in enumerate(layers):
        nxt = layers[k + 1] if k + 1 < len(layers) else []
        n_up = len(layers[k - 1]) if k else 1
        wiring += [a.connect.remote(nxt, sink, n_up) for a in layer]
    ray.get(wiring)
    return Topology(layers, sink)


class RayPipeline:
    """Feeds micro-batches into the entry shards with bounded in-flight calls, then ends the stream."""

    def __init__(self, config: PipelineConfig, out_path: str | None = None, keep: bool = True, store=None) -> None:
        self.config = config
        self.topology = build_topology(config, out_path, keep, store)
        self.inflight: list = []
        self.trades = 0
        self.rows = 0
        self.offsets: dict = {}
        self.buffers: dict[int, list] = {}
        self.buffer_since: float | None = None

    def send(self, batch, offsets: dict | None = None) -> None:
        """Route one batch to the entry shards; blocks while too many calls are outstanding.

        Parts wait per shard until ``batch_size`` rows or ``linger_ms`` (0: sent at once), so a
        shard of a many-shard layout still gets full-sized batches.
        """
        if offsets:
            self.offsets.update(offsets)
        batch.ts_init = batch.ts_init or time.time_ns()
        if not isinstance(batch, CandleBatch):
            self.trades += len(batch)
        self.rows += len(batch)
        for shard, part in partition(batch, len(self.topology.layers[0])):
            buf = self.buffers.get(shard)
            if buf and type(buf[0]) is not type(part):
                self._flush_shard(shard)  # a call carries one kind of batch
            self.buffers.setdefault(shard, []).append(part)
        if self.buffer_since is None:
            self.buffer_since = time.monotonic()
        self._flush(force=False)

    def _flush(self, force: bool) -> None:
        lingered = self.buffer_since is not None and \
            (time.monotonic() - self.buffer_since) * 1e3 >= self.config.linger_ms
        for shard in list(self.buffers):
            if force or lingered or sum(len(b) for b in self.buffers[shard]) >= self.config.batch_size:
                self._flush_shard(shard)
        if not self.buffers:
            self.buffer_since = None

    def _flush_shard(self, shard: int) -> None:
        parts = self.buffers.pop(shard)
        part = merge(parts)
        entry = self.topology.layers[0]
        self.inflight.append(entry[shard].process.remote(part, dict(self.offsets) or None))
        limit = self.config.max_in_flight * len(entry)
        if len(self.inflight) > limit:
            done, self.inflight = settle(self.inflight, limit)
            ray.get(done)

    def tick(self) -> None:
        """Let lingering buffers go out when the source is idle."""
        from schemas.batches import TradeBatch
        self._flush(force=False)
        for actor in self.topology.layers[0]:
            self.inflight.append(actor.process.remote(TradeBatch.empty()))

    def finish(self, timeout_s: float = 600.0) -> RunResult:
        """End the stream, wait until every stage flushed, and return what the sink collected."""
        self._flush(force=True)
        ray.get(self.inflight)
        self.inflight = []
        ray.get([a.end.remote() for a in self.topology.layers[0]])
        sink = self.topology.sink
        deadline = time.monotonic() + timeout_s
        while not ray.get(sink.done.remote()):
            if time.monotonic() > deadline:
                raise TimeoutError("pipeline did not finish within the timeout")
            time.sleep(0.01)
        while ray.get(sink.store_pending.remote()):  # every delivery handed to the store actor
            if time.monotonic() > deadline:
                raise TimeoutError("store did not acknowledge the last deliveries within the timeout")
            time.sleep(0.01)
        got = ray.get(sink.result.remote())
        stats = ray.get([a.stats.remote() for a in self.topology.layers[0]])
        result = RunResult(got["signals"], got["events"], got["candles"], self.trades)
        result.model_rows = got.get("model_rows", [])
        result.stats = merge_operator_stats(stats)
        return result.finish()

    def status(self) -> dict:
        return ray.get(self.topology.sink.status.remote())

    def snapshot(self) -> list[list[bytes]]:
        """A consistent snapshot: drain layer by layer, then every shard's state with the source offsets
        of the last batch sent (so all shards reflect exactly the same source position)."""
        self._flush(force=True)
        ray.get(self.inflight)
        self.inflight = []
        for layer in self.topology.layers:
            ray.get([a.drain.remote() for a in layer])
        return [ray.get([a.snapshot.remote(self.offsets) for a in layer]) for layer in self.topology.layers]

    def shutdown(self) -> None:
        for actor in self.topology.actors():
            ray.kill(actor)


def merge_operator_stats(stats: list[dict]) -> dict:
    total: dict = {}
    for s in stats:
        for k, v in s.get("operator", {}).items():
            if isinstance(v, (int, float)):
                total[k] = total.get(k, 0) + v
    return total


def run_on_ray(batches: Iterable, config: PipelineConfig, progress: Callable[[int], None] | None = None
               ) -> RunResult:
    """Run a finite source through a fresh topology and tear it down."""
    pipe = RayPipeline(config)
    try:
        for batch in batches:
            pipe.send(batch)
            if progress:
                progress(len(batch))
        return pipe.finish()
    finally:
        pipe.shutdown()
