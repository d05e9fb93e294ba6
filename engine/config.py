"""The one configuration object of a pipeline run, with defaults that work on a laptop."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from schemas.timeframes import parse_timeframe

STAGES = ("candles", "indicators", "structure", "signals")


class PipelineConfig(BaseModel):
    """What to compute and how to lay it out on Ray."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timeframes: tuple[str, ...] = ("1m",)
    lateness_ns: int = Field(default=0, ge=0, description="out-of-order trades within this are applied")
    gaps: Literal["skip", "flag"] = "skip"
    strategy: str = "default"
    strategy_params: dict[str, float] = Field(default_factory=dict,
                                              description="values for the strategy's [params], e.g. rsi_len")
    indicators: tuple[str, ...] = Field(default=(), description="specs computed besides the strategy's")
    swing_left: int = Field(default=5, ge=1)
    swing_right: int = Field(default=5, ge=1)
    break_by: Literal["close", "wick"] = Field(default="close", description="what breaks a swing level")
    risk_window: int = Field(default=100, ge=2, description="bars of returns behind volatility, VaR and CVaR")
    analyses: tuple[Literal["fvg", "order_blocks", "liquidity"], ...] = Field(
        default=("fvg", "order_blocks", "liquidity"),
        description="structure analyses after swings and breaks (each adds its columns and events)")
    features: bool = Field(default=False, description="compute model feature rows (engine.features) in the "
                                                       "signals stage, after risk")
    models_dir: str | None = Field(default=None, description="model registry whose promoted xgb model and policy "
                                                             "score the feature rows live (model_score, policy_action)")
    # Ray layout
    shards: dict[str, int] = Field(default_factory=lambda: {s: 1 for s in STAGES})
    fused: bool = Field(default=False, description="run all stages of a shard in one actor (lowest latency)")
    batch_size: int = Field(default=8192, ge=1)
    linger_ms: float = Field(default=0.0, ge=0.0, description="max wait before a partial batch is sent on")
    max_in_flight: int = Field(default=4, ge=1, description="batches outstanding per downstream shard")
    actor_cpus: float = Field(default=0.0, ge=0.0, description="logical CPUs reserved per shard actor")

    @field_validator("timeframes")
    @classmethod
    def _check_timeframes(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for tf in v:
            parse_timeframe(tf)
        return v

    @field_validator("shards")
    @classmethod
    def _check_shards(cls, v: dict[str, int]) -> dict[str, int]:
        unknown = set(v) - set(STAGES)
        if unknown:
            raise ValueError(f"unknown stage(s) {sorted(unknown)}; stages are {', '.join(STAGES)}")
        if any(n < 1 for n in v.values()):
            raise ValueError("every stage needs at least one shard")
        return {s: int(v.get(s, 1)) for s in STAGES}

    def with_shards(self, n: int) -> "PipelineConfig":
        """The same config with ``n`` shards for every stage."""
        return self.model_copy(update={"shards": {s: n for s in STAGES}})
