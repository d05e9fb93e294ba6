"""Builds the operator chain from a config and runs it in-process (backtests, research, tests).

The same operators run inside Ray shard actors (actors/), so live and replay share one code path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from engine.candles import CandleAggregator
from engine.config import STAGES, PipelineConfig
from engine.features.operator import FeatureOperator
from engine.features.scoring import ScoreOperator
from engine.features.spec import INDICATORS as FEATURE_INDICATORS
from engine.indicators.operator import IndicatorOperator
from engine.risk.operator import RiskOperator
from engine.signals.operator import SignalOperator, signal_order
from engine.signals.rules import load_strategy
from engine.structure.gaps import FVGOperator
from engine.structure.liquidity import LiquidityOperator
from engine.structure.order_blocks import OrderBlockOperator
from engine.structure.swings import SwingOperator
from schemas.batches import CandleBatch, EventBatch, FeatureBatch, SignalBatch
from schemas.records import Signal, StructureEvent


def build_operators(stage: str, config: PipelineConfig) -> list:
    """Fresh operators of one pipeline stage, in the order they run."""
    if stage == "candles":
        return [CandleAggregator(list(config.timeframes), lateness=config.lateness_ns, gaps=config.gaps)]
    if stage == "indicators":
        strategy = load_strategy(config.strategy, config.strategy_params)
        extra = list(FEATURE_INDICATORS) if config.features else []
        specs = list(dict.fromkeys(list(strategy.indicators) + list(config.indicators) + extra))
        return [IndicatorOperator(specs)]
    if stage == "structure":
        optional = {"fvg": FVGOperator, "order_blocks": OrderBlockOperator, "liquidity": LiquidityOperator}
        return [SwingOperator(config.swing_left, config.swing_right, config.break_by)] + [
            optional[name]() for name in ("fvg", "order_blocks", "liquidity") if name in config.analyses]
    if stage == "signals":
        # risk first, so every signal carries the risk of the bar that fired it; features after risk (they read it)
        ops: list = [RiskOperator(window=config.risk_window)]
        if config.features:  # then the models' columns, which rules may read (a host attaches the models)
            ops += [FeatureOperator(config.timeframes), ScoreOperator()]
        return ops + [SignalOperator(load_strategy(config.strategy, config.strategy_params))]
    raise ValueError(f"unknown stage {stage!r}; stages are {', '.join(STAGES)}")


def build_chain(stages: list[str], config: PipelineConfig) -> "Chain":
    """The operators of several stages fused into one chain."""
    return Chain([op for stage in stages for op in build_operators(stage, config)])


@dataclass
class Emitted:
    """What a chain produced for one input: the last operator's output and the features it saw."""

    value: Any = None
    features: FeatureBatch | None = None


class Chain:
    """Operators fused in one process: each one's output is the next one's input."""

    def __init__(self, operators: list) -> None:
        self.operators = operators

    def _run(self, batch: Any, start: int = 0) -> Emitted:
        features = batch if isinstance(batch, FeatureBatch) else None
        x = batch
        for op in self.operators[start:]:
            x = op.update(x)
            if isinstance(x, FeatureBatch):
                features = x
        return Emitted(x, features)

    def update(self, batch: Any) -> Emitted:
        return self._run(batch)

    def flush(self) -> Emitted:
        """End of stream: flush each operator and push what it released through the rest."""
        out = Emitted()
        for i, op in enumerate(self.operators):
            pending = op.flush()
            if pending is not None:
                out = self._run(pending, i + 1) if i + 1 < len(self.operators) else Emitted(pending)
        return out

    def snapshot(self) -> list[bytes]:
        return [op.snapshot() for op in self.operators]

    def restore(self, states: list[bytes]) -> None:
        for op, s in zip(self.operators, states):
            op.restore(s)


class RunResult:
    """Everything a finished run produced, in canonical order, plus counters.

    Signals and events stay columns (``signal_batch``, ``event_batch``) until someone reads ``signals`` or
    ``events``, the records.
    """

    def __init__(self, signals: SignalBatch | list | None = None, events: EventBatch | list | None = None,
                 candles: int = 0, trades: int = 0, stats: dict | None = None) -> None:
        self._signal_parts: list = [signals] if signals else []
        self._signals: list[Signal] | None = None
        self._event_parts: list[EventBatch] = [EventBatch.from_records(events or [])]
        self._events: list[StructureEvent] | None = None
        self.candles, self.trades = candles, trades
        self.stats = dict(stats or {})
        self.model_rows: list[FeatureBatch] = []  # feature batches carrying model features (config.features)
        self._sort_signals = self._sort_events = False

    def add_signals(self, signals: SignalBatch | list) -> None:
        if len(signals):
            self._signal_parts.append(signals)
            self._signals, self._sort_signals = None, bool(self._sort_signals)

    def add_events(self, events: EventBatch) -> None:
        if len(events):
            self._event_parts.append(events)
            self._events = None

    @property
    def signal_batch(self) -> SignalBatch | list:
        """Every signal, as columns when every part is columns, in canonical order once finished."""
        if self._sort_signals or len(self._signal_parts) > 1:
            if all(isinstance(p, SignalBatch) for p in self._signal_parts):
                batch = SignalBatch.concat(self._signal_parts)
                self._signal_parts = [batch.take(batch.order()) if self._sort_signals else batch] if len(batch) else []
            else:
                records = [s for part in self._signal_parts for s in part]
                self._signal_parts = [sorted(records, key=signal_order) if self._sort_signals else records]
            self._sort_signals = False
        return self._signal_parts[0] if self._signal_parts else SignalBatch.empty()

    @property
    def signals(self) -> list[Signal]:
        """Every signal as a record, in canonical order once finished."""
        if self._signals is None:
            self._signals = list(self.signal_batch)
        return self._signals

    @property
    def n_signals(self) -> int:
        return sum(len(p) for p in self._signal_parts)

    @property
    def n_events(self) -> int:
        return sum(len(p) for p in self._event_parts)

    @property
    def event_batch(self) -> EventBatch:
        """Every event as columns, in canonical order once finished."""
        if len(self._event_parts) != 1:
            self._event_parts = [EventBatch.concat(self._event_parts)]
        if self._sort_events:
            batch = self._event_parts[0]
            self._event_parts = [batch.take(batch.order())]
            self._sort_events = False
        return self._event_parts[0]

    @property
    def events(self) -> list[StructureEvent]:
        """Every event as a record, in canonical order once finished."""
        if self._events is None:
            self._events = self.event_batch.to_records()
        return self._events

    @property
    def features(self):
        """The model feature rows of the run (``engine.features.Features``), when the config computed them."""
        from engine.features import of_batches
        return of_batches(self.model_rows)

    def finish(self) -> "RunResult":
        """Put signals and events in canonical order (done when they are first read: a run that only counts
        them never sorts)."""
        self._sort_signals = self._sort_events = True
        self._signals = self._events = None
        return self


def collect(result: RunResult, emitted: Emitted) -> None:
    """Add one chain output to a result."""
    if emitted.value:
        result.add_signals(emitted.value)
    if emitted.features is not None:
        result.add_events(emitted.features.events)
        result.candles += len(emitted.features)
        if emitted.features.model_names is not None and len(emitted.features):
            result.model_rows.append(emitted.features)


def run_in_process(batches: Iterable, config: PipelineConfig) -> RunResult:
    """Run every stage in this process over an iterable of TradeBatch/CandleBatch micro-batches."""
    chain = build_chain(list(STAGES), config)
    result = RunResult()
    for batch in batches:
        if not isinstance(batch, CandleBatch):
            result.trades += len(batch)
        collect(result, chain.update(batch))
    collect(result, chain.flush())
    result.stats = dict(chain.operators[0].stats)
    return result.finish()
