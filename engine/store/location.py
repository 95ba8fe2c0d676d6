"""Where a store lives: a local folder, or an fsspec URL (``s3://``, ``gs://``, ``memory://`` …).

A local path (or a ``file://`` URL, the same thing) is the fast path: written
in place with atomic renames and fsyncs. Any other URL is written through an
fsspec filesystem: ``generate`` builds the store in a local working folder, as
always, and copies every file to the URL as soon as it is durable there, the
store's ``zarr.json`` (its progress) after the shard files it records — so
the URL never claims a shard it does not hold, and ``info URL`` shows how far
it got. Object stores write each file whole (no partial objects), so this
keeps the local guarantees.

Readers: ``info`` reads a URL through fsspec; the arrays open with plain
``zarr.open_group(URL)``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import StoreError
from engine.store.attrs import ATTRS_KEY, StoreInfo, describe_array

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoreLocation:
    """A store's place.

    Attributes:
        text: what the user gave.
        local: the folder, for a local path or ``file://`` URL; else ``None``.
        url: the fsspec URL of a remote store; else ``None``.
    """

    text: str
    local: Path | None = None
    url: str | None = None

    @property
    def remote(self) -> bool:
        return self.url is not None

    def __str__(self) -> str:
        return self.text


def locate(text: str | Path) -> StoreLocation:
    """Parse a store argument: a path, ``file://PATH``, or another fsspec URL.

    Raises:
        StoreError: an unknown scheme, or one whose filesystem package is not
            installed (one line naming it).
    """
    text = str(text)
    if "://" not in text:
        return StoreLocation(text, local=Path(text))
    protocol, rest = text.split("://", 1)
    protocol = protocol.lower()
    if protocol in ("file", "local"):
        return StoreLocation(text, local=Path(rest))
    import fsspec

    try:
        fsspec.get_filesystem_class(protocol)
    except ValueError:
        raise StoreError(f"{text}: unsupported URL scheme {protocol!r} (a local path, file://, s3://, gs://, "
                         "memory:// or another fsspec filesystem)") from None
    except ImportError as e:
        raise StoreError(f"{text}: the {protocol}:// filesystem is not installed ({str(e).splitlines()[0]})") from None
    return StoreLocation(text, url=text.rstrip("/"))


def filesystem(url: str) -> tuple[Any, str]:
    """``(fsspec filesystem, path inside it)`` of ``url``."""
    from fsspec.core import url_to_fs

    return url_to_fs(url)


class Mirror:
    """Copies files of a local store folder to the same relative paths under a URL.

    Args:
        local: the local working folder.
        url: where the store lives.
    """

    def __init__(self, local: Path, url: str) -> None:
        self.local = local
        self.url = url
        self.fs, self.root = filesystem(url)

    def remote_path(self, path: Path) -> str:
        return f"{self.root}/{path.relative_to(self.local).as_posix()}"

    def put(self, paths: list[Path]) -> None:
        """Copy ``paths`` (files under the local folder), each whole.

        Raises:
            StoreError: the copy failed (network, permissions, quota).
        """
        for path in paths:
            target = self.remote_path(path)
            try:
                self.fs.pipe_file(target, path.read_bytes())
            except Exception as e:  # fsspec backends raise their own types (botocore, aiohttp, …)
                raise StoreError(f"{self.url}: copying {path.relative_to(self.local)} failed ({e}); "
                                 "finished shards are kept: run again with --resume") from None

    def put_tree(self, missing_only: bool = False) -> None:
        """Copy every file of the local folder, ``zarr.json`` of the root last.

        ``missing_only`` (resuming): only files the URL lacks or holds at another
        size (an interrupted copy), and the root's ``zarr.json``.
        """
        root_meta = self.local / "zarr.json"
        files = sorted(p for p in self.local.rglob("*") if p.is_file() and p != root_meta and not p.name.endswith(".partial"))
        if missing_only:
            there = {p: int(d.get("size") or 0) for p, d in self.fs.find(self.root, detail=True).items()} \
                if self.fs.exists(self.root) else {}
            files = [p for p in files if there.get(self.remote_path(p).lstrip("/")) != p.stat().st_size
                     and there.get(self.remote_path(p)) != p.stat().st_size]
        self.put([*files, root_meta] if root_meta.is_file() else files)

    def remove_existing(self) -> None:
        """Delete what is at the URL (``--overwrite``)."""
        if self.fs.exists(self.root):
            self.fs.rm(self.root, recursive=True)


def remote_exists(url: str) -> bool:
    fs, root = filesystem(url)
    return fs.exists(f"{root}/zarr.json") or fs.exists(root)


def read_remote_attrs(url: str) -> dict[str, Any]:
    """The ``fgbg`` attributes of the store at ``url``.

    Raises:
        StoreError: no store there, or not one fgbg made.
    """
    fs, root = filesystem(url)
    try:
        doc = json.loads(fs.cat_file(f"{root}/zarr.json"))
    except FileNotFoundError:
        raise StoreError(f"{url}: no store there (no zarr.json)") from None
    except ValueError as e:
        raise StoreError(f"{url}: unreadable zarr.json ({e})") from None
    attrs = doc.get("attributes", {}).get(ATTRS_KEY)
    if attrs is None:
        raise StoreError(f"{url}: not an fgbg store (no '{ATTRS_KEY}' attributes)")
    return attrs


def inspect_remote(url: str) -> Any:
    """``info`` of a store at a URL: its attributes, arrays and size, through
    fsspec (no data read). Done shards are checked to exist, not decoded.

    Returns:
        A :class:`engine.store.attrs.StoreInfo`.
    """
    attrs = read_remote_attrs(url)
    fs, root = filesystem(url)
    sizes = {p[len(root) + 1 :]: int(d.get("size") or 0) for p, d in fs.find(root, detail=True).items()}
    arrays: dict[str, dict[str, Any]] = {}
    for rel in sorted(sizes):
        if rel.endswith("zarr.json") and rel != "zarr.json":
            doc = json.loads(fs.cat_file(f"{root}/{rel}"))
            if doc.get("node_type") != "array":
                continue
            name = rel[: -len("/zarr.json")]
            arrays[name] = describe_array(doc, sum(s for p, s in sizes.items() if p.startswith(name + "/")))
    return StoreInfo(Path(url), attrs, arrays, sum(sizes.values()), len(sizes), ())


def working_folder(url: str, base: str | Path | None = None) -> Path:
    """The local folder a store at ``url`` is built in: ``base`` (``--work-dir``)
    or ``~/.cache/fgbg/work`` (:func:`engine.cache_dirs.work_home`), then a
    name derived from the URL, so that ``--resume`` finds it again."""
    import hashlib
    import re

    from engine.cache_dirs import work_home

    folder = Path(base) if base is not None else work_home()
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", url.split("://", 1)[-1].strip("/"))[-60:]
    return folder / f"{name}-{hashlib.sha256(url.encode()).hexdigest()[:8]}"
