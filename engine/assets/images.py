"""Input assets: backgrounds and foregrounds, validated and brought to size.

Every user-caused problem with a file raises :class:`~engine.errors.InputError`
naming the file, or, with ``on_bad_input="skip"``, is recorded in
``AssetSet.skipped`` and the file left out.

Backgrounds are centre-cropped to the output aspect and resized to
``(height, width)``. Foregrounds are cropped tight to their alpha (so the
bottom row is where the object touches the ground) and shrunk, never enlarged,
to fit a canonical box of ``height × 3·width``; the plan resizes them further
per sample.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from engine.assets.camera import GroundPlane
from engine.errors import InputError

log = logging.getLogger(__name__)

T = TypeVar("T")

#: canonical foreground box is ``height × FG_WIDTH_FACTOR·width``
FG_WIDTH_FACTOR = 3
#: the optional ``name,metres`` file at the top of ``--fg`` (read by :mod:`engine.assets.heights`)
HEIGHTS_FILE = "heights.csv"


@dataclass(frozen=True)
class InputFile:
    """One input, identified by name and content hash (recorded in the store)."""

    name: str
    sha256: str
    mask: str | None = None
    mask_sha256: str | None = None
    size: tuple[int, int] | None = None  #: original (width, height); not part of the record


@dataclass(frozen=True)
class BadInput:
    """A file left out under ``on_bad_input="skip"``."""

    path: str
    reason: str


@dataclass
class AssetSet:
    """Backgrounds and foregrounds ready for the plan and the compositor.

    Attributes:
        bg_images: ``(NB, H, W, 3) uint8`` backgrounds at output size.
        fg_images: ``NF`` arrays ``(h_i, w_i, 4) uint8``, RGBA straight alpha,
            tight-cropped, at canonical size.
        bg_files: what each background came from.
        fg_files: what each foreground came from.
        bg_grounds: per-background camera when the scene geometry is known
            (built-in scenes), else ``None``.
        bg_depth: ``(NB, H, W) float32`` metres when known: the built-in
            scenes' exact depth (``inf`` for sky) or the user's depth maps
            (0 = unknown); else ``None``.
        skipped: bad inputs left out.
        depth_files: the depth maps' input records (``bg-maps``).
        heights: ``(name, metres)`` entries of ``--fg``'s heights file
            (:mod:`engine.assets.heights`), empty without one.
        heights_file: that file's input record, or ``None``.
    """

    bg_images: np.ndarray
    fg_images: list[np.ndarray]
    bg_files: list[InputFile]
    fg_files: list[InputFile]
    bg_grounds: list[GroundPlane] | None = None
    bg_depth: np.ndarray | None = None
    skipped: list[BadInput] = field(default_factory=list)
    depth_files: list[InputFile] = field(default_factory=list)
    heights: tuple[tuple[str, float], ...] = ()
    heights_file: InputFile | None = None

    @property
    def fg_sizes(self) -> np.ndarray:
        """``(NF, 2) int64`` canonical ``(height, width)`` of each foreground."""
        return np.array([fg.shape[:2] for fg in self.fg_images], dtype=np.int64).reshape(-1, 2)


def list_images(folder: str | Path, role: str, recursive: bool = False) -> list[Path]:
    """Non-hidden regular files of ``folder`` (and, ``recursive``, of its non-hidden
    sub-folders), sorted by path relative to ``folder``.

    Raises:
        InputError: the folder is missing, not a folder, or holds no files.
    """
    path = Path(folder)
    if not path.exists():
        raise InputError(path, f"{role} folder does not exist")
    if not path.is_dir():
        raise InputError(path, f"{role} folder is not a folder")
    found = path.rglob("*") if recursive else path.iterdir()
    files = sorted((p for p in found if p.is_file() and not any(
        part.startswith(".") for part in p.relative_to(path).parts)), key=lambda p: p.relative_to(path).as_posix())
    if not files:
        raise InputError(path, f"{role} folder is empty")
    return files


def read_image(path: Path, max_pixels: int) -> tuple[Image.Image, str]:
    """Read, hash and fully decode one image file.

    Returns:
        The decoded image (EXIF orientation applied) and the file's SHA-256.

    Raises:
        InputError: unreadable, not an image, too many pixels, truncated or corrupt.
    """
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputError(path, f"cannot read file ({e.strerror or e})") from None
    digest = hashlib.sha256(data).hexdigest()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise InputError(path, "not an image (Pillow cannot identify it)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(path, "image has too many pixels (possible decompression bomb)") from None
    except OSError as e:
        raise InputError(path, f"cannot open image ({e})") from None
    width, height = image.size
    if width * height > max_pixels:
        raise InputError(
            path,
            f"image is {width}x{height} = {width * height} pixels, more than --max-pixels "
            f"{max_pixels} (possible decompression bomb)",
        )
    try:
        image.load()
        image = ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError) as e:
        raise InputError(path, f"truncated or corrupt image ({e})") from None
    return image, digest


#: Pillow modes of more than 8 bits per sample, and the range of values their type holds
HIGH_BIT_MODES = {"I;16": 65535, "I;16L": 65535, "I;16B": 65535, "I;16N": 65535, "I": None, "F": None}


def to_8bit(image: Image.Image) -> Image.Image:
    """An image of more than 8 bits per sample brought to 8 bits by its real range
    (Pillow's own ``convert`` clips at 255, which turns a mid-grey 16-bit image white).

    The real range is the range its values are meant to span, not the values it
    happens to hold, so brightness stays comparable between images and a dark
    image stays dark:

    - 16-bit integers (modes ``I;16``, ``I;16L``, ``I;16B``; 16-bit PNG and TIFF):
      ``0..65535`` → ``0..255`` (value × 255 / 65535, rounded), as viewers show them.
    - 32-bit integers (mode ``I``): ``0..65535`` likewise when every value lies
      there (a 16-bit file Pillow widened); else the image's own min..max.
    - 32-bit floats (mode ``F``): ``0..1`` → ``0..255`` when every finite value lies
      in ``[0, 1]`` (the float convention); else the image's own min..max.
      NaN and infinities become 0.

    16-bit RGB(A) PNGs reach us already as 8-bit ``RGB``/``RGBA`` (Pillow keeps
    each sample's high byte, the same scaling), so they, and every 8-bit mode,
    are returned as they are.

    Args:
        image: any Pillow image.

    Returns:
        The image itself, or an ``L`` (8-bit grayscale) image of the same size.
    """
    if image.mode not in HIGH_BIT_MODES:
        return image
    values = np.asarray(image).astype(np.float64)  # (h, w)
    finite = np.isfinite(values)
    values = np.where(finite, values, 0.0)
    lo, hi = (float(values[finite].min()), float(values[finite].max())) if finite.any() else (0.0, 0.0)
    top = HIGH_BIT_MODES[image.mode]
    if top is not None or (image.mode == "I" and lo >= 0 and hi <= 65535):
        low, span = 0.0, 65535.0
    elif image.mode == "F" and lo >= 0 and hi <= 1:
        low, span = 0.0, 1.0
    else:
        low, span = lo, max(hi - lo, 1e-12)
    scaled = np.clip(np.floor((values - low) * (255.0 / span) + 0.5), 0, 255).astype(np.uint8)
    return Image.fromarray(scaled, "L")


def fit_background(image: Image.Image, height: int, width: int) -> np.ndarray:
    """Centre-crop to the output aspect and resize: ``(height, width, 3) uint8``
    (high-bit-depth images first brought to 8 bits by :func:`to_8bit`)."""
    rgb = to_8bit(image).convert("RGB")
    fitted = ImageOps.fit(rgb, (width, height), method=Image.Resampling.LANCZOS)
    return np.asarray(fitted, dtype=np.uint8).copy()


def canonical_foreground(rgba: np.ndarray, height: int, width: int) -> np.ndarray:
    """Crop an RGBA array tight to alpha > 0 and shrink it into ``height × 3·width``.

    Args:
        rgba: ``(h, w, 4) uint8`` straight alpha, with some alpha > 0.
        height: output height (the canonical box's height).
        width: output width (the box is ``FG_WIDTH_FACTOR`` times as wide).

    Returns:
        ``(h', w', 4) uint8``, never larger than the input crop.
    """
    from kernels.resample import resize_rgba  # torch: only when assets are built

    rows = np.flatnonzero(rgba[..., 3].any(axis=1))
    cols = np.flatnonzero(rgba[..., 3].any(axis=0))
    crop = rgba[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    crop = np.where(crop[..., 3:] > 0, crop, 0).astype(np.uint8)  # RGB is meaningless at alpha 0
    h, w = crop.shape[:2]
    shrink = min(1.0, height / h, FG_WIDTH_FACTOR * width / w)
    if shrink >= 1.0:
        return np.ascontiguousarray(crop)
    new_h, new_w = max(1, round(h * shrink)), max(1, round(w * shrink))
    return resize_rgba(np.ascontiguousarray(crop), new_h, new_w)


def _load_all(
    items: Sequence[T], load: Callable[[T], object], on_bad_input: str
) -> tuple[list[object], list[BadInput]]:
    """Run ``load`` over ``items`` on a few threads (Pillow decodes without the
    GIL); keep input order; skip or raise on :class:`InputError`."""
    def attempt(item: T) -> object:
        try:
            return load(item)
        except InputError as e:
            if on_bad_input != "skip":
                raise
            return BadInput(str(e.path), e.reason)

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        results = list(pool.map(attempt, items))
    good = [r for r in results if not isinstance(r, BadInput)]
    bad = [r for r in results if isinstance(r, BadInput)]
    for b in bad:  # info, not warning: the caller lists them (the CLI once, at the end)
        log.info("skipping %s: %s", b.path, b.reason)
    return good, bad


def load_backgrounds(
    folder: str | Path, height: int, width: int, max_pixels: int, on_bad_input: str = "error"
) -> tuple[np.ndarray, list[InputFile], list[BadInput]]:
    """Load every image of ``folder`` as a background.

    Returns:
        ``(NB, height, width, 3) uint8`` images, their input records, skipped files.
    """
    files = list_images(folder, "background")

    def load(path: Path) -> tuple[np.ndarray, InputFile]:
        image, digest = read_image(path, max_pixels)
        return fit_background(image, height, width), InputFile(path.name, digest, size=image.size)

    good, bad = _load_all(files, load, on_bad_input)
    if not good:
        raise InputError(folder, f"no usable backgrounds: {describe_bad(bad)}")
    images = np.stack([g[0] for g in good])  # type: ignore[index]
    records = [g[1] for g in good]  # type: ignore[index]
    warning = upscale_warning(records, height, width)
    if warning:
        log.warning(warning)
    return images, records, bad


#: a background enlarged more than this many times is worth a warning (it will look blurred)
MAX_UPSCALE = 4.0


def upscale_warning(records: Sequence[InputFile], height: int, width: int, limit: float = MAX_UPSCALE) -> str | None:
    """A line naming the backgrounds :func:`fit_background` enlarges more than ``limit`` times
    (a 1x1 image to 224x224: 224 times), else ``None``."""
    enlarged = []
    for r in records:
        if r.size is None:
            continue
        w0, h0 = r.size
        factor = max(width / w0, height / h0)  # the crop to the output aspect keeps the smaller side whole
        if factor > limit:
            enlarged.append((factor, f"{r.name} ({w0}x{h0}, {factor:.0f}x)"))
    if not enlarged:
        return None
    enlarged.sort(reverse=True)
    shown = ", ".join(text for _, text in enlarged[:5])
    shown += f", and {len(enlarged) - 5} more" if len(enlarged) > 5 else ""
    return (f"{len(enlarged)} background(s) enlarged more than {limit:g}x to {width}x{height}, so they will look "
            f"blurred: {shown}; use larger images or a smaller --size")


def describe_bad(bad: Sequence[BadInput], most: int = 10) -> str:
    """``"every file is bad: a.png (not an image ...); b.png (...)"``, the first ``most`` of them."""
    if not bad:
        return "the folder holds none"
    shown = "; ".join(f"{Path(b.path).name} ({b.reason})" for b in bad[:most])
    more = f"; and {len(bad) - most} more" if len(bad) > most else ""
    return f"all {len(bad)} files are bad (--on-bad-input skip): {shown}{more}"


def category_of(name: str) -> str:
    """A foreground's category: the folder path it sits in below ``--fg``, from its recorded name.

    ``"builtin:car/00001"`` → ``"car"``; ``"sedans/a.png"`` → ``"sedans"``;
    ``"vehicles/sedans/a.png"`` → ``"vehicles/sedans"`` (the whole path below
    ``--fg``, not its last folder, so ``a/x`` and ``b/x`` stay apart);
    ``"a.png"`` (a file at the top of ``--fg``) → ``"object"``.
    """
    parts = name.split(":", 1)[-1].replace("\\", "/").split("/")
    folder = "/".join(p for p in parts[:-1] if p)
    return folder or "object"


def _relative_stem(path: Path, folder: Path) -> str:
    """``sedans/a`` for ``folder/sedans/a.png``: what pairs a foreground with its mask."""
    return path.relative_to(folder).with_suffix("").as_posix()


def _mask_files(mask_folder: Path) -> dict[str, Path]:
    """Map relative stem (``a``, ``sedans/a``) → mask path; two masks with one stem are ambiguous."""
    by_stem: dict[str, Path] = {}
    for path in list_images(mask_folder, "foreground mask", recursive=True):
        stem = _relative_stem(path, mask_folder)
        if stem in by_stem:
            raise InputError(path, f"two masks named {stem}.*: {by_stem[stem].name} and {path.name}")
        by_stem[stem] = path
    return by_stem


def load_foregrounds(
    folder: str | Path,
    mask_folder: str | Path | None,
    height: int,
    width: int,
    max_pixels: int,
    on_bad_input: str = "error",
) -> tuple[list[np.ndarray], list[InputFile], list[BadInput]]:
    """Load every image of ``folder`` and its sub-folders as a foreground.

    A foreground's alpha is its mask from ``mask_folder`` (same file stem, in
    the same sub-folder) when one exists there, else its own alpha channel;
    having neither is an error. Its recorded name is its path relative to
    ``folder`` (``a.png``, ``sedans/b.png``): its folder path below ``folder`` is its
    category (:func:`category_of`: ``fg/a/b/cat.png`` → ``a/b``).
    The heights file at its top (:data:`HEIGHTS_FILE`) is not a foreground.

    Returns:
        Canonical ``(h_i, w_i, 4) uint8`` RGBA arrays, input records, skipped files.
    """
    files = [p for p in list_images(folder, "foreground", recursive=True) if p != Path(folder) / HEIGHTS_FILE]
    masks = _mask_files(Path(mask_folder)) if mask_folder is not None else {}

    def load(path: Path) -> tuple[np.ndarray, InputFile]:
        image, digest = read_image(path, max_pixels)
        name = path.relative_to(folder).as_posix()  # a top-level file: its name, as before sub-folders
        record = InputFile(name, digest)
        mask_path = masks.get(_relative_stem(path, Path(folder)))
        if mask_path is not None:
            mask, mask_digest = read_image(mask_path, max_pixels)
            if mask.size != image.size:
                raise InputError(
                    mask_path,
                    f"mask is {mask.size[0]}x{mask.size[1]} but its image {path.name} is "
                    f"{image.size[0]}x{image.size[1]}",
                )
            rgba = np.asarray(to_8bit(image).convert("RGB"), dtype=np.uint8)
            alpha = np.asarray(to_8bit(mask).convert("L"), dtype=np.uint8)
            rgba = np.concatenate([rgba, alpha[..., None]], axis=2)
            record = InputFile(name, digest, mask_path.relative_to(mask_folder).as_posix(), mask_digest)
        elif "A" in image.getbands() or "transparency" in image.info:
            rgba = np.asarray(to_8bit(image).convert("RGBA"), dtype=np.uint8)
        else:
            hint = " and no mask in --fg-masks" if mask_folder is not None else " (give --fg-masks)"
            raise InputError(path, f"foreground has no alpha channel{hint}")
        if not rgba[..., 3].any():
            raise InputError(mask_path or path, "alpha is zero everywhere (nothing to paste)")
        return canonical_foreground(rgba, height, width), record

    good, bad = _load_all(files, load, on_bad_input)
    if not good:
        raise InputError(folder, f"no usable foregrounds: {describe_bad(bad)}")
    return [g[0] for g in good], [g[1] for g in good], bad  # type: ignore[index]


def builtin_assets(seed: int, n_backgrounds: int, n_foregrounds: int, height: int, width: int) -> AssetSet:
    """The embedded default: procedural street scenes with exact depth, and cars.

    Deterministic from ``seed``; input records carry a hash of the generated
    pixels so a resumed store notices a changed generator. Each scene and car
    comes from the on-disk cache (:mod:`engine.assets.cache`) when it holds it,
    byte for byte what drawing it gives, else is drawn and stored there.
    """
    from engine.assets.cache import PieceCache
    from engine.assets.cars import car_sprite
    from engine.assets.streets import street_scene

    cache = PieceCache.from_env()

    def scene(i: int) -> tuple[tuple[np.ndarray, ...], str]:
        def draw() -> tuple[np.ndarray, ...]:
            s = street_scene(seed, i, height, width)
            camera = np.array([s.ground.horizon, s.ground.focal, s.ground.camera_height], dtype=np.float64)
            return s.image, s.depth.astype(np.float32), camera

        return cache.get("street", (seed, i, height, width), ("image", "depth", "ground"), 2, draw)

    def car(i: int) -> tuple[tuple[np.ndarray, ...], str]:
        def draw() -> tuple[np.ndarray, ...]:
            return (canonical_foreground(car_sprite(seed, i, height), height, width),)

        return cache.get("car", (seed, i, height, width), ("rgba",), 1, draw)

    # Threads: the ray casting is NumPy, which releases the GIL (1.8x on 2 cores).
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        scenes = list(pool.map(scene, range(n_backgrounds)))
        cars = list(pool.map(car, range(n_foregrounds)))

    return AssetSet(
        bg_images=np.stack([arrays[0] for arrays, _ in scenes]),
        fg_images=[arrays[0] for arrays, _ in cars],
        bg_files=[InputFile(f"builtin:street/{i:05d}", digest) for i, (_, digest) in enumerate(scenes)],
        fg_files=[InputFile(f"builtin:car/{i:05d}", digest) for i, (_, digest) in enumerate(cars)],
        bg_grounds=[GroundPlane(*(float(v) for v in arrays[2])) for arrays, _ in scenes],
        bg_depth=np.stack([arrays[1] for arrays, _ in scenes]).astype(np.float32),
    )


DEPTH_SUFFIXES = (".png", ".tif", ".tiff", ".npy", ".npz", ".exr")


def read_depth_map(path: Path, png_scale: float, max_pixels: int) -> tuple[np.ndarray, str]:
    """Read one depth map: ``(h, w) float32`` metres (0 = unknown) and its SHA-256.

    16-bit PNG/TIFF hold ``png_scale`` metres per unit (millimetres by
    default), 32-bit float TIFF and ``.npy``/``.npz`` hold metres, EXR
    (with the OpenEXR package) its ``Z``/``Y``/``R`` channel in metres.

    Raises:
        InputError: unreadable, not a depth format, or no valid depth at all.
    """
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputError(path, f"cannot read file ({e.strerror or e})") from None
    digest = hashlib.sha256(data).hexdigest()
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            depth = np.load(io.BytesIO(data), allow_pickle=False)
        elif suffix == ".npz":
            with np.load(io.BytesIO(data), allow_pickle=False) as archive:
                keys = list(archive.keys())
                if "depth" not in keys and len(keys) != 1:
                    raise InputError(path, f"npz holds {keys}; name the depth array 'depth'")
                depth = archive["depth" if "depth" in keys else keys[0]]
        elif suffix == ".exr":
            depth = _read_exr(path)
        else:
            image, _ = read_image(path, max_pixels)
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):
                depth = np.asarray(image, dtype=np.float64) * png_scale
            elif image.mode == "F":
                depth = np.asarray(image, dtype=np.float64)
            else:
                raise InputError(path, f"{image.mode} image cannot hold depth: use a 16-bit PNG "
                                       "(millimetres), a float TIFF, .npy or .npz (metres)")
    except InputError:
        raise
    except (OSError, ValueError) as e:
        raise InputError(path, f"unreadable depth map ({e})") from None
    depth = np.asarray(depth)
    if depth.ndim == 3 and depth.shape[-1] == 1:
        depth = depth[..., 0]
    if depth.ndim != 2 or not np.issubdtype(depth.dtype, np.number):
        raise InputError(path, f"depth map must be a 2-D numeric array, got shape {depth.shape} {depth.dtype}")
    depth = depth.astype(np.float32)
    valid = np.isfinite(depth) & (depth > 0)
    if not valid.any():
        raise InputError(path, "depth map has no valid depth (all zero, negative or NaN)")
    return np.where(valid, depth, 0).astype(np.float32), digest


def _read_exr(path: Path) -> np.ndarray:
    try:
        import OpenEXR
    except ImportError:
        raise InputError(path, "reading EXR needs the OpenEXR package (pip install OpenEXR)") from None
    with OpenEXR.File(str(path)) as f:
        channels = f.channels()
        for name in ("Z", "Y", "depth", "R"):
            if name in channels:
                return np.asarray(channels[name].pixels)
        first = next(iter(channels.values()))
        return np.asarray(first.pixels)


def load_depth_maps(
    folder: str | Path, bg_files: Sequence[InputFile], height: int, width: int, max_pixels: int,
    png_scale: float = 0.001, on_bad_input: str = "error",
) -> tuple[np.ndarray, list[InputFile], list[int], list[BadInput]]:
    """Depth maps for the backgrounds, matched by file stem, cropped and resized like them.

    Resizing uses nearest neighbour: filtering across a depth edge would
    invent surfaces in between.

    Returns:
        ``(NB', height, width) float32`` metres (0 = unknown), the maps' input
        records, the indices of the backgrounds kept, and bad files skipped
        (under ``on_bad_input="skip"`` a background whose map is bad is left out).
    """
    files = list_images(folder, "depth map")
    by_stem: dict[str, Path] = {}
    for path in files:
        if path.suffix.lower() in DEPTH_SUFFIXES:
            if path.stem in by_stem:
                raise InputError(path, f"two depth maps named {path.stem}.*: {by_stem[path.stem].name} and {path.name}")
            by_stem[path.stem] = path

    def load(item: tuple[int, InputFile]) -> tuple[int, np.ndarray, InputFile]:
        index, bg = item
        stem = Path(bg.name).stem
        path = by_stem.get(stem)
        if path is None:
            raise InputError(Path(folder) / f"{stem}.*", f"no depth map for background {bg.name}")
        depth, digest = read_depth_map(path, png_scale, max_pixels)
        if bg.size is not None and (depth.shape[1], depth.shape[0]) != tuple(bg.size):
            raise InputError(path, f"depth map is {depth.shape[1]}x{depth.shape[0]} but its background "
                                   f"{bg.name} is {bg.size[0]}x{bg.size[1]}")
        fitted = ImageOps.fit(Image.fromarray(depth), (width, height), method=Image.Resampling.NEAREST)
        return index, np.asarray(fitted, dtype=np.float32).copy(), InputFile(path.name, digest)

    good, bad = _load_all(list(enumerate(bg_files)), load, on_bad_input)
    if not good:
        raise InputError(folder, f"no usable depth maps: {describe_bad(bad)}")
    maps = np.stack([g[1] for g in good])  # type: ignore[index]
    return maps, [g[2] for g in good], [g[0] for g in good], bad  # type: ignore[index]


def file_record(path: str | Path, what: str) -> InputFile:
    """Name and SHA-256 of one input file (a teacher model, say)."""
    path = Path(path)
    try:
        return InputFile(path.name, hashlib.sha256(path.read_bytes()).hexdigest())
    except OSError as e:
        raise InputError(path, f"cannot read {what} ({e.strerror or e})") from None
