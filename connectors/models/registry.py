"""The model registry: versioned model artefacts on disk, optionally mirrored into Postgres.

Layout under ``root`` (default ``data/models``; ``CRYPTO_INTEL_MODELS_DIR`` overrides)::

    <name>/<version>/meta.json      what the version is: kind, metrics, features, window, data hash, params
    <name>/<version>/<artefacts>    e.g. model.ubj (XGBoost) or policy.zip (stable-baselines3)
    <name>/PRODUCTION               the promoted version, one line
    <name>/promotions.jsonl         every promotion and rollback, appended; rollback walks it back

Versions are ``v1``, ``v2``, ... per name. A version directory appears whole or not at all (written
under a temporary name, then renamed); PRODUCTION is replaced atomically (temporary file + os.replace),
so a reader polling ``production()`` sees the old version or the new one, never a torn file. Writers
of one name serialise on a lock file. With ``database_url`` every change also rewrites that name's rows
of the ``models`` table (migrations 0004, 0009) from the files, which stay the source of truth.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Iterator

from schemas.errors import InputError
from schemas.json_safe import json_safe

ENV_ROOT = "CRYPTO_INTEL_MODELS_DIR"
DEFAULT_ROOT = Path("data") / "models"
KINDS = ("xgboost", "rl_policy")
STAGES = ("candidate", "production", "archived")
META = "meta.json"
PRODUCTION = "PRODUCTION"
HISTORY = "promotions.jsonl"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_VERSION = re.compile(r"^v([1-9][0-9]{0,8})$")
_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class RegistryError(InputError):
    """A registry request cannot be served as given (bad name, missing files, an unreadable entry)."""


class UnknownModelError(RegistryError, LookupError):
    """No such model name or version in the registry."""


class NothingToRollBackError(RegistryError):
    """A rollback was asked for, but no earlier promotion exists to go back to."""


def default_root() -> Path:
    """``CRYPTO_INTEL_MODELS_DIR`` if set, else ``data/models``."""
    return Path(os.environ.get(ENV_ROOT) or DEFAULT_ROOT)


@dataclass(frozen=True)
class ModelInfo:
    """One registered version: what it is, how it scored, what it was trained on, and where it lives."""

    name: str
    version: str
    kind: str
    created_at: str  # ISO-8601 UTC
    stage: str
    metrics: dict = field(default_factory=dict)
    features: list = field(default_factory=list)
    window: dict = field(default_factory=dict)
    data_hash: str = ""
    params: dict = field(default_factory=dict)
    path: Path = Path()
    files: list = field(default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["path"] = str(self.path)
        return d


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """``data`` into ``path`` all at once: a temporary file beside it, flushed, then renamed over it."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _vnum(version: str) -> int:
    m = _VERSION.match(version)
    return int(m.group(1)) if m else -1


class Registry:
    """Versioned models under ``root``; ``database_url`` also mirrors them into the ``models`` table."""

    def __init__(self, root: Path | str | None = None, database_url: str | None = None) -> None:
        self.root = Path(root) if root is not None else default_root()
        self.database_url = database_url or None
        self._migrated = False

    # --- reading -------------------------------------------------------------------------------------

    def names(self) -> list[str]:
        """Every model name with at least one version."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir()
                      if p.is_dir() and _NAME.match(p.name) and self._versions(p.name))

    def _versions(self, name: str) -> list[str]:
        d = self.root / name
        if not d.is_dir():
            return []
        return sorted((p.name for p in d.iterdir() if _VERSION.match(p.name) and (p / META).is_file()), key=_vnum)

    def list(self, name: str | None = None) -> list[ModelInfo]:
        """Every version of ``name`` (or of every model), by name then version number."""
        names = [self._check_name(name)] if name is not None else self.names()
        if name is not None and not self._versions(name):
            raise UnknownModelError(f"no model named {name!r} in {self.root} (registered: "
                                    f"{', '.join(self.names()) or 'none'})")
        return [self._read(n, v, self.production_version(n), self._promoted(n))
                for n in names for v in self._versions(n)]

    def get(self, name: str, version: str) -> ModelInfo:
        """One version; ``UnknownModelError`` if it is not registered."""
        self._check_name(name)
        if not _VERSION.match(str(version)) or not (self.root / name / str(version) / META).is_file():
            have = self._versions(name)
            if not have:
                raise UnknownModelError(f"no model named {name!r} in {self.root}")
            raise UnknownModelError(f"model {name!r} has no version {version!r} (versions: {', '.join(have)})")
        return self._read(name, version, self.production_version(name), self._promoted(name))

    def production_version(self, name: str) -> str | None:
        """The promoted version of ``name`` (one small file read), or None."""
        try:
            text = (self.root / name / PRODUCTION).read_text().strip()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return text if _VERSION.match(text) else None

    def production(self, name: str) -> ModelInfo | None:
        """The promoted version's info, or None when nothing is promoted."""
        v = self.production_version(name)
        if v is None or not (self.root / name / v / META).is_file():
            return None
        return self._read(name, v, v, None)

    def path(self, name: str, version: str) -> Path:
        """The artefact directory of a registered version."""
        return self.get(name, version).path

    def latest(self, name: str) -> ModelInfo | None:
        """The highest version of ``name``, or None."""
        have = self._versions(self._check_name(name))
        return self.get(name, have[-1]) if have else None

    def _read(self, name: str, version: str, production: str | None, promoted: set[str] | None) -> ModelInfo:
        d = self.root / name / version
        try:
            meta = json.loads((d / META).read_text())
        except (OSError, ValueError) as e:
            raise RegistryError(f"{d / META}: unreadable registry entry: {e}") from None
        if version == production:
            stage = "production"
        elif promoted is not None and version in promoted:
            stage = "archived"
        else:
            stage = "candidate"
        return ModelInfo(name=name, version=version, kind=meta.get("kind", ""), created_at=meta.get("created_at", ""),
                         stage=stage, metrics=meta.get("metrics") or {}, features=meta.get("features") or [],
                         window=meta.get("window") or {}, data_hash=meta.get("data_hash") or "",
                         params=meta.get("params") or {}, path=d, files=meta.get("files") or [])

    def history(self, name: str) -> list[dict]:
        """The promotions and rollbacks of ``name``, oldest first."""
        try:
            lines = (self.root / name / HISTORY).read_text().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a torn last line of a crashed writer: the entries before it stand
        return out

    def _stack(self, name: str) -> list[str]:
        """Promoted versions, most recent last, with rolled-back ones taken off."""
        stack: list[str] = []
        for e in self.history(name):
            if e.get("action") == "promote":
                stack.append(e["version"])
            elif e.get("action") == "rollback" and stack:
                stack.pop()
        return stack

    def _promoted(self, name: str) -> set[str]:
        return {e["version"] for e in self.history(name) if e.get("action") == "promote"}

    # --- writing -------------------------------------------------------------------------------------

    def register(self, name: str, kind: str, files: dict[str, bytes | str | Path], metrics: dict | None = None,
                 features: list[str] | None = None, window: dict | None = None, data_hash: str = "",
                 params: dict | None = None) -> ModelInfo:
        """Store a new version of ``name`` (the next ``vN``) with its artefact files (bytes, or paths to
        copy) and metadata; it starts as a candidate."""
        self._check_name(name)
        if kind not in KINDS:
            raise RegistryError(f"model kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if not files:
            raise RegistryError("a model version needs at least one artefact file")
        for fname in files:
            if not isinstance(fname, str) or not _FILE.match(fname) or fname == META:
                raise RegistryError(f"artefact file name {fname!r}: use letters, digits and _.- (not {META})")
        for fname, src in files.items():
            if not isinstance(src, (bytes, bytearray, memoryview)) and not Path(src).is_file():
                raise RegistryError(f"artefact {fname}: {src}: no such file")
        base = self.root / name
        base.mkdir(parents=True, exist_ok=True)
        tmp = base / f".tmp-{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            for fname, src in files.items():
                if isinstance(src, (bytes, bytearray, memoryview)):
                    with open(tmp / fname, "wb") as f:
                        f.write(bytes(src))
                        f.flush()
                        os.fsync(f.fileno())
                else:
                    shutil.copyfile(src, tmp / fname)
            created = datetime.now(UTC).isoformat().replace("+00:00", "Z")
            meta = {"name": name, "kind": kind, "created_at": created, "metrics": json_safe(metrics or {}),
                    "features": list(features or []), "window": json_safe(window or {}), "data_hash": data_hash or "",
                    "params": json_safe(params or {}), "files": sorted(files)}
            with self._lock(name):
                n = max([_vnum(v) for v in self._versions(name)] + [_vnum(p.name) for p in base.iterdir()] + [0]) + 1
                version = f"v{n}"
                meta["version"] = version
                (tmp / META).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
                _fsync_dir(tmp)
                os.rename(tmp, base / version)  # the whole version appears at once
                _fsync_dir(base)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        info = self.get(name, version)
        self._mirror(name)
        return info

    def promote(self, name: str, version: str) -> ModelInfo:
        """Make ``version`` the production version of ``name`` (what serving loads)."""
        info = self.get(name, version)
        with self._lock(name):
            if self.production_version(name) != version:
                self._append(name, {"action": "promote", "version": version,
                                    "previous": self.production_version(name)})
                write_atomic(self.root / name / PRODUCTION, (version + "\n").encode())
        self._mirror(name)
        return self.get(name, info.version)

    def rollback(self, name: str) -> ModelInfo:
        """Go back to the version promoted before the current one."""
        self._check_name(name)
        if not self._versions(name):
            raise UnknownModelError(f"no model named {name!r} in {self.root}")
        with self._lock(name):
            stack = self._stack(name)
            current = self.production_version(name)
            if current is None or len(stack) < 2:
                what = f"{name} {current} is the first promoted version" if current else f"{name} has no promoted version"
                raise NothingToRollBackError(f"nothing to roll back to: {what}")
            target = stack[-2]
            self._append(name, {"action": "rollback", "version": target, "previous": current})
            write_atomic(self.root / name / PRODUCTION, (target + "\n").encode())
        self._mirror(name)
        return self.get(name, target)

    def _append(self, name: str, entry: dict) -> None:
        entry = {"ts": datetime.now(UTC).isoformat().replace("+00:00", "Z"), **entry}
        with open(self.root / name / HISTORY, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())

    @contextmanager
    def _lock(self, name: str) -> Iterator[None]:
        (self.root / name).mkdir(parents=True, exist_ok=True)
        with open(self.root / name / ".lock", "a") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def _check_name(self, name: str) -> str:
        if not isinstance(name, str) or not _NAME.match(name):
            raise RegistryError(f"model name {name!r}: 1-64 letters, digits and _.- starting with a letter or digit")
        return name

    # --- the Postgres mirror -------------------------------------------------------------------------

    def _mirror(self, name: str) -> None:
        if not self.database_url:
            return
        from connectors.models.pg import sync_models
        try:
            sync_models(self.database_url, [self._row(i) for i in self.list(name)], migrate=not self._migrated)
        except (OSError, ConnectionError) as e:
            raise RegistryError(f"DATABASE_URL: cannot mirror {name} into the models table (the files under "
                                f"{self.root} are written): {e}") from None
        except Exception as e:
            if type(e).__module__.startswith("asyncpg"):
                raise RegistryError(f"DATABASE_URL: cannot mirror {name} into the models table (the files under "
                                    f"{self.root} are written): {e}") from None
            raise
        self._migrated = True

    def sync(self) -> int:
        """Rewrite every model's rows of the ``models`` table from the files; returns the rows written."""
        if not self.database_url:
            raise RegistryError("no database to sync to: set DATABASE_URL")
        n = 0
        for name in self.names():
            self._mirror(name)
            n += len(self._versions(name))
        return n

    @staticmethod
    def _row(info: ModelInfo) -> dict:
        w = info.window or {}
        return {"name": info.name, "version": info.version, "kind": info.kind, "uri": info.path.resolve().as_uri(),
                "metrics": info.metrics, "params": info.params, "created_at": info.created_at, "stage": info.stage,
                "features": [str(f) for f in info.features], "window_start": w.get("start_ts"),
                "window_end": w.get("end_ts"), "data_hash": info.data_hash or None}


def read_production(root: Path | str, name: str) -> str | None:
    """The promoted version of ``name`` under ``root`` — for pollers that hold no Registry."""
    return Registry(root).production_version(name)
