"""Pinhole camera over a flat ground plane.

Conventions (used by the synthetic scenes, the ground-plane depth source and
the plan): image rows grow downwards, pixel ``r`` has its centre at
``r + 0.5``; the camera looks horizontally, so the horizon is the row of the
principal point; depth is ``Z``, the distance along the optical axis (not the
Euclidean range), in metres.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GroundPlane:
    """A level pinhole camera at ``camera_height`` metres above flat ground.

    Attributes:
        horizon: row coordinate of the horizon in output pixels (fractional;
            0 is the top edge of the image). Rows whose centre lies below it
            see the ground.
        focal: focal length in pixels.
        camera_height: height of the optical centre above the ground, metres.
    """

    horizon: float
    focal: float
    camera_height: float

    def ground_depth(self, rows: np.ndarray) -> np.ndarray:
        """Depth of the ground seen at the centre of each row.

        Args:
            rows: integer row indices, any shape.

        Returns:
            float64 array of the same shape: ``focal * camera_height /
            (row + 0.5 - horizon)`` metres where the row centre is below the
            horizon, ``inf`` elsewhere (those rows see no ground).
        """
        below = np.asarray(rows, dtype=np.float64) + 0.5 - self.horizon
        with np.errstate(divide="ignore"):
            depth = self.focal * self.camera_height / below
        return np.where(below > 0, depth, np.inf)

    def first_ground_row(self) -> int:
        """Smallest row index whose centre is strictly below the horizon."""
        return int(np.floor(self.horizon - 0.5)) + 1
