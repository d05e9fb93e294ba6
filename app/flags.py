"""Checks of command-line values, done while the arguments are parsed or before any work starts.

The ``type=`` functions raise :class:`argparse.ArgumentTypeError`, which the parser reports as one
line naming the flag (``crypto-intel replay: error: argument --swing: ...``); the path checks raise
:class:`~app.inputs.CommandLineError` naming the flag, so a bad output path fails before a long run
rather than after it.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import socket
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from app.inputs import CommandLineError
from schemas.errors import ConfigError
from schemas.timeframes import parse_timeframe


def int_at_least(low: int) -> Callable[[str], int]:
    """A whole number >= ``low`` (what ``type=int`` accepts, then checked)."""
    def check(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value
    check.__name__ = f"int_at_least_{low}"
    return check


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def fraction(zero: bool = False) -> Callable[[str], float]:
    """A fraction below 1: above 0, or from 0 on with ``zero``."""
    def check(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not ((0.0 <= value) if zero else (0.0 < value)) or not value < 1.0:
            raise argparse.ArgumentTypeError(f"must be a fraction in {'[0' if zero else '(0'}, 1), got {text}")
        return value
    check.__name__ = "fraction"
    return check


def registry(root: str | None, write: bool = True):
    """The model registry of ``--registry`` (default ``$CRYPTO_INTEL_MODELS_DIR`` or data/models), mirrored into
    the ``models`` table when DATABASE_URL is set; with ``write``, checked writable before any work starts."""
    from connectors.models.registry import Registry, default_root
    r = Path(root) if root else default_root()
    if r.exists() and not r.is_dir():
        raise CommandLineError(f"--registry {r}: is a file; give a directory")
    if write:
        try:
            r.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise CommandLineError(f"--registry {r}: cannot create it ({e.strerror})") from None
        if not os.access(r, os.W_OK):
            raise CommandLineError(f"--registry {r}: not writable")
    return Registry(r, os.environ.get("DATABASE_URL") or None)


def port(text: str) -> int:
    """A TCP port, 0 (any free one) to 65535."""
    value = non_negative_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"a port is 0..65535, got {value}")
    return value


def check_port_free(flag: str, host: str, value: int) -> None:
    """Fail before anything starts when ``host:value`` is taken (0 means any free port)."""
    if not value:
        return
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, value))
        except OSError as e:
            raise CommandLineError(f"{flag} {value}: cannot listen on {host}:{value} ({e.strerror or e}); "
                                   f"pick a free port with {flag}") from None


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0."""
    value = _finite(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    """A finite number >= 0."""
    value = _finite(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text!r}")
    return value


def timeframe(text: str) -> str:
    """One timeframe such as ``15m``, checked; returned as given."""
    try:
        parse_timeframe(text)
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def timeframes(text: str) -> str:
    """Comma-separated timeframes, at least one, each checked; returned as given."""
    parts = [t.strip() for t in text.split(",") if t.strip()]
    if not parts:
        raise argparse.ArgumentTypeError(f"no timeframe in {text!r}; give at least one, e.g. 1m or 1m,5m")
    for t in parts:
        timeframe(t)
    return text


def lateness(text: str) -> str:
    """``0`` or a duration like a timeframe (``2s``, ``1m``); returned as given."""
    return text if text.strip() in ("0", "0s") else timeframe(text)


def indicator_list(text: str) -> str:
    """Extra indicator specs of a pipeline (may be empty), each checked; returned as given."""
    if not text.strip():
        return text
    from engine.indicators.registry import parse_spec
    try:
        for spec in (s.strip() for s in text.split(",")):
            if spec:
                parse_spec(spec)
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def indicator_specs(text: str) -> str:
    """The specs of ``crypto-intel indicators`` (at least one, no duplicates), checked; returned as given."""
    from engine.indicators.registry import parse_specs
    try:
        parse_specs(text)
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def url_checker(schemes: tuple[str, ...], example: str) -> Callable[[str], str]:
    """A URL with one of ``schemes`` and a host; returned as given."""
    def check(text: str) -> str:
        try:
            parts = urlsplit(text.strip())
            parts.port  # noqa: B018 - raises ValueError when the port is not a number
        except ValueError as e:
            raise argparse.ArgumentTypeError(f"bad URL {text!r} ({e}); write e.g. {example}") from None
        if parts.scheme.lower() not in schemes or not parts.hostname:
            raise argparse.ArgumentTypeError(
                f"bad URL {text!r}: needs the scheme {' or '.join(s + '://' for s in schemes)} and a host, "
                f"e.g. {example}")
        return text
    check.__name__ = "url"
    return check


http_url = url_checker(("http", "https"), "http://127.0.0.1:8545")
ws_url = url_checker(("ws", "wss"), "ws://127.0.0.1:8546")


def _first_existing(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists."""
    for p in (path, *path.parents):
        if p.exists():
            return p
    return Path(".")


def check_out_file(flag: str, value: str, make_parents: bool = True) -> None:
    """An output file ``value`` can be written: not a directory, and not under a regular file."""
    path = Path(value)
    if path.is_dir():
        raise CommandLineError(f"{flag} {value}: is a directory; give the path of a file, e.g. {path / 'out'}")
    base = _first_existing(path.parent)
    if not base.is_dir():
        raise CommandLineError(f"{flag} {value}: {base} is a file, not a directory; choose a path in a directory")
    if not make_parents and base != path.parent:
        raise CommandLineError(f"{flag} {value}: directory {path.parent} does not exist; create it first")
    _check_writable(flag, value, base)


def check_out_dir(flag: str, value: str) -> None:
    """A directory ``value`` can be used or created: neither it nor an ancestor is a regular file."""
    base = _first_existing(Path(value))
    if not base.is_dir():
        raise CommandLineError(f"{flag} {value}: {base} is a file, not a directory; choose another directory")
    _check_writable(flag, value, base)


def _check_writable(flag: str, value: str, base: Path) -> None:
    if not os.access(base, os.W_OK | os.X_OK):
        raise CommandLineError(f"{flag} {value}: no permission to write in {base}; choose another place")


def one_line(message: str) -> str:
    """A message on one line (multi-line texts joined with '; ')."""
    return "; ".join(line.strip() for line in re.split(r"[\r\n]+", message) if line.strip())
