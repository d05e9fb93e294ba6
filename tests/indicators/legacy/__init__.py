"""A frozen copy of the indicators as they were before the row kernels: numpy steps per round of keys.

Test-only reference: the kernels must give these streaming values bit for bit (``test_kernels``).
Not to be edited, except to keep it importable.
"""
