"""Compiled per-bar state machines of the structure operators.

Swing confirmation, breaks and the gap / order-block lifecycles are sequential in time, so they cannot be
vectorised along a key's bars; these numba kernels walk a batch's rows in order instead. Each operator
imports its kernel on first use, so importing the engine does not load numba.
"""
