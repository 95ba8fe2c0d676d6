"""A store's ``fgbg`` attributes and what ``info`` says of it: the bottom of
``engine.store``, read by the writer (``zarr_store``), the checks (``verify``)
and stores at URLs (``location``) alike, so none of them imports another to get it.

Files only (json, no zarr): ``info`` stays fast.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import StoreError
from engine.store.progress import merge_markers

ATTRS_KEY = "fgbg"


def read_attrs(root: Path, allow_unfinished: bool = False, markers: bool = True) -> dict[str, Any] | None:
    """The ``fgbg`` attributes of the store at ``root``.

    Shards that ranks writing the store at once recorded as progress markers
    count as done (``markers``; see :mod:`engine.store.progress`).

    Returns ``None`` when the group exists but its creation never finished
    (only with ``allow_unfinished``).

    Raises:
        StoreError: no store there, or not one made by fgbg.
    """
    meta = root / "zarr.json"
    if not root.exists():
        url = re.match(r"^([A-Za-z][A-Za-z0-9+.-]+):/+(.*)$", str(root))  # a URL that became a Path
        if url:
            raise StoreError(f"{url[1]}://{url[2]}: this command reads a local store (a path); "
                             "generate, info and zarr.open_group take URLs: copy the store down first")
        raise StoreError(f"{root}: no such store")
    if not meta.is_file():
        raise StoreError(f"{root}: not a Zarr v3 store (no zarr.json)")
    try:
        doc = json.loads(meta.read_text())
    except (OSError, ValueError) as e:
        raise StoreError(f"{root}: unreadable zarr.json ({e})") from None
    attrs = doc.get("attributes", {}).get(ATTRS_KEY)
    if attrs is None:
        if allow_unfinished and doc.get("node_type") == "group":
            return None
        raise StoreError(f"{root}: not an fgbg store (no '{ATTRS_KEY}' attributes)")
    return merge_markers(root, attrs) if markers else attrs


def recorded_setting(path: str | Path, key: str) -> Any:
    """The ``generate`` option ``key`` the fgbg store at ``path`` was made with, or
    ``None``: no store there, not fgbg's, unreadable, or a URL (only local stores are read)."""
    try:  # a URL is no local path: read_attrs refuses it like a missing store
        attrs = read_attrs(Path(path), allow_unfinished=True, markers=False)
    except StoreError:
        return None
    return None if attrs is None else attrs.get("config", {}).get(key)


@dataclass(frozen=True)
class StoreInfo:
    """What ``info`` reports about a store."""

    path: Path | str
    attrs: dict[str, Any]
    arrays: dict[str, dict[str, Any]]
    bytes_on_disk: int
    n_files: int
    #: done shards whose file is missing or whose index is damaged (``verify`` also decodes them)
    damaged: tuple[Any, ...] = ()

    @property
    def complete(self) -> bool:
        return bool(self.attrs["progress"]["complete"])

    @property
    def shards_done(self) -> int:
        return len(self.attrs["progress"]["shards_done"])

    @property
    def samples_done(self) -> int:
        lay = self.attrs["layout"]
        n, size = int(lay["n_samples"]), int(lay["shard_size"])
        return sum(min((k + 1) * size, n) - k * size for k in self.attrs["progress"]["shards_done"])


def describe_array(doc: dict[str, Any], n_bytes: int) -> dict[str, Any]:
    """What ``info`` says about an array, from its ``zarr.json`` and its bytes on disk."""
    codecs = doc.get("codecs", [])
    inner = codecs[0]["configuration"] if codecs and codecs[0]["name"] == "sharding_indexed" else None
    used = inner["codecs"] if inner else codecs
    return {
        "shape": tuple(doc["shape"]),
        "dtype": doc["data_type"],
        "chunks": tuple(inner["chunk_shape"]) if inner else tuple(doc["chunk_grid"]["configuration"]["chunk_shape"]),
        "shards": tuple(doc["chunk_grid"]["configuration"]["chunk_shape"]) if inner else None,
        "codecs": [c["name"] if c["name"] != "blosc" else f"blosc-{c['configuration']['cname']}" for c in used
                   if c["name"] not in ("bytes",)],
        "bytes": n_bytes,
    }
