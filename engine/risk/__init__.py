"""Risk engine: batch measures (volatility, VaR/CVaR, drawdown, sizing), a 0..100 score, a keyed operator."""

from engine.risk.operator import RiskOperator
from engine.risk.score import RiskScore, score

__all__ = ["RiskOperator", "RiskScore", "score"]
