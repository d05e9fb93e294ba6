"""Plain JSON of computed results: numpy scalars and arrays as Python values, NaN and infinities as null
(neither JSON nor Postgres jsonb takes them), paths and datetimes as text."""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path
from typing import Any


def json_safe(value: Any) -> Any:
    """``value`` with every part JSON can hold as itself."""
    if hasattr(value, "item") and not isinstance(value, (list, tuple, dict, str, bytes)) \
            and getattr(value, "shape", None) == ():
        value = value.item()  # numpy scalar
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "tolist"):  # numpy array
        return json_safe(value.tolist())
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    return value
