"""Registry of indicators by name and the ``name:p1:p2`` spec syntax used by the CLI and config."""

from __future__ import annotations

import importlib
import pkgutil

from schemas.errors import IndicatorSpecError
from tests.indicators.legacy.base import Indicator

_REGISTRY: dict[str, type[Indicator]] = {}
_loaded = False


def register(cls: type[Indicator]) -> type[Indicator]:
    """Class decorator adding an indicator to the registry under ``cls.name``."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"indicator name {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def _load_all() -> None:
    global _loaded
    import tests.indicators.legacy as pkg
    _loaded = True
    for mod in pkgutil.iter_modules(pkg.__path__):
        if mod.name not in ("base", "registry", "operator"):
            importlib.import_module(f"tests.indicators.legacy.{mod.name}")


def available() -> dict[str, type[Indicator]]:
    """All registered indicators by name."""
    if not _loaded:  # importing one indicator module must not hide the others
        _load_all()
    return dict(sorted(_REGISTRY.items()))


def parse_spec(spec: str) -> Indicator:
    """Build an indicator from ``name[:param...]``, e.g. ``rsi:14``, ``macd:12:26:9``, ``obv``."""
    parts = [p.strip() for p in spec.strip().split(":")]
    name = parts[0].lower()
    registry = available()
    if name not in registry:
        raise IndicatorSpecError(
            f"unknown indicator {name!r} in {spec!r}; known: {', '.join(registry)}")
    cls = registry[name]
    raw = parts[1:]
    if len(raw) > len(cls.defaults):
        raise IndicatorSpecError(
            f"{spec!r}: {name} takes at most {len(cls.defaults)} parameters (defaults {cls.defaults})")
    params = []
    for text, typ in zip(raw, cls.param_types):
        try:
            params.append(typ(text) if typ is float else int(text))
        except ValueError:
            raise IndicatorSpecError(
                f"{spec!r}: parameter {text!r} of {name} must be {'a number' if typ is float else 'an integer'}"
            ) from None
    return cls(*params)


def parse_specs(text: str) -> list[Indicator]:
    """Comma-separated specs, e.g. ``"rsi:14,ema:20,obv"``; duplicates are rejected."""
    specs = [s for s in (t.strip() for t in text.split(",")) if s]
    if not specs:
        raise IndicatorSpecError("no indicators given; e.g. --indicators \"rsi:14,ema:20\"")
    out = [parse_spec(s) for s in specs]
    labels = [i.label for i in out]
    dupes = {x for x in labels if labels.count(x) > 1}
    if dupes:
        raise IndicatorSpecError(f"indicator listed twice: {', '.join(sorted(dupes))}")
    return out
