"""Progress of a store written by several processes at once.

One process records a finished shard in the store's attributes
(``progress.shards_done`` in ``zarr.json``), a read-modify-write that two
processes must not race on. Several ranks instead each drop one small marker
file per finished shard, ``<store>/.fgbg-progress/shard-<k>.json`` (written
atomically, after the shard's files are durable), holding what the attributes
would have been told: the writer (compressor, JPEG encoder) and the shard's
image histogram for the channel statistics.

Readers see markers as done shards (:func:`merge_markers`, used by
``read_attrs``). Once every shard is done, one process folds the markers into
the attributes and deletes them (:func:`fold_markers`), which leaves the store
byte-identical to one written by a single process.

Stores of several objects per image keep per-object results in flat arrays
(``meta/objects/{depth, visible_pixels, box}``) whose chunks neighbouring
shards share, so ranks cannot write them. Each rank writes its shard's rows to
a side file, ``<store>/.fgbg-progress/objects-<k>.npz``, before the shard's
marker; the process that completes the store copies them into the flat arrays
(:meth:`engine.store.zarr_store.ZarrWriter.finalise`). A marker of such a
store thus promises its side file.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

PROGRESS_DIR = ".fgbg-progress"


def marker_dir(root: Path) -> Path:
    """Folder of the markers of the store at ``root``."""
    return root / PROGRESS_DIR


def write_marker(root: Path, shard: int, writer: dict[str, Any] | None, histogram: dict[str, Any] | None) -> None:
    """Record shard ``shard`` as done (after its files are durable): temp file, fsync, rename.

    Args:
        root: the store.
        shard: the shard index.
        writer: the ``writers`` entry of the process that wrote it.
        histogram: ``{"counts": (3, 256) ints, "samples": k}`` of its images, or ``None``.
    """
    folder = marker_dir(root)
    folder.mkdir(exist_ok=True)
    path = folder / f"shard-{shard:07d}.json"
    tmp = folder / f".shard-{shard:07d}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump({"shard": shard, "writer": writer, "histogram": histogram}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def objects_path(root: Path, shard: int) -> Path:
    """The side file of shard ``shard``'s per-object results (see the module docstring)."""
    return marker_dir(root) / f"objects-{shard:07d}.npz"


def encode_objects(values: dict[str, np.ndarray]) -> bytes:
    """``values`` (per-object result name → array) as the bytes of an ``.npz`` file."""
    buffer = io.BytesIO()
    np.savez(buffer, **values)
    return buffer.getvalue()


def read_objects(root: Path, shard: int) -> dict[str, np.ndarray] | None:
    """The per-object results shard ``shard``'s side file holds (name → array),
    or ``None`` when it is missing or unreadable."""
    try:
        with np.load(objects_path(root, shard), allow_pickle=False) as f:
            return {name: f[name] for name in f.files}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None


def read_markers(root: Path) -> dict[int, dict[str, Any]]:
    """Every marker of the store at ``root``, by shard (unreadable ones are skipped: not done)."""
    folder = marker_dir(root)
    if not folder.is_dir():
        return {}
    found: dict[int, dict[str, Any]] = {}
    for path in sorted(folder.glob("shard-*.json")):
        try:
            doc = json.loads(path.read_text())
            found[int(doc["shard"])] = doc
        except (OSError, ValueError, KeyError, TypeError):
            log.warning("%s: unreadable progress marker, its shard counts as not done", path)
    return found


def merge_markers(root: Path, attrs: dict[str, Any]) -> dict[str, Any]:
    """``attrs`` with the shards the markers record added to ``progress``
    (``complete`` once every shard is done); ``attrs`` itself when there are none."""
    markers = read_markers(root)
    if not markers:
        return attrs
    done = sorted(set(attrs["progress"]["shards_done"]) | set(markers))
    return {**attrs, "progress": {"shards_done": done, "complete": len(done) == attrs["layout"]["n_shards"]}}


def fold_markers(root: Path, attrs: dict[str, Any]) -> tuple[dict[str, Any], dict[int, dict[str, Any]]]:
    """Attributes with the markers folded in (progress, and the ``writers`` they
    name, after those already recorded, in shard order), and the markers.

    The caller writes the attributes, then calls :func:`remove_markers`.
    """
    markers = read_markers(root)
    merged = merge_markers(root, attrs)
    writers = list(attrs.get("writers", []))
    for k in sorted(markers):
        entry = markers[k].get("writer")
        if entry is not None and entry not in writers:
            writers.append(entry)
    folded = dict(merged)
    if writers:
        folded["writers"] = writers
    return folded, markers


def remove_markers(root: Path) -> None:
    """Delete the markers (after they were folded into the attributes)."""
    shutil.rmtree(marker_dir(root), ignore_errors=True)
