"""On-disk cache of the built-in assets, as Numba caches its compiled code.

Drawing the default 100 street scenes and 100 cars takes seconds, and every
``generate``, ``bench`` and ``train --source online`` would pay it again. Each
piece (scene ``i`` or car ``i`` of one seed and size) is one uncompressed
``.npz`` file, so ``--builtin-backgrounds 20`` and ``100`` share entries::

    <cache dir>/street-<fingerprint>/s<seed>-<H>x<W>-<index>.npz
    <cache dir>/car-<fingerprint>/s<seed>-<H>x<W>-<index>.npz

``<cache dir>`` is :func:`engine.cache_dirs.builtin_cache_dir` (``off``
disables the cache). The fingerprint is the SHA-256 of the source files that
draw the pixels and of the NumPy (and, for cars, torch) version: an edited
generator misses instead of serving stale pixels, and no version number has
to be remembered.

Safety: an entry is written to a temporary file in its folder and renamed, so
a reader (another torchrun rank, say) sees a whole entry or none; an entry
holds the SHA-256 of its arrays, checked on every load, so a truncated or
corrupt file (a crash before the disk flushed it, say) is rebuilt with a
warning; a folder that cannot be written only means nothing is cached.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from engine.cache_dirs import builtin_cache_dir

log = logging.getLogger(__name__)

#: the entry layout; bumped when the files themselves change meaning
FORMAT = 1
ROOT = Path(__file__).resolve().parents[2]
#: per kind of piece: the source files whose code decides its pixels (relative to
#: the repository root), and the distributions whose code does too
SOURCES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "street": (
        ("engine/assets/streets.py", "engine/assets/camera.py", "engine/assets/procedural.py",
         "engine/assets/images.py", "engine/assets/cache.py"),
        ("numpy",),
    ),
    "car": (
        ("engine/assets/cars.py", "engine/assets/procedural.py", "engine/assets/images.py",
         "engine/assets/cache.py", "kernels/resample.py", "kernels/checks.py"),
        ("numpy", "torch"),
    ),
}

#: builds a piece: its arrays, those recorded in the store first
Build = Callable[[], Sequence[np.ndarray]]


def fingerprint(kind: str) -> str | None:
    """SHA-256 of what draws a ``kind`` piece: :data:`FORMAT`, its source files and
    package versions; ``None`` when a source file cannot be read (then nothing is cached)."""
    files, packages = SOURCES[kind]
    h = hashlib.sha256(f"fgbg builtin cache {FORMAT} {kind}\n".encode())
    try:
        for name in files:
            h.update(f"{name}\n".encode())
            h.update((ROOT / name).read_bytes())
    except OSError as e:
        log.debug("built-in asset cache off: cannot read the generator source (%s)", e)
        return None
    for package in packages:
        try:  # the installed distribution's, whether or not imported yet (torch.__version__ differs: +cu130)
            version = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            version = "none"
        h.update(f"{package}=={version}\n".encode())
    return h.hexdigest()


def digests(arrays: Sequence[np.ndarray], n_recorded: int) -> tuple[str, str]:
    """SHA-256 of the first ``n_recorded`` arrays' bytes (what the store records for
    the piece) and of all of them (what an entry is checked against), in one pass."""
    h = hashlib.sha256()
    recorded = None
    for k, a in enumerate(arrays):
        if k == n_recorded:
            recorded = h.copy()
        h.update(np.ascontiguousarray(a).data)
    return (recorded or h).hexdigest(), h.hexdigest()


class PieceCache:
    """The built-in pieces of one process: loaded from the cache folder, or built
    and stored there.

    Args:
        root: the cache folder; ``None`` disables caching (every piece is built).
    """

    def __init__(self, root: Path | None) -> None:
        self.root = root
        self.folders = {kind: self._folder(kind) for kind in SOURCES} if root is not None else {}
        self.writable = root is not None  # cleared after the first failed write: one log line, not 200
        self._failed = threading.Lock()  # pieces are built on several threads: one of them says it

    @classmethod
    def from_env(cls) -> PieceCache:
        """The cache at :func:`engine.cache_dirs.builtin_cache_dir`."""
        return cls(builtin_cache_dir())

    def _folder(self, kind: str) -> Path | None:
        fp = fingerprint(kind)
        return None if fp is None or self.root is None else self.root / f"{kind}-{fp[:20]}"

    def path(self, kind: str, seed: int, index: int, height: int, width: int) -> Path | None:
        """The entry file of a piece, or ``None`` when the cache is off."""
        folder = self.folders.get(kind)
        return None if folder is None else folder / f"s{seed}-{height}x{width}-{index:05d}.npz"

    def get(
        self, kind: str, key: tuple[int, int, int, int], names: Sequence[str], n_recorded: int, build: Build
    ) -> tuple[tuple[np.ndarray, ...], str]:
        """A piece's arrays and the SHA-256 the store records for it.

        Args:
            kind: ``"street"`` or ``"car"``.
            key: ``(seed, index, height, width)``.
            names: the arrays' names, in the order ``build`` returns them.
            n_recorded: how many of the first arrays the store's digest covers.
            build: draws the piece when it is not cached.

        Returns:
            The arrays (as ``build`` returns them, byte for byte) and the
            SHA-256 of the first ``n_recorded`` arrays' bytes.
        """
        path = self.path(kind, *key)
        if path is not None:
            found = self._load(path, names, n_recorded)
            if found is not None:
                return found
        arrays = tuple(build())
        recorded, check = digests(arrays, n_recorded)
        if path is not None and self.writable:
            self._store(path, dict(zip(names, arrays)), check)
        return arrays, recorded

    def _load(self, path: Path, names: Sequence[str], n_recorded: int) -> tuple[tuple[np.ndarray, ...], str] | None:
        try:
            with np.load(path, allow_pickle=False) as entry:
                arrays = tuple(entry[name] for name in names)
                stored = str(entry["sha256"])
        except (FileNotFoundError, NotADirectoryError):  # not cached (yet)
            return None
        except PermissionError as e:  # a folder this user may not read: as if not cached
            log.debug("built-in asset cache: cannot read %s (%s)", path, e)
            return None
        except Exception as e:  # noqa: BLE001 - whatever is wrong with the file (zip, npy, OS), it is rebuilt
            log.warning("built-in asset cache: %s is unreadable (%s: %s); rebuilding it", path, type(e).__name__, e)
            return None
        recorded, check = digests(arrays, n_recorded)
        if check != stored:
            log.warning("built-in asset cache: %s does not match its checksum (corrupt); rebuilding it", path)
            return None
        return arrays, recorded

    def _store(self, path: Path, arrays: dict[str, np.ndarray], check: str) -> None:
        tmp = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays, sha256=np.array(check))
            os.replace(tmp, path)  # atomic: concurrent writers of one entry write the same bytes
        except OSError as e:
            with self._failed:
                first, self.writable = self.writable, False
            if first:
                log.info("built-in asset cache: cannot write under %s (%s); not caching", self.root, e)
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
