"""How indicator code is compiled (numba), in one place.

No fastmath: every operation rounds as written, which the kernels rely on to reproduce numpy's values
bit for bit. numpy's error model: a division by zero gives inf or NaN, as in numpy, with no check.

Compiled code is cached on disk (``__pycache__/*.nbi``, ``*.nbc``). numba checks only the kernel's own
source file for changes, not the helpers inlined into it from other modules: after editing a helper,
delete those files (or touch the kernels' modules) before measuring or testing.
"""

from __future__ import annotations

from numba import njit

# One compiled entry point per indicator (see ``engine.indicators.base.Indicator.kernel``). Kernels
# allocate nothing: every array they touch is the caller's, alive for the whole call, so they are built
# without numba's reference counting (NRT), whose increments and decrements around a helper's loops
# cost several times the work of a row.
row_kernel = njit(cache=True, error_model="numpy", _nrt=False)

# Helpers are inlined into the kernels at numba's IR level, so the kernel is one function that LLVM
# optimises as a whole.
inlined = njit(cache=True, error_model="numpy", inline="always")
