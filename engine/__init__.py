"""fgbg engine: assets, sample plan, depth sources, compositor, Zarr store.

Imports point one way: ``cli`` → ``engine`` → ``kernels``. Heavy packages
(torch, numba, zarr) are imported inside the modules that need them, never
here, so ``import engine`` stays cheap for ``cli.py --help`` and ``info``.
"""

__version__ = "0.1.0"
