"""Supervised models over the engine's features: labels, walk-forward splits with purging and embargo,
evaluation metrics and the XGBoost parameters and scoring (pure: no Ray, no I/O)."""
