"""Outputs do not depend on the CPU: ``engine.libm`` gives numpy's values as numpy computes them without its
AVX-512 routines, on any machine, and the pure packages take no CPU-dispatched transcendental from numpy."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from engine import libm

REPO = Path(__file__).resolve().parent.parent
# numpy ufuncs of float64 with per-CPU vector code (its own AVX-512 routines or Intel's SVML)
DISPATCHED = {"exp", "exp2", "expm1", "log", "log2", "log10", "log1p", "power", "float_power", "cbrt", "sin",
              "cos", "tan", "arcsin", "arccos", "arctan", "arctan2", "sinh", "cosh", "tanh", "arcsinh",
              "arccosh", "arctanh"}

_SCALAR_NUMPY = """
import sys
import numpy as np
x, y = np.load(sys.argv[1]), np.load(sys.argv[2])
with np.errstate(all="ignore"):
    np.save(sys.argv[3], np.stack([np.log(x), np.exp(y), np.power(np.abs(x), y)]))
"""


def _inputs() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    x = np.concatenate([rng.lognormal(0.0, 3.0, 200_000), 1.0 + rng.normal(0.0, 1e-3, 200_000),
                        [0.0, -0.0, -1.0, np.nan, np.inf, 5e-324, 1.7e308]])
    y = np.concatenate([rng.normal(0.0, 2.0, len(x) - 5), [0.0, -np.inf, np.inf, np.nan, 709.0]])
    return x, y


def test_values_equal_numpys_without_its_avx512_routines(tmp_path) -> None:
    from numpy._core._multiarray_umath import __cpu_features__ as found
    x, y = _inputs()
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    off = " ".join(f for f in ("X86_V4", "AVX512_ICL", "AVX512_SPR", "AVX512_SKX", "AVX512F") if found.get(f))
    env = {**os.environ, "NPY_DISABLE_CPU_FEATURES": off} if off else dict(os.environ)
    subprocess.run([sys.executable, "-c", _SCALAR_NUMPY, tmp_path / "x.npy", tmp_path / "y.npy", tmp_path / "want.npy"],
                   check=True, env=env)
    want = np.load(tmp_path / "want.npy")
    got = np.stack([libm.log(x), libm.exp(y), libm.power(np.abs(x), y)])
    assert np.array_equal(got.view(np.int64), want.view(np.int64)), (got != want).sum(axis=1)


def test_shapes_out_and_broadcasting() -> None:
    a = np.arange(1.0, 13.0).reshape(3, 4)
    assert libm.log(a).shape == (3, 4) and libm.exp(libm.log(a)).shape == (3, 4)
    out = np.empty(12)
    assert libm.exp(np.zeros(12), out=out) is out and (out == 1.0).all()
    view = np.empty((4, 3)).T  # not C-contiguous: filled through a copy
    assert libm.log(np.ones((3, 4)), out=view) is view and (view == 0.0).all()
    assert libm.power(a, 2.0).tolist() == (a * a).tolist()
    assert libm.power(2.0, np.array([0.0, 1.0, 10.0])).tolist() == [1.0, 2.0, 1024.0]
    assert libm.log([]).shape == (0,) and np.isneginf(libm.log([0.0])[0]) and np.isnan(libm.log([-1.0])[0])


def test_pure_packages_take_no_dispatched_transcendental_from_numpy() -> None:
    found = []
    for package in ("engine", "schemas"):
        for path in sorted((REPO / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Attribute) and node.attr in DISPATCHED and \
                        isinstance(node.value, ast.Name) and node.value.id in ("np", "numpy"):
                    found.append(f"{path.relative_to(REPO)}:{node.lineno} np.{node.attr}")
    assert not found, f"use engine.libm (the same value on every CPU): {found}"
