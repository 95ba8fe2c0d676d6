"""Depth sources: where each sample's depth map comes from.

A depth source gives (a) the depth of every background pixel and (b) the depth
of the plane a foreground stands on, from the row where its bottom edge
touches the ground. The compositor writes foreground-plane depth under the
mask and background depth elsewhere, so every source yields a geometrically
consistent composite. Only ``ground-plane`` exists so far; others (per-
background maps, a teacher network) plug in behind the same interface.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import numpy as np

from engine.assets import AssetSet
from engine.camera import GroundPlane
from engine.config import GenerateConfig
from engine.errors import ConfigError

log = logging.getLogger(__name__)

#: horizon used for user backgrounds when ``--horizon`` is not given (a level camera)
DEFAULT_HORIZON = 0.5


class DepthSource(Protocol):
    """What the plan and the compositor need from a depth source."""

    name: str

    def background_depth(self) -> np.ndarray:
        """``(NB, H, W) float32`` metres, finite, in ``(0, max_depth]``."""
        ...

    def first_ground_rows(self) -> np.ndarray | None:
        """``(NB,) int64`` first row seeing the ground per background, or ``None``
        when backgrounds have no ground plane (placement is then unconstrained)."""
        ...

    def contact_depth(self, bg_index: np.ndarray, contact_row: np.ndarray) -> np.ndarray:
        """``(B,) float32`` depth of the foreground plane standing at ``contact_row``."""
        ...

    def describe(self) -> dict[str, Any]:
        """JSON-able parameters, saved in the store's attributes."""
        ...


class GroundPlaneDepth:
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
        n, height, width, _ = assets.bg_images.shape
        self.max_depth = float(config.max_depth)
        self.scene_depth = assets.bg_depth
        if assets.bg_grounds is not None:
            self.grounds = list(assets.bg_grounds)
            self.assumed = False
        else:
            horizon = DEFAULT_HORIZON if config.horizon is None else config.horizon
            if config.horizon is None:
                log.warning(
                    "user backgrounds: assuming a level camera with the horizon at %.2f of the "
                    "height (set --horizon, --camera-height, --focal for your photos)", horizon,
                )
            ground = GroundPlane(horizon * height, config.focal or float(width), config.camera_height)
            self.grounds = [ground] * n
            self.assumed = config.horizon is None
        self.height, self.width = height, width
        rows = self.first_ground_rows()
        if (rows > height - 1).any():
            raise ConfigError("the horizon is below the last row: no ground to stand foregrounds on")

    def background_depth(self) -> np.ndarray:
        if self.scene_depth is not None:
            depth = self.scene_depth.astype(np.float32)
        else:
            rows = np.arange(self.height)
            per_row = np.stack([g.ground_depth(rows) for g in self.grounds])  # (NB, H)
            depth = np.broadcast_to(per_row[:, :, None], (len(self.grounds), self.height, self.width))
        return np.minimum(np.nan_to_num(depth, nan=self.max_depth, posinf=self.max_depth), self.max_depth).astype(np.float32)

    def first_ground_rows(self) -> np.ndarray:
        return np.array([g.first_ground_row() for g in self.grounds], dtype=np.int64)

    def contact_depth(self, bg_index: np.ndarray, contact_row: np.ndarray) -> np.ndarray:
        horizon = np.array([g.horizon for g in self.grounds])[bg_index]
        focal = np.array([g.focal for g in self.grounds])[bg_index]
        cam = np.array([g.camera_height for g in self.grounds])[bg_index]
        below = contact_row + 0.5 - horizon
        with np.errstate(divide="ignore"):
            depth = np.where(below > 0, focal * cam / below, np.inf)
        return np.minimum(depth, self.max_depth).astype(np.float32)

    def describe(self) -> dict[str, Any]:
        g = self.grounds[0]
        return {
            "source": self.name,
            "max_depth": self.max_depth,
            "units": "metres, Z along the optical axis",
            "geometry": "ray-cast built-in scenes" if self.scene_depth is not None else "flat ground, level camera",
            "camera": None if self.scene_depth is not None else
            {"horizon_row": g.horizon, "focal_px": g.focal, "camera_height_m": g.camera_height,
             "assumed_default_horizon": self.assumed},
        }


def make_depth_source(config: GenerateConfig, assets: AssetSet) -> DepthSource:
    """The depth source named by ``config.depth_source``."""
    if config.depth_source == "ground-plane":
        return GroundPlaneDepth(assets, config)
    raise ConfigError(f"unknown depth source {config.depth_source!r}")  # pragma: no cover - config checks first
