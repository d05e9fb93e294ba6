"""Paths of the real sample data shipped inside the package (see ``engine/sample/README.md``)."""

from __future__ import annotations

from pathlib import Path

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "sample"
_DATA_SUFFIXES = (".parquet", ".feather", ".csv")


def sample_dir() -> Path:
    """The folder holding the bundled sample files."""
    return SAMPLE_DIR


def sample_paths() -> list[Path]:
    """Every bundled trade and candle file, sorted by name."""
    return sorted(p for p in SAMPLE_DIR.iterdir() if p.suffix in _DATA_SUFFIXES)
