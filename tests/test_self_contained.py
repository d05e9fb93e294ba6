"""The tests and benchmarks read nothing outside the checkout: their data is bundled in tests/data."""

from __future__ import annotations

import os
import re
from pathlib import Path

from tests.data_paths import DATA_ROOT, REPO

MAX_DATA_BYTES = 30 * 1024 * 1024
# folders that are not the project's own text: the bundled data, installed JS packages, caches, outputs
SKIP_DIRS = {"node_modules", "__pycache__", ".pytest_cache", "artifacts", "cache", "build"}
TEXT_SUFFIXES = {".py", ".md", ".txt", ".toml", ".cfg", ".ini", ".json", ".yaml", ".yml", ".sh", ".js", ".sol", ""}
# path strings that point outside the checkout (pieces joined so this file does not match itself)
OUTSIDE = re.compile("|".join([
    re.escape(".." + "/shared"),                   # a data folder beside the checkout
    re.escape("/" + "work/"),                      # the machines' absolute /work paths
    r"(?<!tests/)(?<!tests\\)" + re.escape("shared" + "/data"),  # the old data folder name, but not tests/data
    re.escape('"shared"') + r"\s*\)?\s*/\s*" + re.escape('"data"'),  # the same built with Path joins
    re.escape("CRYPTO_INTEL_" + "SHARED_DATA"),    # the old environment override
]))


def _project_files() -> list[Path]:
    out = []
    for top in ("tests", "benchmarks"):
        for dirpath, dirnames, filenames in os.walk(REPO / top):
            dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
            d = Path(dirpath)
            for name in sorted(filenames):
                p = d / name
                if p.is_relative_to(DATA_ROOT) and name != "README.md":
                    continue  # third-party data files: bytes as upstream published them
                if p.suffix in TEXT_SUFFIXES:
                    out.append(p)
    return out


def test_no_test_or_benchmark_names_a_path_outside_the_checkout():
    files = _project_files()
    assert any(p.name == "conftest.py" for p in files) and any(p.parent.name == "benchmarks" for p in files)
    hits = []
    for p in files:
        for n, line in enumerate(p.read_text(errors="replace").splitlines(), 1):
            if OUTSIDE.search(line):
                hits.append(f"{p.relative_to(REPO)}:{n}: {line.strip()}")
    assert not hits, "paths outside the checkout:\n" + "\n".join(hits)


def test_the_data_root_is_inside_the_checkout():
    assert DATA_ROOT == REPO / "tests" / "data"
    assert DATA_ROOT.is_dir() and (DATA_ROOT / "README.md").is_file() and (DATA_ROOT / "licenses").is_dir()


def test_bundled_data_stays_small():
    total = sum(p.stat().st_size for p in DATA_ROOT.rglob("*") if p.is_file())
    assert total < MAX_DATA_BYTES, f"tests/data holds {total / 2**20:.1f} MiB, limit {MAX_DATA_BYTES / 2**20:.0f} MiB"
