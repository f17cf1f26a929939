"""Numba kernels of the integer engine (NHWC, int64, ``cache=True``).

Kernels take plain numpy arrays and scalars, never artifact objects; the op
wrappers in :mod:`intsim.ops` turn artifact parameters into kernel inputs.
"""
