"""Reading a store from your own code: :func:`open_store` and :class:`Store`.

A :class:`Store` hides the layout: samples come back as numpy arrays whatever
the codec (lossless chunks or JPEG files), the held-out split follows the one
rule ``train`` uses (:func:`split_indices`, :mod:`engine.splits`), and a
damaged or missing shard raises the library's one-line
:class:`~engine.errors.StoreError` (:meth:`StoreShards.guard`), never zeros.
"""

from __future__ import annotations

import io
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import StoreError

SPLITS = ("train", "val", "all")

#: per-sample placement arrays under ``meta/`` (the first object's, with several)
PLACEMENT = ("bg_index", "fg_index", "flip", "x", "y", "h", "w", "scale")


def split_indices(attrs: dict[str, Any], bg_index: np.ndarray, split: str, val_fraction: float,
                  seed: int, val_backgrounds: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """The samples of ``split`` among the store's completed shards: the rule ``train`` uses.

    The held-out backgrounds are drawn among those the completed samples hold
    (:func:`engine.splits.held_out_among`), unless ``val_backgrounds`` gives them
    (a checkpoint's record: evaluate and ``train --resume`` keep the split trained with).

    Args:
        attrs: the store's ``fgbg`` attributes.
        bg_index: ``(N,) int`` background of every sample (``meta/bg_index``).
        split: ``train``, ``val`` (the held-out backgrounds) or ``all``.
        val_fraction, seed: :func:`engine.splits.held_out_among`'s.
        val_backgrounds: ``(m,) int`` held-out backgrounds to use instead, or ``None``.

    Returns:
        ``(indices (k,) int64, held-out backgrounds (m,) int64)``, both sorted.

    Raises:
        StoreError: unknown or empty split (saying what to change).
    """
    from engine.splits import held_out_among, too_few_backgrounds

    if split not in SPLITS:
        raise StoreError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    lay = attrs["layout"]
    done = np.zeros(lay["n_samples"], bool)
    for k in attrs["progress"]["shards_done"]:
        done[k * lay["shard_size"] : (k + 1) * lay["shard_size"]] = True
    if not done.any():
        raise StoreError(f"the {split} split is empty: the store has no completed samples yet "
                         "(finish it with generate --resume)")
    if val_backgrounds is None:
        try:
            val_bgs = held_out_among(bg_index[done], val_fraction, seed)
        except ValueError:
            advice = too_few_backgrounds(int(done.sum()), len(attrs["inputs"]["foregrounds"]),
                                         len(np.unique(bg_index[done])))
            raise StoreError(f"no {split} split: {advice}") from None
    else:
        val_bgs = np.sort(np.asarray(val_backgrounds, dtype=np.int64))
    in_val = np.isin(bg_index, val_bgs)
    keep = done & (in_val if split == "val" else ~in_val if split == "train" else True)
    index = np.flatnonzero(keep).astype(np.int64)
    if len(index) == 0:
        raise StoreError(f"the {split} split is empty (completed samples: {int(done.sum())}; held-out "
                         f"backgrounds {val_bgs.tolist()}): is this the store the checkpoint was trained on?")
    return index, val_bgs


class Store:
    """An fgbg store opened for reading (use :func:`open_store`).

    Attributes:
        path: the store's folder.
        attrs: its ``fgbg`` attributes (config, inputs, layout, progress, statistics).

    ``len(store)`` is the plan's sample count; ``store[i]`` one sample,
    ``store[a:b]`` (or a sequence of indices) several, stacked. Each is a dict:

    - ``image``: ``(H, W, 3) uint8`` RGB (JPEG stores: decoded);
    - ``mask``: ``(H, W) uint8``, 255 on the pasted objects, 0 elsewhere;
    - ``depth``: ``(H, W) float32`` metres (0: unknown);
    - ``instances``: ``(H, W) uint16`` object number + 1 (0: background), stores
      made with several objects per image only;
    - ``alpha``: ``(H, W) uint8`` the objects' coverage, stores made with ``--save-alpha`` only;
    - ``meta``: ``{name: int or float}`` the sample's placement (``bg_index``,
      ``fg_index``, ``flip``, ``x``, ``y``, ``h``, ``w``, ``scale``);
    - ``objects``: ``{name: (m, ...) array}`` its objects (``fg_index``, ``x``,
      ``y``, ``h``, ``w``, ``flip``, ``depth`` metres, ``visible_pixels``,
      ``box`` ``(m, 4)`` xywh), stores with several objects per image only.

    Several samples stack each array along a new first axis (``(B, H, W, 3)``
    …); ``meta`` values become ``(B,)`` arrays and ``objects`` a list of dicts.

    Raises:
        StoreError: on access, a done shard that is missing or damaged, or a
            sample whose shard is not written yet.
    """

    def __init__(self, path: str | Path) -> None:
        from engine.store.zarr_store import read_attrs

        self.path = Path(path)
        self.attrs: dict[str, Any] = read_attrs(self.path)

    # -- what the store is -------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self.attrs["layout"]["n_samples"])

    def __repr__(self) -> str:
        lay = self.attrs["layout"]
        return (f"Store({str(self.path)!r}, samples={len(self)}, size={lay['height']}x{lay['width']}, "
                f"codec={lay['image_codec']!r}, complete={self.complete})")

    @property
    def config(self) -> Any:
        """The :class:`~engine.config.GenerateConfig` the store was made with."""
        from engine.config import GenerateConfig

        return GenerateConfig.from_dict(self.attrs["config"])

    @property
    def inputs(self) -> dict[str, Any]:
        """The input files it was made from (names, sizes, hashes), as ``generate`` recorded them."""
        return self.attrs["inputs"]

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)`` of every sample."""
        lay = self.attrs["layout"]
        return int(lay["height"]), int(lay["width"])

    @property
    def complete(self) -> bool:
        lay = self.attrs["layout"]
        return len(self.attrs["progress"]["shards_done"]) >= lay["n_shards"]

    @cached_property
    def _group(self) -> Any:
        import zarr

        return zarr.open_group(self.path, mode="r")

    @cached_property
    def _shards(self) -> Any:
        from engine.store.verify import StoreShards

        return StoreShards(self.path, self.attrs)

    def split(self, split: str = "train", val_fraction: float = 0.1, seed: int = 0) -> np.ndarray:
        """``(k,) int64`` sorted sample indices of ``split`` (``train``, ``val`` or ``all``)
        among the done shards: whole backgrounds held out, as ``train --val-fraction
        --split-seed`` holds them out (:func:`split_indices`)."""
        bg = self._shards.read_array("meta/bg_index")  # damage is an error, never zeros
        try:
            return split_indices(self.attrs, bg, split, val_fraction, seed)[0]
        except StoreError as e:
            raise StoreError(f"{self.path}: {e}") from None

    def channel_stats(self) -> dict[str, Any]:
        """Per-channel ``mean`` and ``std`` (0..255, RGB) of the images: the saved ones
        (``generate`` or ``info --stats``), else one pass over the store (not saved)."""
        from engine.store.stats import channel_stats, read_stats

        return read_stats(self.path) or channel_stats(self.path)

    # -- samples -----------------------------------------------------------------------------

    def __getitem__(self, key: int | slice | Any) -> dict[str, Any]:
        n = len(self)
        if isinstance(key, (int, np.integer)):
            i = int(key) + n if key < 0 else int(key)
            if not 0 <= i < n:
                raise IndexError(f"sample {key} of a store of {n}")
            one = self._read(np.array([i]))
            return {k: (v[0] if k != "meta" else {m: v[m][0].item() for m in v}) if k != "objects" else v[0]
                    for k, v in one.items()}
        rows = np.arange(n)[key] if isinstance(key, slice) else np.asarray(key, dtype=np.int64)
        if rows.ndim != 1 or (len(rows) and (rows.min() < -n or rows.max() >= n)):
            raise IndexError(f"samples {key} of a store of {n}")
        return self._read(np.where(rows < 0, rows + n, rows))

    def _read(self, rows: np.ndarray) -> dict[str, Any]:
        group, shards = self._group, self._shards
        done = set(self.attrs["progress"]["shards_done"])
        touched = sorted({int(r) // shards.shard_size for r in rows})
        missing = [k for k in touched if k not in done]
        if missing:
            raise StoreError(f"{self.path}: shard {missing[0]} is not written yet (finish it with generate --resume)")
        if len(rows) == 0:
            raise IndexError("no samples selected")
        lo, hi = int(rows.min()), int(rows.max()) + 1
        sel = rows - lo

        def read(name: str) -> np.ndarray:
            return shards.guard(name, touched, lambda: group[name][lo:hi])[sel]

        out: dict[str, Any] = {}
        if "images" in group:
            out["image"] = read("images")
        else:
            from PIL import Image

            def decode() -> np.ndarray:
                raw = group["images_jpeg"][lo:hi]
                return np.stack([np.asarray(Image.open(io.BytesIO(raw[i])).convert("RGB")) for i in sel])

            out["image"] = shards.guard("images_jpeg", touched, decode)
        out["mask"] = read("masks")
        out["depth"] = read("depth").astype(np.float32)
        for name, key in (("instances", "instances"), ("alpha", "alpha")):
            if name in group:
                out[key] = read(name)
        meta = group["meta"]
        out["meta"] = {m: meta[m][lo:hi][sel] for m in PLACEMENT}
        if "object_offset" in meta:
            offset = meta["object_offset"][lo : hi + 1]
            objects = meta["objects"]
            first, last = int(offset[0]), int(offset[-1])
            values = {m: objects[m][first:last] for m in objects.array_keys()}
            out["objects"] = [{m: v[int(offset[s]) - first : int(offset[s + 1]) - first] for m, v in values.items()}
                              for s in sel]
        return out


def open_store(path: str | Path) -> Store:
    """Open the fgbg store at ``path`` for reading.

    Example:
        >>> store = open_store("data/cars.zarr")  # doctest: +SKIP
        >>> sample = store[0]
        >>> sample["image"].shape, sample["image"].dtype   # (H, W, 3) uint8
        >>> store.split("val")                             # (k,) int64 held-out samples

    Raises:
        StoreError: no fgbg store there (one line, the path and why).
    """
    return Store(path)
