"""A shard actor: hosts the operators of one or more fused stages for the markets hashed to it."""

from __future__ import annotations

import pickle
import time
from collections import deque

import ray

from actors.metrics import StageMetrics
from engine.config import PipelineConfig
from engine.pipeline import Emitted, build_chain
from engine.routing import merge, partition
from schemas.batches import CandleBatch, FeatureBatch


def _ts_init(batch) -> int:
    return batch.candles.ts_init if isinstance(batch, FeatureBatch) else getattr(batch, "ts_init", 0)


def _stamp(value, ts_init: int) -> None:
    """Carry the source's wall-clock stamp onto what a stage emits (for end-to-end latency)."""
    target = value.candles if isinstance(value, FeatureBatch) else value
    if isinstance(target, CandleBatch):
        target.ts_init = max(target.ts_init, ts_init)


class StageShard:
    """Runs its chain on each batch, then routes the output by market hash to the next stage's shards.

    Outputs wait in per-shard buffers until ``batch_size`` rows or ``linger_ms`` (0: send at once).
    At most ``max_in_flight`` calls per downstream shard are outstanding; beyond that this actor
    waits, which in turn holds back its own callers (backpressure up to the source).
    """

    def __init__(self, stages: list[str], config_json: str, shard: int) -> None:
        self.config = PipelineConfig.model_validate_json(config_json)
        self.stages = stages
        self.name = "+".join(stages)
        self.shard = shard
        self.chain = build_chain(stages, self.config)
        self.downstream: list = []
        self.sink = None
        self.n_upstream = 1
        self.ended = 0
        self.inflight: deque = deque()
        self.buffers: dict[int, list] = {}
        self.buffer_since: float | None = None
        self.offsets: dict = {}
        self.metrics = StageMetrics(self.name, shard)
        self.models = self.scorer = None
        if self.config.features and self.config.models_dir:
            from connectors.models.live import LiveModels
            from engine.features.scoring import ScoreOperator
            self.scorer = next((op for op in self.chain.operators if isinstance(op, ScoreOperator)), None)
            if self.scorer is not None:
                self.models = LiveModels(self.config.models_dir)
                self._follow_models()  # load now, before the stream starts, not inside the first batch

    def _follow_models(self) -> None:
        """Between batches: score with whatever was promoted since the last check (hot swap)."""
        if self.models is not None and self.models.refresh():
            self.models.attach_to(self.scorer)

    def connect(self, downstream: list, sink, n_upstream: int) -> None:
        self.downstream, self.sink, self.n_upstream = downstream, sink, n_upstream

    def process(self, batch, offsets: dict | None = None) -> None:
        """Consume one micro-batch (an empty one is a linger tick)."""
        t0 = time.perf_counter()
        if offsets:
            self.offsets.update(offsets)
        n_out = 0
        if len(batch) or getattr(batch, "events", None):
            self._follow_models()
            emitted = self.chain.update(batch)
            _stamp(emitted.value, _ts_init(batch))
            n_out = self._emit(emitted, _ts_init(batch))
        self._send_buffers(force=False)
        self.metrics.record(len(batch), n_out, time.perf_counter() - t0, len(self.inflight))

    def end(self) -> None:
        """An upstream finished; after the last one, flush the operators and tell downstream."""
        self.ended += 1
        if self.ended < self.n_upstream:
            return
        t0 = time.perf_counter()
        emitted = self.chain.flush()
        n_out = self._emit(emitted, 0)
        self._send_buffers(force=True)
        self.metrics.record(0, n_out, time.perf_counter() - t0, len(self.inflight))
        self.metrics.push(len(self.inflight))
        targets = self.downstream or ([self.sink] if self.sink is not None else [])
        for actor in targets:
            self.inflight.append(actor.end.remote())
        ray.get(list(self.inflight))
        self.inflight.clear()

    def _emit(self, emitted: Emitted, ts_init: int) -> int:
        value = emitted.value
        if self.downstream:
            if value is None or (not len(value) and not getattr(value, "events", None)):
                return 0
            for shard, part in partition(value, len(self.downstream)):
                self.buffers.setdefault(shard, []).append(part)
            if self.buffer_since is None:
                self.buffer_since = time.monotonic()
            return len(value)
        # last stage: signals plus the features they were computed from go to the sink
        signals = value or []
        features = emitted.features
        if features is not None and not len(features) and not features.events:
            features = None  # nothing closed: nothing to tell the sink
        if self.sink is not None and (signals or features is not None):
            self._call(self.sink.push.remote(signals, features, ts_init, time.time_ns()))
        return len(signals)

    def _send_buffers(self, force: bool) -> None:
        if not self.buffers:
            return
        size = sum(len(b) for parts in self.buffers.values() for b in parts)
        lingered = (time.monotonic() - (self.buffer_since or 0)) * 1e3 >= self.config.linger_ms
        if not (force or lingered or size >= self.config.batch_size):
            return
        for shard, parts in sorted(self.buffers.items()):
            self._call(self.downstream[shard].process.remote(merge(parts), self.offsets or None))
        self.buffers.clear()
        self.buffer_since = None

    def _call(self, ref) -> None:
        self.inflight.append(ref)
        limit = self.config.max_in_flight * max(1, len(self.downstream))
        if len(self.inflight) > limit:
            done, pending = settle(list(self.inflight), limit)
            self.inflight = deque(pending)
            ray.get(done)  # surface downstream errors here instead of losing them

    def drain(self) -> None:
        """Send every buffered output and wait until downstream accepted all of it."""
        self._send_buffers(force=True)
        ray.get(list(self.inflight))
        self.inflight.clear()

    def snapshot(self, offsets: dict | None = None) -> bytes:
        """All keys' state of this shard plus the source offsets it reflects (given by a coordinated
        snapshot, which drains upstream first, or else the last offsets that reached this shard)."""
        if offsets:
            self.offsets = dict(offsets)
        return pickle.dumps({"stages": self.stages, "shard": self.shard, "offsets": dict(self.offsets),
                             "chain": self.chain.snapshot()}, protocol=5)

    def restore(self, data: bytes) -> None:
        state = pickle.loads(data)
        if state["stages"] != self.stages:
            raise ValueError(f"snapshot of stages {state['stages']} cannot restore {self.stages}")
        self.offsets = dict(state["offsets"])
        self.chain.restore(state["chain"])

    def stats(self) -> dict:
        out = {"stage": self.name, "shard": self.shard, **self.metrics.totals, "inflight": len(self.inflight)}
        op = self.chain.operators[0]
        if hasattr(op, "stats"):
            out["operator"] = dict(op.stats)
        return out


def settle(refs: list, limit: int) -> tuple[list, list]:
    """(finished, pending) of calls in flight, waiting only until at most ``limit`` are pending.

    Every finished call is collected at once without blocking, so a full window is settled once per
    ``limit`` calls instead of a wait per call (a wait costs about as much as a small batch)."""
    done, pending = ray.wait(refs, num_returns=len(refs), timeout=0)
    if len(pending) > limit:
        more, pending = ray.wait(pending, num_returns=len(pending) - limit)
        done += more
    return done, pending


StageShardActor = ray.remote(StageShard)
