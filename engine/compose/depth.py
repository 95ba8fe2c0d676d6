"""Depth sources: where each sample's depth map comes from.

A depth source gives (a) the depth of every background pixel and (b) the depth
of the plane each placed foreground stands on. The compositor writes the
plane's depth under the mask and the background's elsewhere, so every source
yields a consistent composite; ``teacher-composite`` instead replaces the
whole map with a network's prediction on the composite.

=====================  ====================================================
``ground-plane``       built-in scenes: ray-cast geometry; user backgrounds:
                       a level camera over flat ground (``--horizon`` …)
``bg-maps``            the user's depth map per background (``--depth-maps``)
``teacher-bg``         a depth network run once per background
``teacher-composite``  a depth network run on every composite
=====================  ====================================================

The foreground plane (``--fg-depth``): ``auto`` is the ground equation at the
foreground's bottom row for ``ground-plane`` and ``contact`` otherwise;
``contact`` is the median background depth under the bottom row's opaque
pixels (where the object touches the ground); ``min-footprint`` the nearest
background depth under its mask; ``constant`` a given value. In the maps,
0 means unknown depth. A foreground cut by the image border (``--truncation``)
is read where it is visible (:mod:`kernels.plane_depth`); the ground equation
holds below the image too, so a bottom cut off (``uniform``) keeps its exact depth.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import numpy as np

from engine.assets.camera import GroundPlane
from engine.assets.images import AssetSet
from engine.compose.plan import Placements
from engine.config import GenerateConfig
from engine.errors import ConfigError

log = logging.getLogger(__name__)

#: horizon used for user backgrounds when ``--horizon`` is not given (a level camera)
DEFAULT_HORIZON = 0.5


class DepthSource(Protocol):
    """What the plan and the compositor need from a depth source."""

    name: str
    #: whether :meth:`composite_depth` replaces each composite's depth (it then
    #: needs the finished composite images)
    per_composite: bool

    def background_depth(self) -> np.ndarray:
        """``(NB, H, W) float32`` metres in ``[0, max_depth]`` (0 = unknown)."""
        ...

    def first_ground_rows(self) -> np.ndarray | None:
        """``(NB,) int64`` first row that sees the ground per background, or
        ``None`` when the ground is unknown (placement is then unconstrained)."""
        ...

    def plane_depth(self, p: Placements, table: np.ndarray, atlas: np.ndarray, threshold: int) -> np.ndarray:
        """``(B,) float32`` depth of each foreground's plane (0 = unknown)."""
        ...

    def composite_depth(self, images: np.ndarray, bg_index: np.ndarray) -> np.ndarray | None:
        """``(B, H, W) float32`` depth replacing the composited one, or ``None``."""
        ...

    def describe(self) -> dict[str, Any]:
        """JSON-able parameters, saved in the store's attributes."""
        ...


def ground_planes(assets: AssetSet, config: GenerateConfig, required: bool) -> list[GroundPlane] | None:
    """Per-background cameras: the built-in scenes' own, or a level camera from
    ``--horizon``/``--camera-height``/``--focal``; ``None`` when not ``required``
    and no ``--horizon`` was given for user backgrounds."""
    n, height, width, _ = assets.bg_images.shape
    if assets.bg_grounds is not None:
        return list(assets.bg_grounds)
    if config.horizon is None and not required:
        return None
    horizon = DEFAULT_HORIZON if config.horizon is None else config.horizon
    if config.horizon is None:
        log.warning(
            "user backgrounds: assuming a level camera with the horizon at %.2f of the height "
            "(set --horizon, --camera-height, --focal for your photos)", horizon,
        )
    grounds = [GroundPlane(horizon * height, config.focal or float(width), config.camera_height)] * n
    if grounds[0].first_ground_row() > height - 1:
        raise ConfigError("the horizon is below the last row: no ground to stand foregrounds on")
    return grounds


class _Source:
    """Shared behaviour: a background depth array, optional cameras, a plane rule."""

    name = ""
    per_composite = False

    def __init__(self, depth: np.ndarray, grounds: list[GroundPlane] | None, config: GenerateConfig) -> None:
        self.max_depth = float(config.max_depth)
        self.grounds = grounds
        self.rule = config.fg_depth
        self.value = config.fg_depth_value
        clean = np.nan_to_num(depth.astype(np.float32), nan=0.0, posinf=self.max_depth, neginf=0.0)
        self.depth = np.clip(clean, 0.0, self.max_depth).astype(np.float32)

    def background_depth(self) -> np.ndarray:
        return self.depth

    def first_ground_rows(self) -> np.ndarray | None:
        if self.grounds is None:
            return None
        return np.array([g.first_ground_row() for g in self.grounds], dtype=np.int64)

    def plane_depth(self, p: Placements, table: np.ndarray, atlas: np.ndarray, threshold: int) -> np.ndarray:
        rule = self.rule
        if rule == "auto":
            rule = "ground" if self.name == "ground-plane" else "contact"
        if rule == "constant":
            return np.full(len(p), self.value, np.float32)
        if rule == "ground":
            return self.ground_depth(p)
        from kernels.plane_depth import CONTACT, MIN_FOOTPRINT, plane_depth_batch

        mode = CONTACT if rule == "contact" else MIN_FOOTPRINT
        depth = plane_depth_batch(self.depth, atlas, table, threshold, mode)
        return np.nan_to_num(np.minimum(depth, self.max_depth), nan=0.0).astype(np.float32)

    def ground_depth(self, p: Placements) -> np.ndarray:
        """Ground depth at each foreground's bottom row (the flat-ground equation)."""
        if self.grounds is None:  # pragma: no cover - "ground" is only chosen with cameras
            raise ConfigError("no ground plane known for these backgrounds")
        horizon = np.array([g.horizon for g in self.grounds])[p.bg]
        focal = np.array([g.focal for g in self.grounds])[p.bg]
        cam = np.array([g.camera_height for g in self.grounds])[p.bg]
        below = p.contact_row + 0.5 - horizon
        with np.errstate(divide="ignore"):
            depth = np.where(below > 0, focal * cam / below, np.inf)
        return np.minimum(depth, self.max_depth).astype(np.float32)

    def composite_depth(self, images: np.ndarray, bg_index: np.ndarray) -> np.ndarray | None:
        return None

    def _camera(self) -> dict[str, Any] | None:
        if self.grounds is None:
            return None
        g = self.grounds[0]
        return {"horizon_row": g.horizon, "focal_px": g.focal, "camera_height_m": g.camera_height}

    def describe(self) -> dict[str, Any]:
        return {"source": self.name, "max_depth": self.max_depth, "units": "metres, Z along the optical axis; 0 = unknown",
                "fg_depth": self.rule, "fg_depth_value": self.value}


class GroundPlaneDepth(_Source):
    """Exact depth from a pinhole camera over flat ground.

    Built-in scenes bring their own camera and ray-cast depth (buildings
    included). User backgrounds get a level camera: horizon at ``--horizon``
    (default half height), ``--camera-height`` metres up, ``--focal`` pixels
    (default the output width); each row below the horizon sees the ground at
    ``focal * camera_height / (row + 0.5 - horizon)``, rows above it are sky.
    Depth is capped at ``max_depth`` (sky included).
    """

    name = "ground-plane"

    def __init__(self, assets: AssetSet, config: GenerateConfig) -> None:
        grounds = ground_planes(assets, config, required=True)
        assert grounds is not None
        n, height, width, _ = assets.bg_images.shape
        if assets.bg_depth is not None:
            depth = assets.bg_depth
        else:
            per_row = np.stack([g.ground_depth(np.arange(height)) for g in grounds])  # (NB, H)
            depth = np.broadcast_to(per_row[:, :, None], (n, height, width))
        self.assumed = assets.bg_grounds is None and config.horizon is None
        self.ray_cast = assets.bg_depth is not None
        super().__init__(np.where(np.isinf(depth), config.max_depth, depth), grounds, config)

    def describe(self) -> dict[str, Any]:
        camera = self._camera()
        if camera is not None:
            camera["assumed_default_horizon"] = self.assumed
        return {**super().describe(),
                "geometry": "ray-cast built-in scenes" if self.ray_cast else "flat ground, level camera",
                "camera": None if self.ray_cast else camera}


class MapDepth(_Source):
    """Background depth from maps: the user's (``bg-maps``) or a teacher's (``teacher-bg``)."""

    def __init__(self, name: str, depth: np.ndarray, assets: AssetSet, config: GenerateConfig,
                 extra: dict[str, Any] | None = None) -> None:
        self.name = name
        self.extra = extra or {}
        super().__init__(depth, ground_planes(assets, config, required=False), config)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "geometry": self.name, "camera": self._camera(), **self.extra}


class TeacherCompositeDepth(MapDepth):
    """A teacher network on every composite (the original pipeline, batched).

    Backgrounds still get the teacher's map once (stored under ``assets/``, and
    used for ``--occlusion``); each composite's depth is the network's view of
    the composite itself.
    """

    per_composite = True

    def __init__(self, depth: np.ndarray, assets: AssetSet, config: GenerateConfig, teacher: Any,
                 aligner: Any, extra: dict[str, Any]) -> None:
        super().__init__("teacher-composite", depth, assets, config, extra)
        self.teacher = teacher
        self.aligner = aligner

    def composite_depth(self, images: np.ndarray, bg_index: np.ndarray) -> np.ndarray:
        depth = self.teacher(images)
        if self.aligner is not None:
            depth = self.aligner(depth, bg_index)
        return np.clip(depth, 0.0, self.max_depth).astype(np.float32)


def align_to_ground(depth: np.ndarray, grounds: list[GroundPlane], bg_index: np.ndarray) -> np.ndarray:
    """Scale each map so its median ratio to the ground-plane prior, below the
    horizon, is 1 (monocular networks know depth only up to scale).

    Args:
        depth: ``(N, H, W) float32`` predicted metres.
        grounds: camera per background.
        bg_index: ``(N,)`` which background each map belongs to.
    """
    out = depth.copy()
    rows = np.arange(depth.shape[1])
    for i, b in enumerate(bg_index):
        prior = grounds[int(b)].ground_depth(rows)  # (H,) inf above the horizon
        below = np.isfinite(prior)
        ratio = prior[below, None] / np.maximum(depth[i][below], 1e-6)
        if ratio.size:
            out[i] *= np.float32(np.median(ratio))
    return out


def make_depth_source(config: GenerateConfig, assets: AssetSet, device: str = "cpu") -> DepthSource:
    """The depth source named by ``config.depth_source`` (loads and runs a teacher if needed)."""
    if config.depth_source == "ground-plane":
        return GroundPlaneDepth(assets, config)
    if config.depth_source == "bg-maps":
        if assets.bg_depth is None:  # pragma: no cover - load_assets loads them
            raise ConfigError("--depth-source bg-maps: no depth maps were loaded")
        return MapDepth("bg-maps", assets.bg_depth, assets, config, {"files": [f.name for f in assets.depth_files]})
    from engine.compose.teacher import Teacher, TeacherOptions

    options = TeacherOptions(output=config.teacher_output, scale=config.teacher_scale,
                             input_size=config.teacher_size, mean=config.teacher_mean, std=config.teacher_std)
    teacher = Teacher.load(config.teacher, options, device)  # type: ignore[arg-type]
    depth = teacher(assets.bg_images)  # once per background
    aligner = None
    if config.align_to_ground:
        grounds = ground_planes(assets, config, required=True)
        assert grounds is not None
        depth = align_to_ground(depth, grounds, np.arange(len(depth)))
        aligner = lambda d, idx: align_to_ground(d, grounds, idx)
    extra = {"teacher": teacher.path.name, "teacher_kind": teacher.kind, "teacher_output": config.teacher_output,
             "aligned_to_ground": config.align_to_ground}
    if config.depth_source == "teacher-bg":
        return MapDepth("teacher-bg", depth, assets, config, extra)
    return TeacherCompositeDepth(depth, assets, config, teacher, aligner, extra)
