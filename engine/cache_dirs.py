"""Where fgbg keeps its caches on this machine: the one place that decides it.

``<cache home>`` is ``$XDG_CACHE_HOME/fgbg`` when that is set to an absolute
path (the XDG rule), else ``~/.cache/fgbg``. Under it:

- ``builtin/``: the built-in assets (:mod:`engine.assets.cache`), unless
  ``$FGBG_CACHE_DIR`` names another folder, or is ``off`` to disable that cache;
- ``work/``: the local working folders of stores written to a URL
  (:func:`engine.store.location.working_folder`, ``--work-dir`` overrides it).

Everything in these folders can be deleted at any time; it is rebuilt when needed.
"""

from __future__ import annotations

import os
from pathlib import Path

#: the environment variable naming the built-in asset cache folder (or ``off``)
CACHE_ENV = "FGBG_CACHE_DIR"
#: the value of :data:`CACHE_ENV` that disables the built-in asset cache
CACHE_OFF = "off"


def cache_home() -> Path:
    """``$XDG_CACHE_HOME/fgbg`` (an absolute ``XDG_CACHE_HOME`` only), else ``~/.cache/fgbg``."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "fgbg"


def builtin_cache_dir() -> Path | None:
    """The built-in asset cache folder, or ``None`` when ``FGBG_CACHE_DIR=off``.

    ``$FGBG_CACHE_DIR`` when set and not empty (an empty value counts as unset,
    as for the XDG variables), else ``<cache home>/builtin``.
    """
    value = os.environ.get(CACHE_ENV, "").strip()
    if value.lower() == CACHE_OFF:
        return None
    return Path(value).expanduser() if value else cache_home() / "builtin"


def work_home() -> Path:
    """``<cache home>/work``: where stores written to a URL are built locally by default."""
    return cache_home() / "work"
