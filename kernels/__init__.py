"""Pixel math only: Numba CPU/CUDA kernels, their plain references, input checks.

Nothing here does I/O or knows about the CLI or the store. Submodules are
imported explicitly (``from kernels.composite import composite_batch``) so that
importing this package costs nothing.
"""
