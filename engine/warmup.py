"""Compiling the per-bar kernels ahead of a run, so the first replay on a fresh install is as lively as later ones.

The structure kernels are compiled on first use and cached on disk. A stage inside a Ray actor gets
its input from the object store as read-only arrays, which numba compiles separately from writable
ones; running every stage once over writable and once over read-only copies of a small input
compiles (or loads from the cache) every variant the live pipeline uses.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import numpy as np

from engine.config import STAGES, PipelineConfig
from engine.pipeline import Chain, build_operators
from schemas.batches import CandleBatch, FeatureBatch, TradeBatch


def read_only(batch):
    """A copy of a batch whose numpy columns are read-only, as a Ray actor receives it."""
    if isinstance(batch, FeatureBatch):
        values = batch.values.copy()
        values.setflags(write=False)
        return dataclasses.replace(batch, candles=read_only(batch.candles), values=values)
    changes = {}
    for f in dataclasses.fields(batch):
        value = getattr(batch, f.name)
        if isinstance(value, np.ndarray):
            value = value.copy()
            value.setflags(write=False)
            changes[f.name] = value
    return dataclasses.replace(batch, **changes)


def warm_kernels(batches: Iterable[TradeBatch | CandleBatch], config: PipelineConfig) -> int:
    """Run each stage over ``batches`` with writable and with read-only inputs; returns the bars seen."""
    batches = list(batches)
    bars = 0
    for frozen in (False, True):
        stages = [Chain(build_operators(stage, config)) for stage in STAGES]
        for batch in batches:
            x = batch
            for chain in stages:
                out = chain.update(read_only(x) if frozen else x)
                x = out.value
                if x is None or not len(x):
                    break
                if isinstance(x, FeatureBatch):
                    bars += len(x)
        for chain in stages:
            chain.flush()
    return bars
