"""Configuration dataclasses, saved with every output.

``GenerateConfig`` is everything that determines a store's *contents*; it is
written to the store's attributes and compared on ``--resume``. Options that
change only how the work runs (device, threads, progress) live in
``RunOptions`` and are not part of a store's identity.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from engine.errors import ConfigError

IMAGE_CODECS = ("zstd", "none", "jpeg")
DEPTH_SOURCES = ("ground-plane", "bg-maps", "teacher-bg", "teacher-composite")
FG_DEPTH_RULES = ("auto", "contact", "min-footprint", "constant")
OCCLUSION = ("none", "background")
PLACEMENTS = ("auto", "perspective", "uniform")
TEACHER_OUTPUTS = ("depth", "inverse-depth")
ON_BAD_INPUT = ("error", "skip")
JPEG_ENCODERS = ("auto", "libjpeg", "fgbg", "nvjpeg", "nvimgcodec", "nvimgcodec-streams")
#: JPEG encoders that run on the GPU only (images never come back raw)
ON_DEVICE_JPEG = ("nvjpeg", "nvimgcodec", "nvimgcodec-streams")
#: JPEG encoders that code where the images are: on the GPU there, else on the CPU cores
ANY_DEVICE_JPEG = ("fgbg",)
#: Zstandard level of lossless arrays unless given: level 2 costs about half of level 3's CPU for
#: images, for a store 5-9% larger (measured: benchmarks/RESULTS.md, issue 24); was 3 before
#: 2026-12-06, and ``generate --resume`` keeps a store's own level
DEFAULT_COMPRESSION_LEVEL = 2
COMPRESSORS = ("auto", "cpu", "nvcomp", "hybrid")
#: blending modes of the image post-pass (kernels.blend.BLEND_MODES; not imported: it pulls in torch)
BLEND_MODES = ("alpha", "feather", "motion", "poisson")
#: fields left out of a one-object config's dict (stores written before them read the same)
MULTI_OBJECT_FIELDS = ("objects_min", "objects_max", "max_overlap")
#: fields left out of the config's dict while at their default (stores written before them read the same)
DEFAULT_OMITTED_FIELDS = {"truncation": 0.0}
#: most of an object that may lie beyond the image border (``--truncation``)
MAX_TRUNCATION = 0.9
#: most objects per image (instance ids are uint16; kept small so a sample's loop stays short)
MAX_OBJECTS = 64


@dataclass(frozen=True)
class GenerateConfig:
    """What to generate. Defaults reproduce the original 400k layout.

    Attributes:
        bg_dir: folder of background images; ``None`` with ``fg_dir`` ``None``
            uses the built-in procedural street scenes and cars.
        fg_dir: folder of foregrounds (RGBA PNGs, or RGB with ``fg_mask_dir``).
        fg_mask_dir: optional folder of masks named like the foregrounds.
        builtin_backgrounds: number of built-in scenes when no folders are given.
        builtin_foregrounds: number of built-in cars when no folders are given.
        height: output height, pixels.
        width: output width, pixels.
        positions: placements per (background, foreground, flip).
        flip: also emit every placement with the foreground mirrored.
        scale_min: smallest foreground height, as a fraction of ``height``.
        scale_max: largest foreground height, as a fraction of ``height``.
        placement: how a foreground's size and position are drawn:
            ``perspective`` (its pixel height follows from ``object_height``
            and the ground's depth where it stands, ``focal · H_m / Z``, with
            a ``height_jitter``; standing rows are those that give a height in
            the scale range), ``uniform`` (scale and position drawn
            independently, the original dataset's rule) or ``auto``
            (perspective where the backgrounds have a ground model, else uniform).
        object_height: real height of the foregrounds, metres (perspective).
        object_heights: ``((name, metres), ...)``: the height of the
            foregrounds of a category (their sub-folder of ``--fg``; ``car``
            for the built-in ones) or of one foreground (its path below
            ``--fg``, with or without extension) instead of ``object_height``;
            a file's entry wins over its category's, and these over a
            ``heights.csv`` in ``--fg`` (:mod:`engine.assets.heights`).
        height_jitter: relative spread of that height, ``h · (1 ± jitter)`` (perspective).
        objects_min: fewest objects (foregrounds) per image.
        objects_max: most objects per image; above 1, extra objects are drawn
            per sample and the store gains ``instances`` and per-object meta.
        max_overlap: most an extra object's box may overlap another's, as a
            fraction of the smaller box (re-drawn up to 8 times, else dropped).
        truncation: most of an object that may lie beyond the image border,
            as a fraction of its own width (left or right edge) and height
            (top edge; under ``uniform`` placement the bottom edge too:
            ``perspective`` keeps the standing row inside, as its ground
            depth sets the size). 0 keeps every object inside the image.
        limit: keep only the first ``limit`` samples of the plan.
        seed: seed of the plan and of the built-in assets.
        mask_threshold: mask is 255 where alpha > this (0..254); 127 means α > 0.5.
        save_alpha: also store the soft alpha (``alpha`` array).
        depth_source: how depth is obtained: ``ground-plane`` (geometry),
            ``bg-maps`` (the user's per-background maps), ``teacher-bg`` (a
            network once per background) or ``teacher-composite`` (a network
            on every composite).
        depth_maps_dir: folder of per-background depth maps (``bg-maps``).
        depth_png_scale: metres per unit of 16-bit PNG/TIFF depth maps.
        fg_depth: the foreground plane's depth: ``auto`` (ground-plane: the
            ground equation at the bottom row; maps: ``contact``), ``contact``
            (median background depth under the bottom row's opaque pixels),
            ``min-footprint`` (nearest background depth under the mask) or
            ``constant`` (``fg_depth_value``).
        fg_depth_value: metres, for ``fg_depth="constant"``.
        occlusion: ``background`` hides foreground pixels behind nearer
            background surfaces; ``none`` pastes on top.
        teacher: path of a TorchScript or ONNX depth network (teacher sources).
        teacher_output: whether it predicts ``depth`` or ``inverse-depth``.
        teacher_scale: metres per output unit (or numerator of the inverse).
        teacher_size: ``(height, width)`` the teacher wants, or ``None``.
        teacher_mean: per-channel mean of its ``[0, 1]`` RGB input.
        teacher_std: per-channel std of its input.
        align_to_ground: scale each teacher map so its median matches the
            ground-plane prior below the horizon.
        horizon: horizon row as a fraction of height for user backgrounds.
        camera_height: camera height above the ground in metres (user backgrounds).
        focal: focal length in pixels for user backgrounds (``None``: equal to width).
        max_depth: depth written for sky and for ground beyond it, metres.
        image_codec: ``zstd`` (default, lossless), ``none`` (raw) or ``jpeg``.
        jpeg_quality: JPEG quality 1..100 when ``image_codec`` is ``jpeg``.
        jpeg_encoder: ``libjpeg`` (Pillow on every CPU core), ``fgbg`` (our
            kernels, :mod:`kernels.jpeg`: on the GPU with ``--device cuda``, else
            on every CPU core; the same bytes on both), ``nvjpeg``
            (torchvision's nvJPEG on the GPU), ``nvimgcodec`` (nvImageCodec's
            encoder on the GPU, one per writer) or ``nvimgcodec-streams``
            (several nvImageCodec encoders on several CUDA streams per writer,
            a shard split over them): on the GPU only the encoded bytes come
            back over PCIe. ``auto`` (the default) is
            resolved before writing (:func:`engine.compose.hardware.resolve_jpeg_encoder`).
            Encoders write different, equally valid, JPEG bytes, hence part
            of the store's identity.
        compression_level: Zstandard level (1 fastest .. 22 smallest) of lossless arrays;
            2 by measurement (benchmarks/RESULTS.md, issue 24: ~10% faster ``generate``
            than 3 where the CPU writers limit, for a store 5-9% larger).
        shard_size: samples per shard (= per batch); the unit of resume.
        chunk_size: samples per chunk inside a shard (``None``: about 1 MB of images).
        max_pixels: refuse input images larger than this (decompression bombs).
        on_bad_input: ``error`` stops at the first bad file, ``skip`` skips and lists them.
        blend: how the object meets the background in the *image* (masks and
            depth are never blended): ``alpha`` (the exact straight-alpha
            composite), ``feather`` (alpha softened by a Gaussian),
            ``motion`` (directional blur of the pasted object) or
            ``poisson`` (gradient-domain blending); see :mod:`kernels.blend`.
            Several objects per image are blended far to near, each over the
            background and the farther objects.
        harmonize: match the object's Lab mean/std to a background ring around it.
        feather_sigma: Gaussian σ of ``feather``, px.
        motion_length: blur length of ``motion``, px (rounded up to odd; 1 = none).
        motion_angle: blur direction of ``motion``, degrees counter-clockwise from the x axis.
        poisson_iterations: most conjugate-gradient steps of ``poisson``.
        poisson_tolerance: relative residual at which ``poisson``'s solver stops.
        harmonize_ring: width of the ring ``harmonize`` reads, px.
    """

    bg_dir: str | None = None
    fg_dir: str | None = None
    fg_mask_dir: str | None = None
    builtin_backgrounds: int = 100
    builtin_foregrounds: int = 100
    height: int = 224
    width: int = 224
    positions: int = 20
    flip: bool = True
    scale_min: float = 0.25
    scale_max: float = 0.6
    placement: str = "auto"
    object_height: float = 1.5
    object_heights: tuple[tuple[str, float], ...] = ()
    height_jitter: float = 0.1
    objects_min: int = 1
    objects_max: int = 1
    max_overlap: float = 0.5
    truncation: float = 0.0
    limit: int | None = None
    seed: int = 0
    mask_threshold: int = 127
    save_alpha: bool = False
    depth_source: str = "ground-plane"
    depth_maps_dir: str | None = None
    depth_png_scale: float = 0.001
    fg_depth: str = "auto"
    fg_depth_value: float | None = None
    occlusion: str = "none"
    teacher: str | None = None
    teacher_output: str = "depth"
    teacher_scale: float = 1.0
    teacher_size: tuple[int, int] | None = None
    teacher_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    teacher_std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    align_to_ground: bool = False
    horizon: float | None = None
    camera_height: float = 1.6
    focal: float | None = None
    max_depth: float = 80.0
    image_codec: str = "zstd"
    jpeg_quality: int = 95
    jpeg_encoder: str = "auto"
    compression_level: int = DEFAULT_COMPRESSION_LEVEL
    shard_size: int = 2048
    chunk_size: int | None = None
    max_pixels: int = 64_000_000
    on_bad_input: str = "error"
    blend: str = "alpha"
    harmonize: bool = False
    feather_sigma: float = 2.0
    motion_length: int = 9
    motion_angle: float = 0.0
    poisson_iterations: int = 2000
    poisson_tolerance: float = 1e-5
    harmonize_ring: int = 8

    def __post_init__(self) -> None:
        check_generate_config(self)

    @property
    def builtin(self) -> bool:
        """True when the built-in procedural assets are used."""
        return self.bg_dir is None and self.fg_dir is None

    @property
    def samples_per_chunk(self) -> int:
        """Samples per chunk: the given ``chunk_size`` or about 1 MB of images."""
        if self.chunk_size is not None:
            return self.chunk_size
        # Smallest divisor of the shard holding >= 1 MB of images: zarr-python's
        # per-chunk overhead dominates below that, and shards must hold whole chunks.
        per_image = self.height * self.width * 3
        for n in range(1, self.shard_size + 1):
            if self.shard_size % n == 0 and n * per_image >= 1_000_000:
                return n
        return self.shard_size

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of every field; the several-objects fields only
        when they differ from one object per image, and the fields of
        :data:`DEFAULT_OMITTED_FIELDS` only away from their default (so stores
        keep the attributes they always had)."""
        d = dataclasses.asdict(self)
        if self.objects_max == 1:
            for key in MULTI_OBJECT_FIELDS:
                d.pop(key)
        for key, default in DEFAULT_OMITTED_FIELDS.items():
            if d[key] == default:
                d.pop(key)
        return d

    @property
    def multi_object(self) -> bool:
        """True when samples may hold several objects (``objects_max > 1``)."""
        return self.objects_max > 1

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerateConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown config keys: {', '.join(unknown)}")
        data = dict(data)
        data.setdefault("placement", "uniform")  # stores written before perspective placement
        for key in ("teacher_size", "teacher_mean", "teacher_std"):  # JSON turns tuples into lists
            if isinstance(data.get(key), list):
                data[key] = tuple(data[key])
        data["object_heights"] = tuple((str(k), float(v)) for k, v in data.get("object_heights", ()))
        return cls(**data)

    def identity(self) -> dict[str, Any]:
        """The fields that determine the store's contents (input folders excluded:
        inputs are identified by their file names and hashes instead)."""
        d = self.to_dict()
        for key in ("bg_dir", "fg_dir", "fg_mask_dir", "depth_maps_dir", "teacher"):
            d.pop(key)
        return d


def check_generate_config(c: GenerateConfig) -> None:
    """Raise :class:`ConfigError` for option values that cannot work."""
    def need(ok: bool, message: str) -> None:
        if not ok:
            raise ConfigError(message)

    need((c.bg_dir is None) == (c.fg_dir is None),
         "give both --bg and --fg, or neither to use the built-in assets")
    need(c.fg_mask_dir is None or c.fg_dir is not None, "--fg-masks needs --fg")
    need(c.builtin_backgrounds >= 1 and c.builtin_foregrounds >= 1,
         "built-in asset counts must be at least 1")
    need(16 <= c.height <= 4096 and 16 <= c.width <= 4096,
         f"output size must be between 16 and 4096 pixels, got {c.width}x{c.height}")
    need(c.positions >= 1, f"--positions must be at least 1, got {c.positions}")
    need(0 < c.scale_min <= c.scale_max <= 1,
         f"need 0 < --scale-min <= --scale-max <= 1, got {c.scale_min} and {c.scale_max}")
    need(c.placement in PLACEMENTS, f"--placement must be one of {', '.join(PLACEMENTS)}, got {c.placement!r}")
    need(0 < c.object_height <= 1000, f"--object-height must be in (0, 1000] metres, got {c.object_height}")
    need(0 <= c.height_jitter < 1, f"--height-jitter must be in [0, 1), got {c.height_jitter}")
    need(all(k and 0 < v <= 1000 for k, v in c.object_heights),
         f"--object-heights needs CATEGORY=METRES or FILE=METRES pairs with 0 < METRES <= 1000, got {c.object_heights}")
    twice = sorted({k for k, _ in c.object_heights if [n for n, _ in c.object_heights].count(k) > 1})
    need(not twice, f"--object-heights names {', '.join(twice)} twice")
    need(1 <= c.objects_min <= c.objects_max <= MAX_OBJECTS,
         f"--objects-per-image needs 1 <= MIN <= MAX <= {MAX_OBJECTS}, got {c.objects_min} {c.objects_max}")
    need(0 <= c.max_overlap <= 1, f"--max-overlap must be in [0, 1], got {c.max_overlap}")
    need(0 <= c.truncation <= MAX_TRUNCATION,
         f"--truncation must be in [0, {MAX_TRUNCATION}] (a fraction of the object), got {c.truncation}")
    need(c.limit is None or c.limit >= 1, f"--limit must be at least 1, got {c.limit}")
    need(0 <= c.seed < 2**63, f"--seed must be in [0, 2**63), got {c.seed}")
    need(0 <= c.mask_threshold <= 254, f"--mask-threshold must be in [0, 254], got {c.mask_threshold}")
    need(c.depth_source in DEPTH_SOURCES,
         f"--depth-source must be one of {', '.join(DEPTH_SOURCES)}, got {c.depth_source!r}")
    need(c.depth_source != "bg-maps" or c.depth_maps_dir is not None, "--depth-source bg-maps needs --depth-maps DIR")
    need(c.depth_maps_dir is None or c.depth_source == "bg-maps", "--depth-maps is for --depth-source bg-maps")
    need(not c.depth_source.startswith("teacher") or c.teacher is not None,
         f"--depth-source {c.depth_source} needs --teacher MODEL (a TorchScript or ONNX file)")
    need(c.teacher is None or c.depth_source.startswith("teacher"), "--teacher is for the teacher-* depth sources")
    need(c.depth_source != "bg-maps" or not c.builtin, "--depth-source bg-maps needs your own --bg/--fg folders")
    need(c.fg_depth in FG_DEPTH_RULES, f"--fg-depth must be one of {', '.join(FG_DEPTH_RULES)}, got {c.fg_depth!r}")
    need((c.fg_depth == "constant") == (c.fg_depth_value is not None),
         "--fg-depth constant goes with --fg-depth-value METRES (and only with it)")
    need(c.fg_depth_value is None or 0 < c.fg_depth_value <= c.max_depth,
         f"--fg-depth-value must be in (0, --max-depth], got {c.fg_depth_value}")
    need(c.occlusion in OCCLUSION, f"--occlusion must be one of {', '.join(OCCLUSION)}, got {c.occlusion!r}")
    need(c.teacher_output in TEACHER_OUTPUTS,
         f"--teacher-output must be one of {', '.join(TEACHER_OUTPUTS)}, got {c.teacher_output!r}")
    need(c.teacher_scale > 0, f"--teacher-scale must be positive, got {c.teacher_scale}")
    need(c.teacher_size is None or (len(c.teacher_size) == 2 and min(c.teacher_size) >= 8),
         f"--teacher-size must be two sizes of at least 8, got {c.teacher_size}")
    need(len(c.teacher_mean) == 3 and len(c.teacher_std) == 3 and min(c.teacher_std) > 0,
         "teacher mean/std need 3 values, std positive")
    need(0 < c.depth_png_scale, f"--depth-png-scale must be positive, got {c.depth_png_scale}")
    need(c.horizon is None or 0 <= c.horizon < 1,
         f"--horizon is a fraction of the height in [0, 1), got {c.horizon}")
    need(c.camera_height > 0, f"--camera-height must be positive, got {c.camera_height}")
    need(c.focal is None or c.focal > 0, f"--focal must be positive, got {c.focal}")
    need(0 < c.max_depth <= 60000, f"--max-depth must be in (0, 60000] (float16), got {c.max_depth}")
    need(c.image_codec in IMAGE_CODECS,
         f"--image-codec must be one of {', '.join(IMAGE_CODECS)}, got {c.image_codec!r}")
    need(1 <= c.jpeg_quality <= 100, f"--quality must be in [1, 100], got {c.jpeg_quality}")
    need(c.jpeg_encoder in JPEG_ENCODERS,
         f"--jpeg-encoder must be one of {', '.join(JPEG_ENCODERS)}, got {c.jpeg_encoder!r}")
    need(c.jpeg_encoder in ("auto", "libjpeg") or c.image_codec == "jpeg",
         f"--jpeg-encoder {c.jpeg_encoder} is for --image-codec jpeg")
    need(1 <= c.compression_level <= 22, f"compression level must be in [1, 22], got {c.compression_level}")
    need(c.shard_size >= 1, f"--shard-size must be at least 1, got {c.shard_size}")
    need(c.chunk_size is None or 1 <= c.chunk_size <= c.shard_size,
         f"--chunk-size must be between 1 and --shard-size ({c.shard_size}), got {c.chunk_size}")
    need(c.chunk_size is None or c.shard_size % c.chunk_size == 0,
         f"--shard-size ({c.shard_size}) must be a multiple of --chunk-size ({c.chunk_size})")
    need(c.max_pixels >= 1, "--max-pixels must be positive")
    need(c.on_bad_input in ON_BAD_INPUT,
         f"--on-bad-input must be one of {', '.join(ON_BAD_INPUT)}, got {c.on_bad_input!r}")
    need(c.blend in BLEND_MODES, f"--blend must be one of {', '.join(BLEND_MODES)}, got {c.blend!r}")
    need(0 <= c.feather_sigma <= 64, f"--feather-sigma must be in [0, 64] px, got {c.feather_sigma}")
    need(1 <= c.motion_length <= 255, f"--motion-length must be in [1, 255] px, got {c.motion_length}")
    need(-360 <= c.motion_angle <= 360, f"--motion-angle must be in [-360, 360] degrees, got {c.motion_angle}")
    need(1 <= c.poisson_iterations <= 100_000,
         f"--poisson-iterations must be in [1, 100000], got {c.poisson_iterations}")
    need(0 < c.poisson_tolerance < 1, f"--poisson-tolerance must be in (0, 1), got {c.poisson_tolerance}")
    need(1 <= c.harmonize_ring <= 256, f"--harmonize-ring must be in [1, 256] px, got {c.harmonize_ring}")


@dataclass(frozen=True)
class RunOptions:
    """How to run a generation; not part of the store's identity.

    Attributes:
        overwrite: replace an existing output.
        resume: continue an existing output made with the same config (or start one).
        device: ``auto`` (CUDA when a GPU is present), ``cpu`` or ``cuda``.
        writer_threads: threads compressing and writing shards (``None``:
            chosen from the hardware, :func:`engine.compose.hardware.choose_writer_threads`).
        compressor: where lossless chunks are compressed: ``cpu`` (every
            core), ``nvcomp`` (on the GPU), ``hybrid`` (each shard on one or
            the other, whichever keeps both busy) or ``auto`` (``hybrid`` where
            the GPU path runs with lossless images and nvCOMP works, else
            ``cpu``: :func:`engine.compose.hardware.resolve_compressor`).
            Decoded arrays are the same either way.
        force: start even when the estimated store size exceeds the free space.
        resume_check: how ``resume`` checks the shards already done before it
            trusts them: ``index`` (each file's index and its checksum) or
            ``full`` (every chunk decoded); damaged ones are written again.
        work_dir: where a store at a URL is built before each file is copied
            there (``None``: under ``~/.cache/fgbg/work``).
    """

    overwrite: bool = False
    resume: bool = False
    device: str = "cpu"
    writer_threads: int | None = None
    compressor: str = "auto"
    force: bool = False
    resume_check: str = "index"
    work_dir: str | None = None

    def __post_init__(self) -> None:
        if self.overwrite and self.resume:
            raise ConfigError("--overwrite and --resume exclude each other")
        if self.compressor not in COMPRESSORS:
            raise ConfigError(f"--compressor must be one of {', '.join(COMPRESSORS)}, got {self.compressor!r}")
        if self.writer_threads is not None and self.writer_threads < 1:
            raise ConfigError(f"writer threads must be at least 1, got {self.writer_threads}")
        if self.resume_check not in ("index", "full"):
            raise ConfigError(f"--resume-check must be index or full, got {self.resume_check!r}")
