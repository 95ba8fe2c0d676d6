"""fgbg command line: parse options, call the engine, show progress and errors.

Heavy packages (torch, numba, zarr) are imported inside the commands that need
them, so ``--help`` and ``info`` start fast. User errors print one line and exit
with code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperCommand

from engine.errors import ConfigError, FgbgError

app = typer.Typer(
    help="fgbg: paste foregrounds onto backgrounds at scale, with exact masks and depth, into Zarr.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # plain click help: at 80 columns rich's boxed table cut option names and defaults
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)


class Codec(str, Enum):
    zstd = "zstd"
    none = "none"
    jpeg = "jpeg"


class JpegEncoder(str, Enum):
    auto = "auto"
    libjpeg = "libjpeg"
    fgbg = "fgbg"
    nvjpeg = "nvjpeg"
    nvimgcodec = "nvimgcodec"
    nvimgcodec_streams = "nvimgcodec-streams"


class Loader(str, Enum):
    dali = "dali"
    torch = "torch"


class LrScaling(str, Enum):
    linear = "linear"
    sqrt = "sqrt"
    none = "none"


class Cache(str, Enum):
    none = "none"
    device = "device"


class Normalize(str, Enum):
    store = "store"
    imagenet = "imagenet"


class Source(str, Enum):
    store = "store"
    online = "online"


class ResumeCheck(str, Enum):
    index = "index"
    full = "full"


class Compressor(str, Enum):
    auto = "auto"
    cpu = "cpu"
    nvcomp = "nvcomp"
    hybrid = "hybrid"


class OnBad(str, Enum):
    error = "error"
    skip = "skip"


class DepthSourceName(str, Enum):
    ground_plane = "ground-plane"
    bg_maps = "bg-maps"
    teacher_bg = "teacher-bg"
    teacher_composite = "teacher-composite"


class FgDepth(str, Enum):
    auto = "auto"
    contact = "contact"
    min_footprint = "min-footprint"
    constant = "constant"


class Occlusion(str, Enum):
    none = "none"
    background = "background"


class Placement(str, Enum):
    auto = "auto"
    perspective = "perspective"
    uniform = "uniform"


class TeacherOutput(str, Enum):
    depth = "depth"
    inverse_depth = "inverse-depth"


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Stage(str, Enum):
    coarse = "coarse"
    fine = "fine"


class Optimizer(str, Enum):
    sgd = "sgd"
    adamw = "adamw"


class CoarseChannels(str, Enum):
    paper = "paper"
    torchvision = "torchvision"


class Blend(str, Enum):
    alpha = "alpha"
    feather = "feather"
    motion = "motion"
    poisson = "poisson"


class LossMask(str, Enum):
    all = "all"
    foreground = "foreground"
    background = "background"


class Precision(str, Enum):
    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


class Split(str, Enum):
    val = "val"
    train = "train"
    all = "all"


#: option panels of the long commands' --help (rich_help_panel; drawn by _PanelledCommand in plain text)
PANEL_INPUT = "Input"
PANEL_LAYOUT = "Layout and placement"
PANEL_DEPTH = "Depth"
PANEL_BLENDING = "Blending"
PANEL_STORE = "Store and codecs"
PANEL_PERFORMANCE = "Performance"
PANEL_RUNS = "Runs"
PANEL_DATA = "Data"
PANEL_MODEL = "Model"
PANEL_OPTIMISATION = "Optimisation"
PANEL_VALIDATION = "Validation and checkpoints"
PANEL_OUTPUT = "Output"
PANEL_SELECTION = "Selection"
#: the order panels are drawn in (a command shows those its options use)
PANEL_ORDER = (PANEL_INPUT, PANEL_DATA, PANEL_MODEL, PANEL_LAYOUT, PANEL_DEPTH, PANEL_BLENDING, PANEL_OPTIMISATION,
               PANEL_VALIDATION, PANEL_OUTPUT, PANEL_STORE, PANEL_SELECTION, PANEL_PERFORMANCE, PANEL_RUNS)


class _PanelledCommand(TyperCommand):
    """Plain click help (readable at 80 columns), its options grouped under their
    ``rich_help_panel`` headings in :data:`PANEL_ORDER` (rich draws panels only
    in its boxed tables, which this CLI turns off)."""

    def format_options(self, ctx: typer.Context, formatter) -> None:
        arguments, panels = [], {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if param.param_type_name == "argument":
                arguments.append(record)
            else:
                panels.setdefault(getattr(param, "rich_help_panel", None) or "Other options", []).append(record)
        order = sorted(panels, key=lambda t: PANEL_ORDER.index(t) if t in PANEL_ORDER else len(PANEL_ORDER))
        for title, records in ([("Arguments", arguments)] if arguments else []) + [(t, panels[t]) for t in order]:
            with formatter.section(title):
                formatter.write_dl(records)


def _apply_config_file(ctx: typer.Context, param: typer.CallbackParam, value: Path | None) -> Path | None:
    """``--config FILE.toml`` (eager, so before the other options are read): the
    file's ``option = value`` lines become the command's defaults, so options
    given on the command line win over it."""
    if value is None or ctx.resilient_parsing:
        return value
    try:
        defaults = _config_defaults(ctx, value)
    except FgbgError as e:
        raise _fail(str(e)) from None
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    return value


def _config_defaults(ctx: typer.Context, path: Path) -> dict:
    """A config file's values keyed by the command's parameter names, each checked
    like the option it names; unknown keys and wrong types raise ConfigError naming
    the file and the key."""
    import difflib

    from engine.config_file import option_key, read_config_file, toml_value

    options = {option_key(opt): p for p in ctx.command.params if p.param_type_name == "option"
               and p.name != "config" for opt in p.opts if opt.startswith("--")}
    defaults, keys = {}, {}
    for key, value in read_config_file(path).items():
        name = option_key(key)
        param = options.get(name)
        if name == "config":
            raise ConfigError(f"{path}: key {key!r}: a config file cannot name another one")
        if param is None:
            close = difflib.get_close_matches(name, options, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{path}: unknown key {key!r}: {ctx.info_name} has no option --{name}{hint}")
        if name in keys:
            raise ConfigError(f"{path}: keys {keys[name]!r} and {key!r} name the same option --{name}")
        keys[name] = key
        problem = _toml_type_problem(param.type_descriptor.annotation, value)
        if problem is not None:
            raise ConfigError(f"{path}: {key} = {toml_value(value)}: {problem}")
        defaults[param.name] = value
    return defaults


def _toml_type_problem(annotation: object, value: object) -> str | None:
    """Why a TOML value cannot stand for an option of this type (strict: no
    "12" for a number, no 4.5 for an integer), or None."""
    from typing import get_args, get_origin

    kinds = {bool: "a boolean", int: "an integer", float: "a float", str: "a string", list: "an array"}
    got = kinds.get(type(value), f"a {type(value).__name__}")  # TOML dates and times
    if get_origin(annotation) in (tuple, list):
        items = [a for a in get_args(annotation) if a is not Ellipsis]
        if not isinstance(value, list):
            return f"needs an array, got {got}"
        if get_origin(annotation) is tuple and len(items) == len(get_args(annotation)) and len(value) != len(items):
            return f"needs an array of {len(items)} values, got {len(value)}"
        for item in value:
            problem = _toml_type_problem(items[0], item)
            if problem is not None:
                return problem
        return None
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        choices = [member.value for member in annotation]
        if value in choices:
            return None
        return f"must be one of {', '.join(choices)}" if isinstance(value, str) else f"needs a string, got {got}"
    if annotation is bool:
        return None if isinstance(value, bool) else f"needs true or false, got {got}"
    if annotation is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else f"needs an integer, got {got}"
    if annotation is float:
        return None if isinstance(value, (int, float)) and not isinstance(value, bool) else f"needs a number, got {got}"
    return None if isinstance(value, str) else f"needs a string, got {got}"


def _version(value: bool) -> None:
    if value:
        from engine import __version__  # engine/__init__ imports nothing heavy

        typer.echo(f"fgbg {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print fgbg's version and exit.")] = False,
) -> None:
    """fgbg: paste foregrounds onto backgrounds at scale, with exact masks and depth, into Zarr."""


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s: %(message)s",
        stream=sys.stderr,
    )


@app.command(cls=_PanelledCommand)
def generate(
    out: Annotated[str, typer.Option("--out", "-o", help="Output Zarr store: a folder, or an fsspec URL (s3://, gs://, memory://, file://; built in --work-dir and copied there file by file).", rich_help_panel=PANEL_STORE)],
    bg: Annotated[Path | None, typer.Option(help="Folder of background images (any size/mode). Omit --bg and --fg to use the built-in street scenes and cars.", rich_help_panel=PANEL_INPUT)] = None,
    fg: Annotated[Path | None, typer.Option(help="Folder of foregrounds: RGBA PNGs, or RGB images with --fg-masks; a foreground's category is its folder path below --fg (fg/a/b/cat.png -> a/b; files at the top: object), used by the COCO export and --object-heights.", rich_help_panel=PANEL_INPUT)] = None,
    fg_masks: Annotated[Path | None, typer.Option(help="Folder of masks named like the foregrounds (same file stem).", rich_help_panel=PANEL_INPUT)] = None,
    size: Annotated[int, typer.Option(help="Output height and width in pixels (square); see --width.", rich_help_panel=PANEL_LAYOUT)] = 224,
    width: Annotated[int | None, typer.Option(help="Output width if not square.", rich_help_panel=PANEL_LAYOUT)] = None,
    positions: Annotated[int, typer.Option(help="Placements per (background, foreground, flip).", rich_help_panel=PANEL_LAYOUT)] = 20,
    flip: Annotated[bool, typer.Option("--flip/--no-flip", help="Also emit each placement with the foreground mirrored.", rich_help_panel=PANEL_LAYOUT)] = True,
    scale_min: Annotated[float, typer.Option(help="Smallest foreground height as a fraction of image height.", rich_help_panel=PANEL_LAYOUT)] = 0.25,
    scale_max: Annotated[float, typer.Option(help="Largest foreground height as a fraction of image height.", rich_help_panel=PANEL_LAYOUT)] = 0.6,
    placement: Annotated[Placement, typer.Option(help="perspective: pixel height = focal x --object-height / ground depth where the foreground stands (with --height-jitter), standing rows limited to those giving a height within --scale-min/--scale-max; uniform: scale and position drawn independently (the original dataset); auto: perspective where the backgrounds have a ground model (built-in scenes, or --horizon), else uniform.", rich_help_panel=PANEL_LAYOUT)] = Placement.auto,
    object_height: Annotated[float, typer.Option(help="Real height of the foregrounds in metres, for --placement perspective (1.5: a car).", rich_help_panel=PANEL_LAYOUT)] = 1.5,
    object_heights: Annotated[str | None, typer.Option(help="Heights per category or file instead, NAME=METRES,... (e.g. car=1.5,person=1.75,trucks/tanker.png=3.6); a category is a folder path below --fg, e.g. a/b (the built-in cars: car), a file its path below --fg (extension optional). A file's entry wins over its category's; these win over a heights.csv (NAME,METRES lines) at the top of --fg.", rich_help_panel=PANEL_LAYOUT)] = None,
    height_jitter: Annotated[float, typer.Option(help="Relative spread of --object-height per placement: height x (1 +/- jitter).", rich_help_panel=PANEL_LAYOUT)] = 0.1,
    objects_per_image: Annotated[tuple[int, int], typer.Option(help="MIN MAX objects per image, drawn per sample; object 0 is the grid's foreground, extra ones draw foreground, flip and placement by the same --placement rule. Composited far to near by depth. MAX > 1 adds the 'instances' map and per-object meta (boxes, visible pixels).", rich_help_panel=PANEL_LAYOUT)] = (1, 1),
    max_overlap: Annotated[float, typer.Option(help="With several objects: most an extra object's box may overlap another's, as a fraction of the smaller box (re-drawn up to 8 times, else left out).", rich_help_panel=PANEL_LAYOUT)] = 0.5,
    truncation: Annotated[float, typer.Option(help="Most of an object that may lie beyond the image border, as a fraction (0..0.9) of its width (left or right edge) and height (top edge; the bottom too with --placement uniform: perspective keeps the standing row inside, as its ground depth sets the size). 0 (default): objects stay inside.", rich_help_panel=PANEL_LAYOUT)] = 0.0,
    limit: Annotated[int | None, typer.Option(help="Keep only the first N samples of the plan.", rich_help_panel=PANEL_LAYOUT)] = None,
    seed: Annotated[int, typer.Option(help="Seed of the plan (and of the built-in assets).", rich_help_panel=PANEL_LAYOUT)] = 0,
    builtin_backgrounds: Annotated[int, typer.Option(help="Built-in street scenes to generate (no --bg).", rich_help_panel=PANEL_INPUT)] = 100,
    builtin_foregrounds: Annotated[int, typer.Option(help="Built-in cars to generate (no --fg).", rich_help_panel=PANEL_INPUT)] = 100,
    mask_threshold: Annotated[int, typer.Option(help="Mask = alpha > this (0..254); 127 means alpha > 0.5.", rich_help_panel=PANEL_INPUT)] = 127,
    save_alpha: Annotated[bool, typer.Option(help="Also store the soft alpha as 'alpha'.", rich_help_panel=PANEL_STORE)] = False,
    depth_source: Annotated[DepthSourceName, typer.Option(help="Where depth comes from: ground-plane (geometry: exact for the built-in scenes, a level camera over flat ground for yours), bg-maps (your depth map per background, --depth-maps), teacher-bg (a network once per background, --teacher), teacher-composite (a network on every composite).", rich_help_panel=PANEL_DEPTH)] = "ground-plane",
    depth_maps: Annotated[Path | None, typer.Option(help="Folder of depth maps named like the backgrounds: 16-bit PNG/TIFF (see --depth-png-scale), float TIFF, .npy/.npz (metres), or EXR (with OpenEXR).", rich_help_panel=PANEL_DEPTH)] = None,
    depth_png_scale: Annotated[float, typer.Option(help="Metres per unit of 16-bit PNG/TIFF depth maps (0.001: millimetres).", rich_help_panel=PANEL_DEPTH)] = 0.001,
    fg_depth: Annotated[FgDepth, typer.Option(help="Depth of the foreground's plane: auto (ground-plane: the ground at its bottom row; maps: contact), contact (median background depth under its bottom row's opaque pixels), min-footprint (nearest background depth under its mask), constant (--fg-depth-value).", rich_help_panel=PANEL_DEPTH)] = "auto",
    fg_depth_value: Annotated[float | None, typer.Option(help="Metres, with --fg-depth constant.", rich_help_panel=PANEL_DEPTH)] = None,
    occlusion: Annotated[Occlusion, typer.Option(help="background: hide foreground pixels behind nearer background surfaces (mask and depth follow); none: paste on top.", rich_help_panel=PANEL_DEPTH)] = "none",
    blend: Annotated[Blend, typer.Option(help="How the object meets the background in the image (masks and depth are never blended): alpha (exact straight-alpha paste, default), feather (alpha softened by a Gaussian, --feather-sigma), motion (directional blur of the object, --motion-length/--motion-angle), poisson (gradient-domain blending, --poisson-iterations/--poisson-tolerance).", rich_help_panel=PANEL_BLENDING)] = Blend.alpha,
    harmonize: Annotated[bool, typer.Option(help="Match the object's colour mean/std (Lab) to the background in a ring around it (--harmonize-ring), before blending.", rich_help_panel=PANEL_BLENDING)] = False,
    feather_sigma: Annotated[float, typer.Option(help="--blend feather: Gaussian sigma of the softened alpha, pixels (0..64).", rich_help_panel=PANEL_BLENDING)] = 2.0,
    motion_length: Annotated[int, typer.Option(help="--blend motion: blur length in pixels, rounded up to odd (1 = no blur).", rich_help_panel=PANEL_BLENDING)] = 9,
    motion_angle: Annotated[float, typer.Option(help="--blend motion: blur direction, degrees counter-clockwise from the x axis.", rich_help_panel=PANEL_BLENDING)] = 0.0,
    poisson_iterations: Annotated[int, typer.Option(help="--blend poisson: most conjugate-gradient steps per batch chunk.", rich_help_panel=PANEL_BLENDING)] = 2000,
    poisson_tolerance: Annotated[float, typer.Option(help="--blend poisson: the solver stops when every residual is below this fraction of its right-hand side.", rich_help_panel=PANEL_BLENDING)] = 1e-5,
    harmonize_ring: Annotated[int, typer.Option(help="--harmonize: width of the background ring around the object, pixels.", rich_help_panel=PANEL_BLENDING)] = 8,
    teacher: Annotated[Path | None, typer.Option(help="Depth network for teacher-*: a TorchScript file, or ONNX (with onnxruntime), mapping (N,3,H,W) to (N,1,h,w). Never downloaded.", rich_help_panel=PANEL_DEPTH)] = None,
    teacher_output: Annotated[TeacherOutput, typer.Option(help="What the teacher predicts: depth or inverse-depth.", rich_help_panel=PANEL_DEPTH)] = "depth",
    teacher_scale: Annotated[float, typer.Option(help="Metres per teacher output unit (depth = scale*y, or scale/y for inverse depth).", rich_help_panel=PANEL_DEPTH)] = 1.0,
    teacher_size: Annotated[str | None, typer.Option(help="Input size the teacher expects, HxW (e.g. 228x304); default: the output size.", rich_help_panel=PANEL_DEPTH)] = None,
    teacher_mean: Annotated[str, typer.Option(help="Per-channel mean of the teacher's [0,1] RGB input.", rich_help_panel=PANEL_DEPTH)] = "0.485,0.456,0.406",
    teacher_std: Annotated[str, typer.Option(help="Per-channel std of the teacher's input.", rich_help_panel=PANEL_DEPTH)] = "0.229,0.224,0.225",
    align_to_ground: Annotated[bool, typer.Option(help="Scale each teacher map so its median matches the ground-plane prior below the horizon.", rich_help_panel=PANEL_DEPTH)] = False,
    horizon: Annotated[float | None, typer.Option(help="User backgrounds: horizon row as a fraction of the height (default 0.5, a level camera).", rich_help_panel=PANEL_DEPTH)] = None,
    camera_height: Annotated[float, typer.Option(help="User backgrounds: camera height above the ground, metres.", rich_help_panel=PANEL_DEPTH)] = 1.6,
    focal: Annotated[float | None, typer.Option(help="User backgrounds: focal length in output pixels (default: the width).", rich_help_panel=PANEL_DEPTH)] = None,
    max_depth: Annotated[float, typer.Option(help="Depth written for sky and far ground, metres.", rich_help_panel=PANEL_DEPTH)] = 80.0,
    image_codec: Annotated[Codec, typer.Option(help="Image storage: zstd (lossless, default), none (raw), or jpeg (one JPEG file per sample, for GPU decoders such as DALI's).", rich_help_panel=PANEL_STORE)] = Codec.zstd,
    compression_level: Annotated[int | None, typer.Option(help="Zstandard level of lossless arrays: 1 fastest, 2 (the default) about half level 3's CPU for 5-10% more bytes, 3 smaller (a slow disk), up to 22 smallest. With --resume, the store's own level unless given.", show_default=False, rich_help_panel=PANEL_STORE)] = None,
    quality: Annotated[int, typer.Option(help="JPEG quality with --image-codec jpeg.", rich_help_panel=PANEL_STORE)] = 95,
    jpeg_encoder: Annotated[JpegEncoder, typer.Option(help="With --image-codec jpeg: auto (on the GPU fgbg where its kernels run, else nvjpeg, else nvimgcodec; on the CPU libjpeg), libjpeg (every CPU core), fgbg (our kernels: every block row of a shard coded at once, on the GPU with --device cuda, else on every CPU core; the same bytes on both), nvjpeg (torchvision), nvimgcodec (one encoder per writer) or nvimgcodec-streams (several encoders on several CUDA streams per writer); on the GPU only JPEG bytes cross PCIe. All keep full-resolution colour (4:4:4).", rich_help_panel=PANEL_STORE)] = JpegEncoder.auto,
    compressor: Annotated[Compressor, typer.Option(help="Where lossless chunks are compressed: cpu (zstd on every core), nvcomp (nvCOMP on the GPU), hybrid (each shard on the GPU or the CPU, whichever has room, so both work at once), or auto (hybrid with --device cuda, lossless images and a working nvCOMP, else cpu). Same decoded arrays either way; info says which wrote a store.", rich_help_panel=PANEL_PERFORMANCE)] = Compressor.auto,
    shard_size: Annotated[int, typer.Option(help="Samples per shard file (= per batch, the unit of resume).", rich_help_panel=PANEL_STORE)] = 2048,
    chunk_size: Annotated[int | None, typer.Option(help="Samples per chunk inside a shard (default: about 1 MB of images).", rich_help_panel=PANEL_STORE)] = None,
    max_pixels: Annotated[int, typer.Option(help="Refuse input images with more pixels than this (decompression bombs).", rich_help_panel=PANEL_INPUT)] = 64_000_000,
    on_bad_input: Annotated[OnBad, typer.Option(help="error: stop at the first bad file; skip: leave bad files out and list them.", rich_help_panel=PANEL_INPUT)] = OnBad.error,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing store at --out.", rich_help_panel=PANEL_RUNS)] = False,
    force: Annotated[bool, typer.Option("--force", help="Start even when the estimated size exceeds the free disk space, or the estimated memory the available memory.", rich_help_panel=PANEL_RUNS)] = False,
    resume: Annotated[bool, typer.Option(help="Complete an interrupted store at --out (same options), or start it.", rich_help_panel=PANEL_RUNS)] = False,
    device: Annotated[Device, typer.Option(help="Where to composite: auto (CUDA when a GPU is present, and says which it chose), cpu, or cuda (an error without a GPU). Both write the same bytes.", rich_help_panel=PANEL_PERFORMANCE)] = Device.auto,
    writer_threads: Annotated[int | None, typer.Option(help="Shards compressed and written at once (default: chosen from the cores, GPU and compressor; hybrid splits them between the CPU and the GPU in the proportion of its defaults).", rich_help_panel=PANEL_PERFORMANCE)] = None,
    work_dir: Annotated[Path | None, typer.Option(help="With a URL --out: the local folder the store is built in before each file is copied (default ~/.cache/fgbg/work/<name>; kept for --resume, deleted once the URL holds the complete store).", rich_help_panel=PANEL_RUNS)] = None,
    shard: Annotated[str | None, typer.Option(help="Write only part i/n of the store (0-based), for SLURM array jobs or several machines: store shard k belongs to part k mod n. Jobs create the store or join it; the last to finish completes it. Under torchrun, RANK/WORLD_SIZE split the part further.", rich_help_panel=PANEL_RUNS)] = None,
    resume_check: Annotated[ResumeCheck, typer.Option(help="With --resume: how the store is checked before what it holds is kept: index (each done shard's file and index; meta/ and assets/ files present) or full (every chunk's checksum and decoding, of every array, as verify does). Damaged shards and meta/assets arrays are written again; verify says which level its damage needs.", rich_help_panel=PANEL_RUNS)] = ResumeCheck.index,
    config: Annotated[Path | None, typer.Option("--config", metavar="FILE.toml", is_eager=True, expose_value=False, callback=_apply_config_file, help="Options from a TOML file of `option = value` lines named like these options (builtin-backgrounds = 20; dashes or underscores); options given on the command line win. info STORE --config FILE writes a store's options as such a file.", rich_help_panel=PANEL_RUNS)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.", rich_help_panel=PANEL_RUNS)] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what happens.", rich_help_panel=PANEL_RUNS)] = False,
) -> None:
    """Composite every foreground onto every background into a Zarr v3 store.

    Default layout: backgrounds × foregrounds × {plain, flipped} × 20 positions
    (100 × 100 inputs → 400,000 samples), each with image, mask and depth.
    """
    t_call = time.perf_counter()
    _setup_logging(verbose)
    from engine.distributed import discover, end_group, init_group, pin_local_gpu

    try:
        ranks = discover(shard)
    except FgbgError as e:
        raise _fail(str(e)) from None
    pin_local_gpu(ranks)  # before any CUDA library starts: LOCAL_RANK's GPU is this rank's device 0
    from engine.compose.compositor_cuda import resolve_device
    from engine import generate as run_generate
    from engine.config import DEFAULT_COMPRESSION_LEVEL, GenerateConfig, RunOptions
    from engine.store.attrs import recorded_setting

    if compression_level is None:  # a store made before the default changed resumes at its own level
        compression_level = (recorded_setting(out, "compression_level") if resume else None) or DEFAULT_COMPRESSION_LEVEL
    grouped = False
    try:
        grouped = init_group(ranks, "gloo")  # barriers and figures only: tiny CPU messages
        config = GenerateConfig(
            bg_dir=None if bg is None else str(bg), fg_dir=None if fg is None else str(fg),
            fg_mask_dir=None if fg_masks is None else str(fg_masks),
            builtin_backgrounds=builtin_backgrounds, builtin_foregrounds=builtin_foregrounds,
            height=size, width=size if width is None else width, positions=positions, flip=flip,
            scale_min=scale_min, scale_max=scale_max, placement=_value(placement), object_height=object_height,
            object_heights=_category_values(object_heights, "--object-heights"),
            height_jitter=height_jitter, objects_min=objects_per_image[0], objects_max=objects_per_image[1],
            max_overlap=max_overlap, truncation=truncation, limit=limit, seed=seed,
            mask_threshold=mask_threshold, save_alpha=save_alpha, depth_source=_value(depth_source),
            depth_maps_dir=None if depth_maps is None else str(depth_maps), depth_png_scale=depth_png_scale,
            fg_depth=_value(fg_depth), fg_depth_value=fg_depth_value, occlusion=_value(occlusion),
            teacher=None if teacher is None else str(teacher), teacher_output=_value(teacher_output),
            teacher_scale=teacher_scale, teacher_size=_size_pair(teacher_size, "--teacher-size"),
            teacher_mean=_triple(teacher_mean, "--teacher-mean"), teacher_std=_triple(teacher_std, "--teacher-std"),
            align_to_ground=align_to_ground,
            horizon=horizon, camera_height=camera_height, focal=focal, max_depth=max_depth,
            image_codec=image_codec.value, jpeg_quality=quality, jpeg_encoder=jpeg_encoder.value,
            compression_level=compression_level, shard_size=shard_size,
            chunk_size=chunk_size, max_pixels=max_pixels, on_bad_input=on_bad_input.value,
            blend=blend.value, harmonize=harmonize, feather_sigma=feather_sigma, motion_length=motion_length,
            motion_angle=motion_angle, poisson_iterations=poisson_iterations, poisson_tolerance=poisson_tolerance,
            harmonize_ring=harmonize_ring,
        )
        chosen = resolve_device(device.value)
        run = RunOptions(overwrite=overwrite, resume=resume, device=chosen, writer_threads=writer_threads,
                         compressor=compressor.value, force=force, resume_check=resume_check.value,
                         work_dir=None if work_dir is None else str(work_dir))
        header = f"device: {_describe_device(chosen, device.value)}"
        if ranks.shared:
            header += f"; rank {ranks.rank} of {ranks.world}"
        with _Progress(disabled=quiet or not ranks.leader, header=header) as bar:
            report = run_generate(config, out, run, progress=bar.update, notice=lambda line: typer.echo(line, err=True),
                                  ranks=ranks)
    except FgbgError as e:
        raise _fail(str(e)) from None
    except KeyboardInterrupt:
        raise _fail(_interrupted(out), 130) from None
    finally:
        if grouped:
            end_group()
    if not ranks.leader:  # the group's rank 0 speaks for it
        return
    for line in report.skipped:
        typer.secho(f"skipped {line}", err=True, fg=typer.colors.YELLOW)
    typer.echo(_generate_summary(report, time.perf_counter() - t_call))
    if ranks.shared:
        for line in _rank_lines(report, ranks.group_rank):
            typer.echo(line)
    if verbose and report.samples_written:
        from engine.compose.generate import bottleneck

        for stage, seconds in sorted(report.stage_seconds.items()):
            typer.echo(f"  {seconds:8.2f} s  {stage}", err=True)
        typer.echo(f"  {bottleneck(report)}", err=True)
        if report.writer_cost is not None:
            typer.echo("\n".join(report.writer_cost.lines()), err=True)
        if len(report.compressed_shards) > 1:  # --compressor hybrid: each side's share
            shares = ", ".join(f"{name} {k}" for name, k in sorted(report.compressed_shards.items()))
            typer.echo(f"  shards compressed by {shares}", err=True)


def _interrupted(out: str) -> str:
    """What a Ctrl-C during ``generate`` left at ``out``, and what to do next."""
    from engine.store.zarr_store import read_attrs

    if "://" in out and not out.startswith("file://"):
        return f"interrupted: finished shards are kept; complete {out} with --resume (same --work-dir)"
    try:
        attrs = read_attrs(Path(out.removeprefix("file://")), allow_unfinished=True)
    except FgbgError:
        attrs = None
    if attrs is None:  # no store, or its creation never finished
        return f"interrupted before any shard was written; nothing to keep at {out}"
    done = len(attrs["progress"]["shards_done"])
    if done == 0:
        return f"interrupted before the first shard finished; run again with --resume to fill {out}"
    return f"interrupted: {done} finished shards are kept; complete {out} with --resume"


def _generate_summary(report, whole_seconds: float) -> str:
    """The final line of generate: both rates, labelled (the bar shows the writing one)."""
    verb = "completed" if report.resumed else "wrote"
    return (f"{verb} {report.samples_written:,} samples ({report.n_samples:,} in store) to {report.path} "
            f"in {report.write_seconds:.1f} s ({report.writing_images_per_second:,.0f} images/s writing; "
            f"{whole_seconds:.1f} s whole call incl. start-up, {report.samples_written / whole_seconds:,.0f} images/s)")


def _rank_lines(report, group_rank: int) -> list[str]:
    """Per-rank and aggregate writing rates of a run shared by several ranks, and
    whether the store is complete."""
    first = report.rank - group_rank  # global rank of this torchrun group's rank 0
    lines = [f"  rank {first + r}: {n:,} samples in {s:.1f} s ({n / s if s > 0 else 0:,.0f} images/s)"
             for r, (n, s) in enumerate(report.rank_figures)]
    if len(report.rank_figures) > 1:
        n = sum(f[0] for f in report.rank_figures)
        s = max(f[1] for f in report.rank_figures)
        lines.append(f"  {len(report.rank_figures)} ranks together: {n:,} samples in {s:.1f} s "
                     f"({n / s if s > 0 else 0:,.0f} images/s; the slowest rank sets the time)")
    lines.append(f"  store {'complete' if report.complete else 'not complete yet: other ranks or --shard parts are missing (info shows which shards are done; --resume completes it)'}")
    return lines


@app.command()
def info(
    store: Annotated[str, typer.Argument(help="A store written by generate: a folder or an fsspec URL.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
    stats: Annotated[bool, typer.Option("--stats", help="Per-channel mean and std of the images (0-255): the saved ones, or one streaming pass over the store, then saved in its attributes (the DALI loader and the device cache take them as mean and std).")] = False,
    config: Annotated[Path | None, typer.Option("--config", metavar="FILE.toml", help="Write the store's recorded generate options to FILE.toml (- prints them) instead of describing it: `generate --config FILE.toml --out NEW` re-creates the store. Options a store does not record are listed in the file.")] = None,
) -> None:
    """What is inside a store: samples, arrays, codecs, size, completeness, settings."""
    from engine.store.zarr_store import inspect_store

    try:
        if stats:
            from engine.errors import StoreError
            from engine.store.location import locate
            from engine.store.stats import store_stats

            where = locate(store)
            if where.local is None:
                raise StoreError(f"{store}: info --stats computes statistics of a local store (generate saves them at a URL)")
            store_stats(where.local, save=True)
        s = inspect_store(store)
        if config is not None:
            _write_run_config(s.attrs, store, config)
            return
    except FgbgError as e:
        raise _fail(str(e)) from None
    a, lay = s.attrs, s.attrs["layout"]
    if as_json:
        typer.echo(json.dumps({
            "path": str(s.path), "complete": s.complete, "samples": lay["n_samples"],
            "samples_done": s.samples_done, "shards_done": s.shards_done, "shards": lay["n_shards"],
            "bytes_on_disk": s.bytes_on_disk, "files": s.n_files,
            "damaged_shards": [{"array": p.array, "shard": p.shard, "reason": p.reason} for p in s.damaged],
            "chunk_checksums": not _unchecksummed(s.arrays),
            "arrays": {k: {**v, "shape": list(v["shape"])} for k, v in s.arrays.items()},
            "attributes": a,
        }, indent=2))
        return
    state = "complete" if s.complete else f"INCOMPLETE ({s.shards_done}/{lay['n_shards']} shards, finish with generate --resume)"
    per_sample = {p.shard for p in s.damaged if p.items == "samples" and p.unit == "shard" and "/" not in p.array}
    whole = sorted({p.array for p in s.damaged if "/" in p.array})
    if per_sample:
        state += f", but {len(per_sample)} shards missing/damaged: run `cli.py verify {s.path}`"
    if whole:
        state += f"{' and' if per_sample else ', but'} {', '.join(whole)} damaged: run `cli.py verify {s.path}`"
    cfg = a["config"]
    inputs = a["inputs"]
    source = "built-in procedural streets and cars" if cfg["bg_dir"] is None else f"{cfg['bg_dir']} + {cfg['fg_dir']}"
    typer.echo(f"{s.path}  fgbg format {a['format_version']}, written by fgbg {a['tool_version']}")
    typer.echo(f"  state     {state}")
    typer.echo(f"  samples   {s.samples_done:,} of {lay['n_samples']:,}  ({lay['height']}x{lay['width']}, "
               f"{lay['shard_size']} per shard, {lay['chunk_size']} per chunk)")
    typer.echo(f"  inputs    {len(inputs['backgrounds'])} backgrounds x {len(inputs['foregrounds'])} foregrounds "
               f"({source}); seed {a['seed']}")
    if "heights" in inputs:  # --fg's heights.csv: the metres each foreground got are in info --json
        typer.echo(f"  heights   from {inputs['heights']['name']} (per foreground: info --json, inputs.heights.metres)")
    depth = a["depth"]
    how = depth["source"] if depth.get("geometry") in (None, depth["source"]) else f"{depth['source']}: {depth['geometry']}"
    if depth.get("teacher"):
        how += f" (teacher {depth['teacher']})"
    typer.echo(f"  depth     {how}, capped at {depth['max_depth']:g} m")
    if a["skipped"]:
        typer.echo(f"  skipped   {len(a['skipped'])} bad input files (see info --json)")
    typer.echo("  arrays")
    wide = max([16, *map(len, s.arrays)])  # meta/objects/visible_pixels of several-objects stores
    for name, v in s.arrays.items():
        shape = "x".join(map(str, v["shape"]))
        chunks = "x".join(map(str, v["chunks"]))
        shards = "" if v["shards"] is None else " shards " + "x".join(map(str, v["shards"]))
        typer.echo(f"    {name:<{wide}} {shape:<18} {v['dtype']:<22} chunks {chunks}{shards}  "
                   f"{'+'.join(v['codecs']) or 'raw'}  {_size(v['bytes'])}")
    if cfg["image_codec"] == "jpeg":
        encoder = cfg.get("jpeg_encoder", "libjpeg")
        typer.echo(f"  jpeg      quality {cfg['jpeg_quality']}, encoded by {encoder}")
    writers = a.get("writers", [])
    if writers:
        typer.echo(f"  written   compressed by {', '.join(sorted({w['compressor'] for w in writers}))}"
                   " (zstd frames any zstd decoder reads)")
    if a.get("stats"):
        st = a["stats"]
        typer.echo(f"  stats     mean {', '.join(f'{v:.1f}' for v in st['mean'])}, std "
                   f"{', '.join(f'{v:.1f}' for v in st['std'])} (RGB, 0-255, {st['samples']:,} samples)")
    typer.echo(f"  on disk   {_size(s.bytes_on_disk)} in {s.n_files} files")
    old = _unchecksummed(s.arrays)
    if old:
        typer.echo(f"  checksums none: {len(old)} of {len(s.arrays)} arrays carry no chunk checksums (written before "
                   "fgbg added them): verify cannot see a flipped bit that still decodes; regenerate to add them")
    else:
        typer.echo("  checksums every chunk carries a CRC32C (checked by every reader and by verify)")


def _unchecksummed(arrays: dict[str, dict[str, Any]]) -> list[str]:
    """Arrays whose chunks carry no ``crc32c`` (stores written before chunk checksums)."""
    return [name for name, v in arrays.items() if "crc32c" not in v["codecs"]]


def _write_run_config(attrs: dict, store: str, path: Path) -> None:
    """``info --config``: the store's recorded config as generate's TOML config file,
    under generate's panel headings; ``-`` prints it."""
    from engine.config import GenerateConfig
    from engine.config_file import generate_options, option_key, toml_value

    options = generate_options(GenerateConfig.from_dict(attrs["config"]))
    command = typer.main.get_command(app).commands["generate"]
    panels: dict[str, list[str]] = {}
    not_recorded = []
    for param in command.params:
        key = next(option_key(o) for o in param.opts if o.startswith("--"))
        if key not in options:
            if key != "config":
                not_recorded.append(f"--{key}")
            continue
        value = options.pop(key)
        line = f"# {key}: not set (its default)" if value is None else f"{key} = {toml_value(value)}"
        panels.setdefault(param.rich_help_panel, []).append(line)
    if options:  # a recorded field that generate_options maps to no option: a bug
        raise RuntimeError(f"recorded config fields with no generate option: {', '.join(options)}")
    name = "FILE.toml" if str(path) == "-" else path.name
    lines = [f"# generate options of {store} (fgbg {attrs.get('tool_version', '?')}), written by `info --config`.",
             f"# Re-create the store: python cli.py generate --config {name} --out NEW.zarr",
             "# Options given on the command line win over this file; keys take dashes or underscores.",
             "# Paths are as generate was given them (relative ones: to the folder it ran in).",
             "# Not recorded in a store (how a run ran, not what it wrote; give them on the command line):",
             f"#   {' '.join(not_recorded)}"]
    for title in PANEL_ORDER:
        if title in panels:
            lines += ["", f"# {title}", *panels[title]]
    text = "\n".join(lines) + "\n"
    if str(path) == "-":
        typer.echo(text, nl=False)
        return
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as e:
        raise _fail(f"{path}: cannot write ({e.strerror or e})") from None
    typer.echo(f"wrote {path}: re-create the store with generate --config {path} --out NEW.zarr")


@app.command()
def verify(
    store: Annotated[Path, typer.Argument(help="A store written by generate.")],
    decode_jpeg: Annotated[bool, typer.Option("--decode-jpeg/--no-decode-jpeg", help="Also decode every JPEG (JPEG stores).")] = True,
    threads: Annotated[int | None, typer.Option(help="Files checked at once (default: one per core).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Read every shard the store records as done: file present, index checksum, every chunk decodes.

    Every array is checked: the done shards of the per-sample arrays (images,
    masks, depth, alpha, instances) and every file of meta/ and assets/ (the
    per-object results where done shards wrote them). A missing file or chunk,
    a chunk failing its CRC32C, or one that does not decode is damage.
    Lists each damaged file (array, shard, samples, reason) and the command
    that repairs it. Exit code 0: clean, or no finished shard yet (said so);
    1: damage found; 2: not a store. Stores written before chunk checksums:
    a flipped bit that still decodes is not seen (said so).
    """
    import time

    from engine.store.verify import StoreShards, repair_advice

    t0 = time.perf_counter()
    try:
        shards = StoreShards(store)
        with _CountProgress(disabled=quiet, label="verify", unit="files") as bar:
            problems = shards.check("full", threads=threads, decode_jpeg=decode_jpeg, progress=bar.update)
    except FgbgError as e:
        raise _fail(str(e)) from None
    whole = len(shards.whole_names)
    files = shards.files_to_check()
    took = (f"{files} files ({len(shards.done)} done shards x {len(shards.names)} arrays, and "
            f"{files - len(shards.done) * len(shards.names)} of {whole} meta/assets arrays) in {time.perf_counter() - t0:.1f} s")
    if shards.unchecksummed:
        typer.echo(f"{store}: written before chunk checksums ({len(shards.unchecksummed)} arrays without): "
                   "a flipped bit that still decodes cannot be seen")
    if not problems:
        if not shards.done:
            n_shards = shards.attrs["layout"]["n_shards"]
            typer.echo(f"{store}: empty: 0 of {n_shards} shards finished, no samples to check "
                       f"(checked {took}); write them with generate --resume (same options)")
            return
        typer.echo(f"{store}: clean: checked {took}")
        return
    for p in problems:
        typer.echo(f"  {p}")
    n = len({(p.array, p.shard) for p in problems})
    typer.echo(f"{store}: DAMAGED: {n} of {took} are bad; repair with {repair_advice(shards, problems)}")
    raise typer.Exit(1)


@app.command()
def preview(
    store: Annotated[Path, typer.Argument(help="A store written by generate.")],
    n: Annotated[int, typer.Option("--n", help="Samples to show, covering every background and foreground (capped to keep the sheet under 16 Mpx).")] = 16,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output PNG.")] = Path("preview.png"),
    tile: Annotated[int | None, typer.Option(help="Tile height in pixels (default: the store's).")] = None,
) -> None:
    """Write a contact sheet PNG: image | mask | depth (colour map) per sample (| instances with several objects)."""
    from engine.store.preview import check_sheet_path, contact_sheet

    try:
        check_sheet_path(out)
        sheet = contact_sheet(store, n=n, tile=tile)
        sheet.save(out)
    except FgbgError as e:
        raise _fail(str(e)) from None
    except OSError as e:
        raise _fail(f"{out}: cannot write ({e.strerror or e})") from None
    shown = sheet.info.get("samples", n)
    capped = f"; {shown} samples, the most that fit a sheet" if shown < n else ""
    typer.echo(f"wrote {out} ({sheet.width}x{sheet.height}{capped})")


@app.command(cls=_PanelledCommand, short_help="Train the coarse/fine depth network (Eigen et al. 2014) on a store.")
def train(
    data: Annotated[Path, typer.Option(help="Zarr store written by generate (needs images and depth).", rich_help_panel=PANEL_DATA)],
    out: Annotated[Path, typer.Option(help="Run folder: <out>/<stage>.pt, <stage>_log.csv, <stage>_metrics.json.", rich_help_panel=PANEL_RUNS)],
    stage: Annotated[Stage, typer.Option(help="coarse (first), then fine (with --init <out>/coarse.pt; coarse stays fixed).", rich_help_panel=PANEL_MODEL)] = Stage.coarse,
    steps: Annotated[int, typer.Option(help="Optimiser steps of this stage.", rich_help_panel=PANEL_OPTIMISATION)] = 2000,
    init: Annotated[Path | None, typer.Option(help="Coarse checkpoint the fine stage starts from.", rich_help_panel=PANEL_MODEL)] = None,
    batch: Annotated[int, typer.Option(help="Samples per step (the paper's 32); under torchrun the global batch, split across ranks.", rich_help_panel=PANEL_OPTIMISATION)] = 32,
    optimizer: Annotated[Optimizer, typer.Option(help="sgd: momentum 0.9 with the paper's per-layer rates (coarse convs 0.001, fulls 0.1; fine 0.001, fine 2 0.01); adamw: one rate, --adamw-lr.", rich_help_panel=PANEL_OPTIMISATION)] = Optimizer.sgd,
    lr_scale: Annotated[float, typer.Option(help="Multiply the paper's per-layer rates (sgd).", rich_help_panel=PANEL_OPTIMISATION)] = 1.0,
    lr_scaling: Annotated[LrScaling, typer.Option(help="Learning rates for batches other than the paper's 32, on top of --lr-scale (sgd) or --adamw-lr: linear (x batch/32), sqrt (x sqrt(batch/32)) or none. --steps stays in optimiser steps: for the paper's samples at batch B, train samples/B steps (e.g. coarse 2M samples at batch 256: --steps 7813). The rates used are saved in the checkpoint.", rich_help_panel=PANEL_OPTIMISATION)] = LrScaling.none,
    adamw_lr: Annotated[float, typer.Option(help="Learning rate with --optimizer adamw.", rich_help_panel=PANEL_OPTIMISATION)] = 3e-4,
    weight_decay: Annotated[float, typer.Option(help="L2 weight decay.", rich_help_panel=PANEL_OPTIMISATION)] = 0.0,
    input_size: Annotated[str, typer.Option(help="Network input, HxW or one number (square); output is 1/4. 228x304 is the paper's NYU size.", rich_help_panel=PANEL_MODEL)] = "112",
    coarse_channels: Annotated[CoarseChannels, typer.Option(help="Coarse conv widths: paper (96,256,384,384,256) or torchvision (AlexNet's, for --init-from).", rich_help_panel=PANEL_MODEL)] = CoarseChannels.paper,
    init_from: Annotated[Path | None, typer.Option(help="AlexNet-style weights for coarse conv1-5 (e.g. torchvision's alexnet .pth); never downloaded.", rich_help_panel=PANEL_MODEL)] = None,
    val_fraction: Annotated[float, typer.Option(help="Fraction of backgrounds held out for validation.", rich_help_panel=PANEL_DATA)] = 0.1,
    split_seed: Annotated[int, typer.Option(help="Seed choosing the held-out backgrounds.", rich_help_panel=PANEL_DATA)] = 0,
    seed: Annotated[int, typer.Option(help="Seed of initialisation, batches, augmentation, dropout.", rich_help_panel=PANEL_OPTIMISATION)] = 0,
    loss_mask: Annotated[LossMask, typer.Option(help="Pixels in the loss: all (valid depth), foreground or background.", rich_help_panel=PANEL_OPTIMISATION)] = LossMask.all,
    eval_every: Annotated[int, typer.Option(help="Validate every N steps (on --eval-samples held-out samples).", rich_help_panel=PANEL_VALIDATION)] = 250,
    eval_samples: Annotated[int, typer.Option(help="Held-out samples in the periodic validation (the final one uses all).", rich_help_panel=PANEL_VALIDATION)] = 2000,
    checkpoint_every: Annotated[int, typer.Option(help="Write the checkpoint every N steps, and at the end.", rich_help_panel=PANEL_VALIDATION)] = 500,
    precision: Annotated[Precision, typer.Option(help="auto (bf16 on GPUs with it, else fp16 with a grad scaler; fp32 on the CPU), fp32, bf16, fp16.", rich_help_panel=PANEL_PERFORMANCE)] = Precision.auto,
    compile: Annotated[bool, typer.Option("--compile", help="Use torch.compile.", rich_help_panel=PANEL_PERFORMANCE)] = False,
    cuda_graphs: Annotated[bool, typer.Option("--cuda-graphs", help="Capture the whole training step into a CUDA graph and replay it (one launch per step). Eager, with the reason logged, on the CPU or with fp16's grad scaler; not with --compile.", rich_help_panel=PANEL_PERFORMANCE)] = False,
    device: Annotated[Device, typer.Option(help="auto, cpu or cuda.", rich_help_panel=PANEL_PERFORMANCE)] = Device.auto,
    max_train_samples: Annotated[int | None, typer.Option(help="Train on a seeded subset of this many samples.", rich_help_panel=PANEL_DATA)] = None,
    loader: Annotated[Loader, typer.Option(help="dali: shard-aligned reads into an NVIDIA DALI graph that decodes (JPEG on the GPU), resizes, flips, jitters and normalises on the training device; torch: the split resized into memory, batches assembled by torch.", rich_help_panel=PANEL_DATA)] = Loader.dali,
    normalize: Annotated[Normalize, typer.Option(help="Input normalisation: store (the store's own per-channel mean and std, saved by generate or info --stats) or imagenet. Recorded in the checkpoint; evaluate and predict use it.", rich_help_panel=PANEL_DATA)] = Normalize.store,
    source: Annotated[Source, typer.Option(help="Training images: store (read from --data) or online (composited when each batch is drawn, from --data's own settings and inputs: the samples the store holds, without reading them; validation still reads the store).", rich_help_panel=PANEL_DATA)] = Source.store,
    cache: Annotated[Cache, typer.Option(help="device: load the training split once into the device's memory and index batches there (the fastest, when it fits); none: the loader reads.", rich_help_panel=PANEL_DATA)] = Cache.none,
    stream: Annotated[bool, typer.Option("--stream", help="With --loader torch: read each batch's images from the store (the next batch's while this one trains) instead of loading the split into memory: for stores larger than RAM. Lossless stores; same batches.", rich_help_panel=PANEL_DATA)] = False,
    allow_incomplete: Annotated[bool, typer.Option("--allow-incomplete", help="Train on a store not fully generated (only its finished shards); refused without it.", rich_help_panel=PANEL_DATA)] = False,
    resume: Annotated[bool, typer.Option(help="Continue <out>/<stage>.pt exactly where it stopped.", rich_help_panel=PANEL_RUNS)] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an earlier run of this stage in --out (without it, or --resume, train refuses). On the coarse stage it also deletes <out>/fine.pt and the fine stage's files: they were built on the coarse network being replaced.", rich_help_panel=PANEL_RUNS)] = False,
    plot: Annotated[bool, typer.Option(help="Write loss curves and sample predictions as PNG in <out>.", rich_help_panel=PANEL_VALIDATION)] = False,
    config: Annotated[Path | None, typer.Option("--config", metavar="FILE.toml", is_eager=True, expose_value=False, callback=_apply_config_file, help="Options from a TOML file of `option = value` lines named like these options (input-size = \"228x304\"; dashes or underscores); options given on the command line win.", rich_help_panel=PANEL_RUNS)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.", rich_help_panel=PANEL_RUNS)] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what happens.", rich_help_panel=PANEL_RUNS)] = False,
) -> None:
    """Train the coarse/fine depth network (Eigen et al. 2014) on a store, held-out backgrounds for validation.

    Under torchrun: DistributedDataParallel over its ranks (NCCL on GPUs, Gloo
    on the CPU); --batch is the global batch; rank 0 writes the run folder.
    """
    _setup_logging(verbose)
    from engine.distributed import discover, end_group, init_group, pin_local_gpu

    try:
        ranks = discover()
    except FgbgError as e:
        raise _fail(str(e)) from None
    pin_local_gpu(ranks)  # before torch starts CUDA: LOCAL_RANK's GPU is this rank's cuda:0
    from engine.learn.train import TrainConfig
    from engine.learn.train import train as run_train

    grouped = False
    try:
        if ranks.in_group:
            import torch

            on_gpu = _value(device) == "cuda" or (_value(device) == "auto" and torch.cuda.is_available())
            grouped = init_group(ranks, "nccl" if on_gpu else "gloo")
        height, width = _size_pair(input_size if "x" in input_size.lower() else f"{input_size}x{input_size}", "--input-size")
        config = TrainConfig(
            data=str(data), out=str(out), stage=_value(stage), steps=steps, batch=batch, optimizer=_value(optimizer),
            lr_scale=lr_scale, lr_scaling=lr_scaling.value, adamw_lr=adamw_lr, weight_decay=weight_decay, height=height, width=width,
            coarse_channels=_value(coarse_channels), init=None if init is None else str(init),
            init_from=None if init_from is None else str(init_from), val_fraction=val_fraction,
            split_seed=split_seed, seed=seed, loss_mask=_value(loss_mask), eval_every=eval_every,
            eval_samples=eval_samples, checkpoint_every=checkpoint_every, precision=_value(precision),
            compile=compile, cuda_graphs=cuda_graphs, device=_value(device), max_train_samples=max_train_samples, stream=stream,
            loader=loader.value, cache=cache.value, normalize=normalize.value, source=source.value,
        )
        with _TrainProgress(disabled=quiet or not ranks.leader) as bar:
            samples = _online_samples(data, _value(device)) if source == Source.online else None
            report = run_train(config, resume=resume, progress=bar.update, plot=plot, overwrite=overwrite,
                               allow_incomplete=allow_incomplete, samples=samples, ranks=ranks)
    except FgbgError as e:
        raise _fail(str(e)) from None
    except OSError as e:  # the run folder or a checkpoint cannot be written (a read-only or full disk)
        raise _fail(f"{e.filename or out}: cannot write ({e.strerror or e})") from None
    except KeyboardInterrupt:
        raise _fail(_train_interrupted(out, _value(stage)), 130) from None
    finally:
        if grouped:
            end_group()
    if not ranks.leader:  # rank 0 reports for all
        return
    if report.rank_images_per_second:
        rates = report.rank_images_per_second
        typer.echo(f"{len(rates)} ranks: " + ", ".join(f"{r:.0f}" for r in rates)
                   + f" images/s each, {sum(rates):.0f} images/s together; parameters in sync")
    if report.removed_fine:
        typer.echo(f"removed {', '.join(p.name for p in report.removed_fine)}: built on the replaced coarse network")
    typer.echo(f"{report.stage}: {report.steps_run} steps in {report.seconds:.0f} s "
               f"({report.images_per_second:.0f} images/s) -> {report.checkpoint}")
    typer.echo(_metric_table(report.metrics))


def _train_interrupted(out: Path, stage: str) -> str:
    """What a Ctrl-C during ``train`` leaves, and what to do next: --resume only where a checkpoint is."""
    checkpoint = out / f"{stage}.pt"
    if checkpoint.exists():
        return f"interrupted: continue from the last checkpoint, {checkpoint}, with --resume"
    return (f"interrupted before the first checkpoint: nothing to resume in {out}; "
            "run the same command again (without --resume)")


def _online_samples(data: Path, device: str):
    """The compositor behind ``train --source online``: the store's own settings and inputs."""
    from engine.compose.online import OnlineSamples
    from engine.config import GenerateConfig
    from engine.store.zarr_store import read_attrs

    samples = OnlineSamples(GenerateConfig.from_dict(read_attrs(data)["config"]), device=device)
    samples.fill_atlas()  # every foreground size resized once, up front
    return samples


@app.command(cls=_PanelledCommand)
def evaluate(
    data: Annotated[Path, typer.Option(help="Zarr store (the held-out split is the one the checkpoint was trained with).", rich_help_panel=PANEL_INPUT)],
    checkpoint: Annotated[Path, typer.Option(help="A checkpoint written by train.", rich_help_panel=PANEL_INPUT)],
    split: Annotated[Split, typer.Option(help="val (held-out backgrounds), train, or all.", rich_help_panel=PANEL_INPUT)] = Split.val,
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.", rich_help_panel=PANEL_OUTPUT)] = False,
    batch: Annotated[int, typer.Option(help="Samples per forward pass.", rich_help_panel=PANEL_PERFORMANCE)] = 64,
    device: Annotated[Device, typer.Option(help="auto, cpu or cuda.", rich_help_panel=PANEL_PERFORMANCE)] = Device.auto,
    loader: Annotated[Loader, typer.Option(help="dali: the training loader's DALI graph without augmentation (JPEG decoded on the GPU when evaluating there), images read batch by batch; torch: the split resized into memory by torch (or streamed with --stream). Metrics agree within 1e-6 (relative) at the store's size and 1e-3 resized (tested on the CPU, lossless and JPEG).", rich_help_panel=PANEL_PERFORMANCE)] = Loader.dali,
    stream: Annotated[bool, typer.Option("--stream", help="With --loader torch: read images batch by batch instead of loading the split (stores larger than RAM).", rich_help_panel=PANEL_PERFORMANCE)] = False,
) -> None:
    """The paper's error metrics for a checkpoint, next to the constant predictor."""
    _setup_logging(False)  # warnings: a fine checkpoint whose coarse one cannot be checked
    from engine.learn.evaluate import evaluate_checkpoint

    try:
        result = evaluate_checkpoint(checkpoint, data, _value(split), _value(device), batch, stream, loader.value)
    except FgbgError as e:
        raise _fail(str(e)) from None
    for warning in result.get("warnings", []):  # on stderr: --json output stays parseable
        typer.secho(f"warning: {warning}", err=True, fg=typer.colors.YELLOW)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    typer.echo(f"{result['checkpoint']} ({result['stage']}, step {result['step']}) on {result['split']}: "
               f"{result['samples']} samples, input {result['input_size'][1]}x{result['input_size'][0]}")
    typer.echo(_metric_table(result["metrics"]))


@app.command()
def predict(
    checkpoint: Annotated[Path, typer.Option(help="A checkpoint written by train.")],
    images: Annotated[list[Path], typer.Argument(help="Image files, or folders (every file in them).")],
    out: Annotated[Path, typer.Option(help="Folder for <name>_depth.npy and <name>_depth.png.")] = Path("depth"),
    upsample: Annotated[bool, typer.Option("--upsample", help="Write the .npy at the image's size (bilinear; NaN outside the crop the network saw) instead of the network's output size.")] = False,
    device: Annotated[Device, typer.Option(help="auto, cpu or cuda.")] = Device.auto,
) -> None:
    """Predict depth for images. Each image is centre-cropped to the network's aspect.

    Writes <name>_depth.npy: float32 metres at the network's output size (e.g.
    26x26 for a 112 input), covering that crop; with --upsample, at the image's
    size. And <name>_depth.png: a colour map at the image's size, red near to
    blue far over the image's own 2nd-98th percentile depth (printed), dark
    grey outside the crop.
    """
    _setup_logging(False)  # warnings: a fine checkpoint whose coarse one cannot be checked
    import numpy as np
    from PIL import Image

    from engine.learn.evaluate import predict_images
    from engine.store.preview import depth_range, depth_to_rgb

    try:
        predictions = predict_images(checkpoint, list(images), _value(device))
        out.mkdir(parents=True, exist_ok=True)
        for p in predictions:
            full = p.upsampled()  # (H, W) metres, NaN outside the crop
            array = full if upsample else p.depth
            np.save(out / f"{p.path.stem}_depth.npy", array)
            near, far = depth_range(p.depth)
            Image.fromarray(depth_to_rgb(full, near, far)).save(out / f"{p.path.stem}_depth.png")
            top, left, ch, cw = p.crop
            crop = "" if (ch, cw) == p.image_size else f", crop {cw}x{ch} at ({left}, {top})"
            typer.echo(f"{p.path.name} ({p.image_size[1]}x{p.image_size[0]}{crop}): "
                       f"{p.path.stem}_depth.npy {array.shape[1]}x{array.shape[0]} metres, "
                       f"{p.path.stem}_depth.png colours {near:.3g} m (red) to {far:.3g} m (blue)")
    except FgbgError as e:
        raise _fail(str(e)) from None
    except OSError as e:
        raise _fail(f"{out}: cannot write ({e.strerror or e})") from None
    grid = "the image's size" if upsample else "the network's output size (--upsample: the image's)"
    typer.echo(f"wrote {len(predictions)} depth maps to {out}/: .npy float32 metres at {grid}; .png colour maps at the image's size")


_METRIC_LABELS = [("delta1", "δ<1.25", "↑"), ("delta2", "δ<1.25²", "↑"), ("delta3", "δ<1.25³", "↑"),
                  ("abs_rel", "abs rel", "↓"), ("sq_rel", "sq rel", "↓"), ("rmse", "RMSE (m)", "↓"),
                  ("rmse_log", "RMSE log", "↓"), ("si_log", "RMSE log s.i.", "↓")]


class ExportKind(str, Enum):
    coco = "coco"
    folders = "folders"


class ImageFormat(str, Enum):
    auto = "auto"
    png = "png"
    jpeg = "jpeg"


@app.command(cls=_PanelledCommand, short_help="Write a store as COCO instances or plain image/mask/depth folders.")
def export(
    kind: Annotated[ExportKind, typer.Argument(help="coco: <out>/annotations.json (COCO instances: visible boxes, areas, compressed RLE masks, a category per foreground folder; file_name relative to <out>/images) and <out>/images/; folders: <out>/images/, masks/ (PNG, 0/255), depth/ (16-bit PNG, metres x 256, 0 = unknown: KITTI's convention), plus instances/ (16-bit PNG ids) and alpha/ (8-bit PNG soft alpha) when the store has them.")],
    store: Annotated[Path, typer.Argument(help="A store written by generate (its finished shards are exported).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write (must be new or empty, or an earlier export with --overwrite).", rich_help_panel=PANEL_OUTPUT)],
    image_format: Annotated[ImageFormat, typer.Option(help="auto: a JPEG store's own bytes, not re-encoded, and PNG for lossless images; png; jpeg (encoded here at --jpeg-quality, 4:4:4).", rich_help_panel=PANEL_OUTPUT)] = ImageFormat.auto,
    jpeg_quality: Annotated[int, typer.Option(help="JPEG quality when images are encoded here (1-100).", rich_help_panel=PANEL_OUTPUT)] = 95,
    split: Annotated[Split, typer.Option(help="all, or train/val: samples of the backgrounds train holds in or out (same rule and seeds as train).", rich_help_panel=PANEL_SELECTION)] = Split.all,
    val_fraction: Annotated[float, typer.Option(help="Fraction of backgrounds held out (train's --val-fraction).", rich_help_panel=PANEL_SELECTION)] = 0.1,
    split_seed: Annotated[int, typer.Option(help="Seed choosing the held-out backgrounds (train's --split-seed).", rich_help_panel=PANEL_SELECTION)] = 0,
    limit: Annotated[int | None, typer.Option(help="Export at most this many samples (the split's first).", rich_help_panel=PANEL_SELECTION)] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an earlier fgbg export in --out (never a folder fgbg did not write).", rich_help_panel=PANEL_OUTPUT)] = False,
    threads: Annotated[int | None, typer.Option(help="Files encoded at once (default: one per core).", rich_help_panel=PANEL_PERFORMANCE)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.", rich_help_panel=PANEL_RUNS)] = False,
) -> None:
    """Write a store in the formats other tools read, in one streaming pass (constant memory)."""
    from engine.store.export import ExportConfig, export_store

    t0 = time.perf_counter()
    config = ExportConfig(store=str(store), out=str(out), kind=kind.value, image_format=image_format.value,
                          jpeg_quality=jpeg_quality, split=split.value, val_fraction=val_fraction,
                          split_seed=split_seed, limit=limit)
    try:
        with _CountProgress(disabled=quiet, label=f"export {kind.value}", unit="samples") as bar:
            report = export_store(config, overwrite=overwrite, threads=threads, progress=bar.update)
    except FgbgError as e:
        raise _fail(str(e)) from None
    except OSError as e:
        raise _fail(f"{out}: cannot write ({e.strerror or e})") from None
    except KeyboardInterrupt:
        raise _fail(f"interrupted: {out} holds part of the export (no annotations.json); "
                    "run the same command with --overwrite to export again", 130) from None
    seconds = time.perf_counter() - t0
    typer.echo(f"wrote {report.samples} samples, {report.instances} instances, {report.files} files to {out} "
               f"in {seconds:.1f} s ({report.samples / max(seconds, 1e-9):,.0f} samples/s)")


@app.command(short_help="Images/s of every stage here, vs the naive loop, with history, ceilings and a chart.")
def bench(
    quick: Annotated[bool, typer.Option("--quick", help="Small sizes: the whole run in about a minute on 2 CPU cores (compare quick runs only with quick runs).")] = False,
    stages: Annotated[str | None, typer.Option(help="Comma-separated stages or families (e.g. composite,loader); default: all (docs/performance.md lists them).")] = None,
    device: Annotated[Device, typer.Option(help="Devices to measure: auto (the CPU, and CUDA where a GPU works), cpu, or cuda.")] = "auto",
    out: Annotated[Path, typer.Option(help="Folder of the JSON records (the history; a --quick run with this default goes to benchmarks/scratch/quick-results).")] = Path("benchmarks/results"),
    report: Annotated[bool, typer.Option("--report", help="Run nothing: rebuild benchmarks/RESULTS.md's generated section and the chart (docs/bench.png) from the records in --out.")] = False,
    compare: Annotated[list[str] | None, typer.Option(metavar="REV_OR_JSON", help="Run nothing: each stage's ratio between two records, each a JSON file or a git revision (its latest record). Give it twice (old, then new), or once to compare with the newest record.")] = None,
    scratch: Annotated[Path, typer.Option(help="Scratch folder for the stores the run writes (emptied at the end).")] = Path("benchmarks/scratch/bench"),
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
) -> None:
    """Images/s of each stage on this machine (median of >= 5 repeats after warm-up, min-max), next to
    the naive per-image loop (one process and one per core) and, on a GPU, each stage's physical
    ceiling, all measured in this run; appends a JSON record to --out (a --quick run with the default
    --out keeps it in benchmarks/scratch/quick-results, which git ignores: quick runs are checks, not history)."""
    checkout = str(Path(__file__).resolve().parent)
    if checkout not in sys.path:  # the suite lives beside cli.py in the checkout (e.g. an editable install's `fgbg`)
        sys.path.insert(0, checkout)
    try:
        from benchmarks.suite import record as records
        from benchmarks.suite import report as reports
    except ImportError as e:
        raise _fail(f"bench runs from a checkout of fgbg (benchmarks/suite is missing: {e})") from None
    try:
        if compare:
            _bench_compare(compare, out)
            return
        if report:
            history = records.history(out)
            if not history:
                raise _fail(f"no bench records in {out}: run `python cli.py bench` first")
            root = Path(checkout)  # RESULTS.md and the chart in docs/ live in the checkout
            chart = reports.chart(history, root / "docs" / "bench.png")
            reports.update_results(root / "benchmarks" / "RESULTS.md",
                                   reports.generated_section(history, "../docs/bench.png"))
            typer.echo(f"{len(history)} records -> benchmarks/RESULTS.md, {chart.relative_to(root)}")
            return
        record = _bench_run(quick, stages, device.value, scratch, quiet)
        path = records.write(record, records.record_folder(out, quick))  # --quick: not into the history
    except FgbgError as e:
        raise _fail(str(e)) from None
    import shutil

    width = shutil.get_terminal_size((150, 24)).columns  # COLUMNS, else the terminal, else 150 (a log)
    title = f"fgbg bench ({'quick' if quick else 'full'} sizes): {reports.describe_machine(record)}"
    typer.echo(reports.render_table(record, title, width), nl=False)
    ceilings = ", ".join(f"{k.removesuffix('_GBps')} {v:.2f} GB/s" for k, v in record["ceilings"].items())
    load = record["machine"].get("load_average_start")
    busy = f"; load average {load:.1f} on {record['machine']['cores']} cores" if load is not None else ""
    typer.echo(f"ceilings: {ceilings or 'none'}; {record['seconds']:.0f} s in all{busy}; record: {path}")


def _bench_run(quick: bool, stages: str | None, device: str, scratch: Path, quiet: bool) -> dict:
    """Run the suite with a rich progress display; returns the record."""
    from benchmarks.suite.runner import BenchSettings, run_bench
    from benchmarks.suite.stages import select
    from engine.compose.compositor_cuda import resolve_device

    try:
        chosen = select([s.strip() for s in stages.split(",") if s.strip()] if stages else None)
    except ValueError as e:
        raise ConfigError(f"--stages: {e}") from None
    devices = ("cpu",) if device == "cpu" else ("cuda",) if device == "cuda" else \
        ("cpu",) + (("cuda",) if resolve_device("auto") == "cuda" else ())
    if device == "cuda":
        resolve_device("cuda")  # no GPU: one line, exit 2
    settings = BenchSettings(quick, devices, tuple(chosen), scratch)
    total = 2 + sum(1 for d in devices for s in chosen)
    with _CountProgress(quiet, "bench", "steps") as bar:
        done = 0

        def progress(event: str, name: str, where: str) -> None:
            nonlocal done
            if event == "start":
                if bar.bar is not None and bar.task is not None:
                    bar.bar.update(bar.task, description=f"{name} ({where})")
                elif not quiet:  # no terminal (a log): one line per step, so a cut-off run says where
                    typer.echo(f"bench: {name} ({where}) ...", err=True)
                return
            done += 1
            bar.update(done, total)
            if event == "skip" and not quiet:
                typer.echo(f"skipped {name} on {where}", err=True)

        bar.update(0, total)
        return run_bench(settings, progress)


def _bench_compare(refs: list[str], out: Path) -> None:
    from benchmarks.suite import record as records
    from benchmarks.suite import report as reports

    if len(refs) > 2:
        raise ConfigError(f"--compare takes one or two records, got {len(refs)}")
    history = records.history(out) if out.is_dir() else []
    old = reports.resolve(refs[0], history)
    if len(refs) == 2:
        new = reports.resolve(refs[1], history)
    elif history:
        new = history[-1]
    else:
        raise ConfigError(f"--compare {refs[0]}: no newest record in {out} to compare it with (give two)")
    rows, warnings = reports.compare_rows(old, new)
    typer.echo(f"old: {old['git']['commit'][:10]} {old['created']}   new: {new['git']['commit'][:10]} {new['created']}")
    for w in warnings:
        typer.echo(f"warning: {w}")
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(reports.COMPARE_HEADERS)]
    for line in [reports.COMPARE_HEADERS, *rows]:
        typer.echo("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))))


def _metric_table(metrics: dict) -> str:
    names = list(metrics)
    lines = [f"  {'metric':<16}" + "".join(f"{n:>12}" for n in names)]
    for key, label, arrow in _METRIC_LABELS:
        lines.append(f"  {label + ' ' + arrow:<16}" + "".join(f"{metrics[n][key]:>12.4f}" for n in names))
    return "\n".join(lines)


class _TrainProgress:
    """Rich progress bar for training: step, loss, images/s."""

    def __init__(self, disabled: bool) -> None:
        self.disabled = disabled or not sys.stderr.isatty()
        self.bar = None
        self.task = None

    def __enter__(self) -> _TrainProgress:
        if not self.disabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("loss {task.fields[loss]}  {task.fields[rate]} images/s"),
                                TimeRemainingColumn(), console=Console(stderr=True))
            self.bar.__enter__()
        return self

    def update(self, step: int, steps: int, loss: float, rate: float) -> None:
        if self.bar is None:
            return
        if self.task is None:
            self.task = self.bar.add_task("train", total=steps, completed=step - 1, loss="-", rate="-")
        self.bar.update(self.task, completed=step, loss=f"{loss:.4f}", rate=f"{rate:,.0f}")

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)


def _value(option: object) -> str:
    """An enum option's string (Typer passes defaults through unconverted)."""
    return option.value if isinstance(option, Enum) else str(option)


def _size_pair(text: str | None, flag: str) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"{flag} must look like 228x304 (height x width), got {text!r}") from None
    return h, w


def _category_values(text: str | None, flag: str) -> tuple[tuple[str, float], ...]:
    """``"car=1.5,person=1.75"`` → ``(("car", 1.5), ("person", 1.75))``; ``None`` → ``()``."""
    if not text:
        return ()
    pairs = []
    for item in text.split(","):
        name, _, value = item.partition("=")
        try:
            pairs.append((name.strip(), float(value)))
        except ValueError:
            raise ConfigError(f"{flag} takes CATEGORY=METRES or FILE=METRES pairs separated by commas, "
                              f"got {item!r}") from None
        if not name.strip():
            raise ConfigError(f"{flag} takes CATEGORY=METRES or FILE=METRES pairs separated by commas, got {item!r}")
    return tuple(pairs)


def _triple(text: str, flag: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise ConfigError(f"{flag} needs three comma-separated numbers, got {text!r}")
    return values  # type: ignore[return-value]


def _describe_device(chosen: str, requested: str) -> str:
    from engine.compose.compositor_cuda import device_name

    if chosen == "cuda":
        return f"cuda ({device_name()})"
    return "cpu (no CUDA GPU found)" if requested == "auto" else "cpu"


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"  # pragma: no cover


class _Progress:
    """A rich progress bar fed by the engine's progress callback (samples/s)."""

    def __init__(self, disabled: bool, header: str) -> None:
        self.quiet = disabled
        self.disabled = disabled or not sys.stderr.isatty()
        self.header = header
        self.bar = None
        self.task = None
        self.start: tuple[float, int] | None = None  # (time, samples done) when writing started

    def __enter__(self) -> _Progress:
        if not self.disabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(
                TextColumn("[bold]generate"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[rate]} images/s"), TimeRemainingColumn(),
                console=Console(stderr=True), transient=False,
            )
            self.bar.__enter__()
        return self

    def update(self, advanced: int, done: int, total: int) -> None:
        if self.header is not None:  # printed once the work starts, not before errors
            if not self.quiet:
                typer.echo(self.header, err=True)
            self.header = None
        if self.start is None:
            self.start = (time.perf_counter(), done)
        if self.bar is None:
            return
        if self.task is None:
            self.task = self.bar.add_task("generate", total=total, completed=done, rate="-")
            return
        self.bar.update(self.task, completed=done, rate=f"{self.rate(done):,.0f}")

    def rate(self, done: int) -> float:
        """Samples per second since writing started: the mean, as generate's final line reports it
        (rich's own speed is a recent window, which leaves out the first shard)."""
        t0, done0 = self.start or (time.perf_counter(), done)
        return (done - done0) / max(time.perf_counter() - t0, 1e-9)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)


class _CountProgress:
    """A rich progress bar of ``done / total`` items with their rate."""

    def __init__(self, disabled: bool, label: str, unit: str) -> None:
        self.disabled = disabled or not sys.stderr.isatty()
        self.label, self.unit = label, unit
        self.bar = None
        self.task = None

    def __enter__(self) -> _CountProgress:
        if not self.disabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TextColumn(f"{{task.fields[rate]}} {self.unit}/s"), TimeRemainingColumn(),
                                console=Console(stderr=True))
            self.bar.__enter__()
        return self

    def update(self, done: int, total: int) -> None:
        if self.bar is None:
            return
        if self.task is None:
            self.task = self.bar.add_task(self.label, total=total, completed=done, rate="-")
        self.bar.update(self.task, completed=done)
        speed = self.bar.tasks[0].speed
        self.bar.update(self.task, rate=f"{speed:,.0f}" if speed else "-")

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)


if __name__ == "__main__":
    app()
