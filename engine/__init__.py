"""fgbg engine: assets, sample plan, depth sources, compositor, Zarr store.

Imports point one way: ``cli`` → ``engine`` → ``kernels``. Heavy packages
(torch, numba, zarr) are imported inside the modules that need them, never
here, so ``import engine`` stays cheap for ``cli.py --help`` and ``info``.

The public API (``docs/api.md``) is importable from here, loaded on first use::

    from engine import open_store, loader, generate, GenerateConfig, RunOptions
"""

from typing import Any

__version__ = "0.1.0"

#: public name → module that defines it (imported when the name is first used)
_PUBLIC = {
    "open_store": "engine.api", "loader": "engine.api", "generate": "engine.api",
    "Store": "engine.store.reader", "Loader": "engine.learn.loader",
    "GenerateConfig": "engine.config", "RunOptions": "engine.config",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_PUBLIC[name]), name)
