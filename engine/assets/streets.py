"""Embedded default assets: procedural street backgrounds and car cut-outs.

Nothing is downloaded or bundled; every asset is a pure function of
``(seed, index, size)``, drawn from its own random stream, so asset ``index``
never depends on how many others were made.

Street scenes are ray-cast exactly. The camera is level at height ``h`` above
the flat ground ``y = 0`` and may be yawed a little about the vertical axis.
The ray through image point ``(u, v)`` (columns, rows; pixel centres at
``+0.5``) has the camera-frame direction ``((u - W/2) / f, -(v - horizon) / f,
1)``, so the point it reaches at parameter ``t`` has depth ``Z = t`` (along the
optical axis, not range) and height ``h + t * dy``. Consequently:

* ground ``y = 0`` is hit at ``t = f * h / (v - horizon)`` for every ray below
  the horizon, exactly :meth:`GroundPlane.ground_depth` at pixel centres
  (yaw turns the ray about the vertical, which leaves its height unchanged);
* buildings are boxes beside the road. From a camera on the road only two of
  their faces can be seen: the facade, the plane ``X = const`` facing the
  road, and the front end wall, the plane ``Z_world = const`` facing the
  camera. Both are hit at a ``t`` that depends on the column alone, so each
  face costs one 1-D division and one 2-D height test;
* a ray that hits nothing is sky (depth ``inf``); this happens only above the
  horizon;
* sun shadows on the ground are exact too: the ray from a ground hit towards
  the sun is slab-tested against each box (only the band of rows a box's
  shadow can reach is tested).

The image is the average of ``3 x 3`` rays per pixel; the depth is taken from
the centre ray, which passes through the pixel centre exactly. Thin periodic
ground and facade patterns (lane dashes, paving joints, windows) are also
box-filtered analytically over each ray's footprint, so they fade to their
mean colour in the distance instead of aliasing into noise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from engine.assets.camera import GroundPlane
from engine.assets.procedural import SCENE_SALT, check_args, jitter_colour

_SS = 3  # rays per pixel along each axis for the street image
_FAR = 400.0  # buildings are placed up to this far down the road (metres)


@dataclass(frozen=True)
class StreetScene:
    """image (H, W, 3) uint8 RGB; depth (H, W) float32 metres (Z, inf = sky); ground: its camera."""

    image: np.ndarray
    depth: np.ndarray
    ground: GroundPlane


# --------------------------------------------------------------------------
# shared helpers


_NOISE = 256  # side of the per-scene random table the textures are read from


def _noise_table(rng: np.random.Generator) -> np.ndarray:
    """A wrapped random lattice for the textures: (_NOISE, _NOISE, 4) float32.

    Entry ``[j, i]`` holds the values at lattice points (i, j), (i+1, j),
    (i, j+1), (i+1, j+1), so bilinear noise needs one gather, not four.
    """
    base = rng.random((_NOISE, _NOISE), dtype=np.float32)
    right = np.roll(base, -1, axis=1)
    return np.stack([base, right, np.roll(base, -1, axis=0), np.roll(right, -1, axis=0)], axis=-1)


def _corners(table: np.ndarray, ix: np.ndarray, iy: np.ndarray, k: int | np.ndarray) -> np.ndarray:
    """The four lattice values around cell (ix, iy): (N, 4) float32.

    ``k`` picks a decorrelated layer by shifting the lookup, so several
    textures can share one table.
    """
    flat = ((iy + 97 * k) & (_NOISE - 1)) * _NOISE + ((ix + 59 * k) & (_NOISE - 1))
    return table.reshape(-1, 4)[flat]


def _cell(table: np.ndarray, ix: np.ndarray, iy: np.ndarray, k: int | np.ndarray) -> np.ndarray:
    """Random float32 in [0, 1) per integer lattice point (ix, iy)."""
    flat = ((iy + 97 * k) & (_NOISE - 1)) * _NOISE + ((ix + 59 * k) & (_NOISE - 1))
    return table[..., 0].ravel()[flat]


def _lattice(x: np.ndarray) -> np.ndarray:
    """Integer cell index of ``x``; huge coordinates are clamped so casts stay defined."""
    return np.floor(np.clip(x, -1e8, 1e8)).astype(np.int32)


def _smooth_noise(
    table: np.ndarray, x: np.ndarray, y: np.ndarray, k: int | np.ndarray
) -> np.ndarray:
    """Smooth value noise in [0, 1) with unit cells, float32, same shape as ``x`` (1-D)."""
    x = np.clip(x, -1e8, 1e8)
    y = np.clip(y, -1e8, 1e8)
    fx0 = np.floor(x)
    fy0 = np.floor(y)
    fx = x - fx0
    fy = y - fy0
    sx = fx * fx * (3 - 2 * fx)
    sy = fy * fy * (3 - 2 * fy)
    q = _corners(table, fx0.astype(np.int32), fy0.astype(np.int32), k)
    a, b, c, d = q[:, 0], q[:, 1], q[:, 2], q[:, 3]
    return a + (b - a) * sx + (c - a) * sy + (a - b - c + d) * sx * sy


def _box_periodic(
    x: np.ndarray, width: np.ndarray, period: float, start: float, length: float
) -> np.ndarray:
    """Fraction of ``[x - width/2, x + width/2]`` where ``(x - start) mod period < length``.

    This is the periodic stripe pattern box-filtered over each sample's
    footprint: exact near the camera, its mean ``length / period`` far away.
    """

    def integral(y: np.ndarray) -> np.ndarray:
        y = y - start
        n = np.floor(y / period)
        return n * length + np.minimum(y - n * period, length)

    width = np.maximum(width, 1e-9)
    return np.clip((integral(x + 0.5 * width) - integral(x - 0.5 * width)) / width, 0.0, 1.0)


def _box_band(x: np.ndarray, width: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Fraction of ``[x - width/2, x + width/2]`` inside ``[lo, hi]``."""
    width = np.maximum(width, 1e-9)
    overlap = np.minimum(x + 0.5 * width, hi) - np.maximum(x - 0.5 * width, lo)
    return np.clip(overlap / width, 0.0, 1.0)


# --------------------------------------------------------------------------
# street scenes

_SKIES = {
    # name: (horizon colour, zenith colour, ambient share of the light, cloud chance)
    "clear": ((196.0, 216.0, 236.0), (62.0, 118.0, 200.0), 0.45, 0.5),
    "hazy": ((214.0, 218.0, 222.0), (128.0, 162.0, 206.0), 0.55, 0.3),
    "dusk": ((246.0, 168.0, 108.0), (70.0, 72.0, 132.0), 0.6, 0.4),
    "overcast": ((192.0, 194.0, 198.0), (138.0, 143.0, 153.0), 0.85, 1.0),
}
_SKY_WEIGHTS = {"clear": 0.4, "hazy": 0.2, "dusk": 0.15, "overcast": 0.25}

_FACADES = (
    (150.0, 78.0, 58.0),  # brick
    (118.0, 62.0, 48.0),  # dark brick
    (200.0, 186.0, 156.0),  # sandstone
    (226.0, 216.0, 192.0),  # cream render
    (152.0, 152.0, 146.0),  # concrete
    (222.0, 222.0, 216.0),  # white render
    (214.0, 192.0, 128.0),  # ochre
    (140.0, 150.0, 162.0),  # blue-grey
    (198.0, 150.0, 138.0),  # salmon
    (92.0, 92.0, 98.0),  # dark slate
    (176.0, 196.0, 176.0),  # pale green
)

_VERGES = (
    (78.0, 104.0, 54.0),  # grass
    (122.0, 112.0, 96.0),  # gravel
    (150.0, 146.0, 140.0),  # more paving
    (96.0, 86.0, 70.0),  # earth
)


@dataclass(frozen=True)
class _Building:
    """One box beside the road: facade plane at ``x`` (signed), along ``[z0, z1)``."""

    x: float  # lateral position of the facade (negative: left of the camera)
    back: float  # signed lateral extent of the box away from the road
    z0: float
    z1: float
    height: float
    colour: np.ndarray  # (3,) float32 0-255
    floor: float  # storey height, metres
    bay: float  # window spacing along the facade, metres
    win_w: float  # window width as a fraction of a bay
    win_h: float  # window height as a fraction of a storey
    shop: bool  # ground floor has wide shop windows
    lit: float  # fraction of lit windows (dusk only)


@dataclass(frozen=True)
class _Street:
    """Everything random about one scene."""

    ground: GroundPlane
    yaw: float
    cam_x: float
    road_half: float
    lane_w: float
    lanes: int
    centre_double: bool
    line_colour: np.ndarray
    centre_colour: np.ndarray
    edge_lines: bool
    line_w: float
    dash: float
    dash_period: float
    asphalt: np.ndarray
    kerb_w: float
    kerb: np.ndarray
    walk_w: tuple[float, float]  # (left, right) sidewalk widths
    paving: np.ndarray
    tile: float
    verge: np.ndarray
    sky: str
    sky_horizon: np.ndarray
    sky_zenith: np.ndarray
    clouds: float  # cloud cover in [0, 1]; 0 for none
    fog: float  # metres for the fog to reach 63 %
    sun: np.ndarray  # (3,) unit vector towards the light
    ambient: float
    buildings: tuple[_Building, ...]
    noise: np.ndarray  # see _noise_table: the source of every texture


def _draw_buildings(
    rng: np.random.Generator, sign: float, kerb_edge: float, dusk: bool
) -> list[_Building]:
    """Boxes along one side of the road (``sign`` -1 left, +1 right)."""
    if rng.random() < 0.12:  # an open side: a park, a car park, a field
        return []
    setback = rng.uniform(0.0, 4.0) if rng.random() < 0.5 else 0.0
    height_scale = rng.uniform(6.0, 24.0)  # town vs city
    gap_chance = rng.uniform(0.1, 0.7)
    buildings = []
    z = rng.uniform(-40.0, 0.0)
    while z < _FAR:
        length = rng.uniform(8.0, 36.0)
        height = float(np.clip(rng.normal(height_scale, height_scale * 0.35), 4.0, 60.0))
        kind = rng.random()
        if kind < 0.12:  # glass office: mostly windows
            colour = jitter_colour(rng, (70.0, 96.0, 116.0), 0.25)
            bay = rng.uniform(1.5, 2.2)
            win_w = rng.uniform(0.8, 0.92)
            win_h = rng.uniform(0.7, 0.85)
        else:
            colour = jitter_colour(rng, _FACADES[rng.integers(len(_FACADES))], 0.12)
            bay = rng.uniform(1.8, 3.6)
            win_w = rng.uniform(0.3, 0.6)
            win_h = rng.uniform(0.4, 0.62)
        x = sign * (kerb_edge + setback + (rng.uniform(0.0, 2.5) if rng.random() < 0.4 else 0.0))
        buildings.append(
            _Building(
                x=float(x),
                back=float(sign * rng.uniform(8.0, 20.0)),
                z0=float(z),
                z1=float(z + length),
                height=height,
                colour=colour,
                floor=float(rng.uniform(2.8, 3.8)),
                bay=float(bay),
                win_w=float(win_w),
                win_h=float(win_h),
                shop=bool(rng.random() < 0.5),
                lit=float(rng.uniform(0.1, 0.5)) if dusk else 0.0,
            )
        )
        z += length
        if rng.random() < gap_chance:
            z += rng.uniform(3.0, 25.0)
    return buildings


def _draw_street(rng: np.random.Generator, height: int, width: int) -> _Street:
    """All random choices of one scene, in a fixed order (bit-for-bit reproducible)."""
    ground = GroundPlane(
        horizon=float(rng.uniform(0.35, 0.55) * height),
        focal=float(rng.uniform(0.8, 1.3) * width),
        camera_height=float(rng.uniform(1.2, 2.0)),
    )
    yaw = float(rng.uniform(-0.12, 0.12))
    lanes = int(rng.choice([2, 2, 2, 3, 4, 4, 1]))
    lane_w = float(rng.uniform(2.7, 3.7))
    road_half = lanes * lane_w / 2
    lane = rng.integers(lanes)
    cam_x = float(-road_half + lane_w * (lane + 0.5) + rng.uniform(-0.4, 0.4))
    us_style = rng.random() < 0.3
    line_colour = jitter_colour(rng, (232.0, 232.0, 226.0), 0.06)
    centre_colour = jitter_colour(rng, (224.0, 178.0, 44.0), 0.08) if us_style else line_colour
    sky = str(rng.choice(list(_SKY_WEIGHTS), p=list(_SKY_WEIGHTS.values())))
    horizon_rgb, zenith_rgb, ambient, cloud_chance = _SKIES[sky]
    sky_horizon = jitter_colour(rng, horizon_rgb, 0.06)
    sky_zenith = jitter_colour(rng, zenith_rgb, 0.1)
    clouds = float(rng.uniform(0.2, 0.7)) if rng.random() < cloud_chance else 0.0
    if sky == "overcast":
        clouds = float(rng.uniform(0.6, 1.0))
    sun_az = rng.uniform(-np.pi, np.pi)
    sun_el = rng.uniform(0.05, 0.25) if sky == "dusk" else rng.uniform(0.3, 1.1)
    sun = np.array(
        [np.cos(sun_el) * np.sin(sun_az), np.sin(sun_el), np.cos(sun_el) * np.cos(sun_az)]
    )
    walk_w = (float(rng.uniform(1.5, 4.5)), float(rng.uniform(1.5, 4.5)))
    kerb_w = float(rng.uniform(0.12, 0.25))
    asphalt_grey = rng.uniform(52.0, 108.0)
    street = dict(
        ground=ground,
        yaw=yaw,
        cam_x=cam_x,
        road_half=road_half,
        lane_w=lane_w,
        lanes=lanes,
        centre_double=bool(us_style or (lanes >= 4 and rng.random() < 0.5)),
        line_colour=line_colour,
        centre_colour=centre_colour,
        edge_lines=bool(rng.random() < 0.6),
        line_w=float(rng.uniform(0.1, 0.2)),
        dash=float(rng.uniform(2.0, 4.0)),
        dash_period=float(rng.uniform(7.0, 13.0)),
        asphalt=jitter_colour(rng, (asphalt_grey, asphalt_grey, asphalt_grey * 1.03), 0.05),
        kerb_w=kerb_w,
        kerb=jitter_colour(rng, (176.0, 174.0, 168.0), 0.1),
        walk_w=walk_w,
        paving=jitter_colour(rng, (158.0, 150.0, 140.0), 0.15),
        tile=float(rng.uniform(0.4, 1.2)),
        verge=jitter_colour(rng, _VERGES[rng.integers(len(_VERGES))], 0.1),
        sky=sky,
        sky_horizon=sky_horizon,
        sky_zenith=sky_zenith,
        clouds=clouds,
        fog=float(rng.uniform(250.0, 900.0) if sky != "overcast" else rng.uniform(150.0, 450.0)),
        sun=sun,
        ambient=float(ambient),
    )
    buildings = []
    for side, sign in ((0, -1.0), (1, 1.0)):
        kerb_edge = road_half + kerb_w + walk_w[side]
        buildings += _draw_buildings(rng, sign, kerb_edge, sky == "dusk")
    noise = _noise_table(rng)
    return _Street(buildings=tuple(buildings), noise=noise, **street)


@dataclass(frozen=True)
class _Rays:
    """The supersampled ray grid, separable into a row part and a column part."""

    v: np.ndarray  # (R,) float64 row coordinate of each ray
    dy: np.ndarray  # (R,) float64 upward component of the direction
    wdx: np.ndarray  # (C,) float64 world X component (after yaw)
    wdz: np.ndarray  # (C,) float64 world Z component (after yaw)


def _make_rays(street: _Street, height: int, width: int) -> _Rays:
    """Ray directions for ``_SS x _SS`` rays per pixel, with ``Z = 1`` in the camera frame."""
    g = street.ground
    # Sub-ray i of pixel r sits at r + (i + 0.5) / 3; the middle one is r + 0.5 exactly.
    v = (np.arange(height * _SS, dtype=np.float64) + 0.5) / _SS
    u = (np.arange(width * _SS, dtype=np.float64) + 0.5) / _SS
    dx = (u - width / 2) / g.focal
    dy = -(v - g.horizon) / g.focal
    c, s = np.cos(street.yaw), np.sin(street.yaw)
    return _Rays(v=v, dy=dy, wdx=dx * c + s, wdz=c - dx * s)


def _hit_face(
    best: np.ndarray,
    face: np.ndarray,
    face_id: int,
    t_col: np.ndarray,
    ok: np.ndarray,
    dy: np.ndarray,
    cam_h: float,
    top: float,
) -> None:
    """Lower ``best`` to ``t_col`` where the ray meets the face below its top.

    The face is hit at a column-only ``t`` where ``ok``; the 2-D part is the
    height test. Rays that would meet the face below ground have already met
    the ground nearer, so ``t < best`` rejects them.
    """
    cols = np.flatnonzero(ok)
    if cols.size == 0:
        return
    sl = slice(cols[0], cols[-1] + 1)  # the columns a planar face covers are contiguous
    t = np.where(ok[sl], t_col[sl], np.inf)[None, :]
    # Only rows that look up less steeply than the face's top can reach it below the top.
    with np.errstate(divide="ignore"):
        t_min = float(t.min())
    r0 = int(np.searchsorted(-dy, -(top - cam_h) / t_min)) if np.isfinite(t_min) else dy.size
    if r0 >= dy.size:
        return
    y = cam_h + t * dy[r0:, None]
    view = best[r0:, sl]
    hit = (y <= top) & (t < view)
    view[hit] = np.broadcast_to(t, hit.shape)[hit]
    face[r0:, sl][hit] = face_id


def _trace(
    street: _Street, rays: _Rays
) -> tuple[np.ndarray, np.ndarray, list[tuple[_Building, int]]]:
    """Nearest hit of every ray.

    Returns:
        ``(t, face, faces)``: ``t`` (R, C) float64 depth (inf: sky); ``face``
        (R, C) int16, -1 for ground/sky else an index into ``faces``, a list
        of (building, kind) with kind 0 facade, 1 front end wall.
    """
    g = street.ground
    below = rays.v - g.horizon
    with np.errstate(divide="ignore"):
        # Same expression as GroundPlane.ground_depth so centre rays match it bit for bit.
        t_ground = np.where(below > 0, g.focal * g.camera_height / below, np.inf)
    best = np.repeat(t_ground[:, None], rays.wdx.size, axis=1)
    face = np.full(best.shape, -1, dtype=np.int16)
    faces: list[tuple[_Building, int]] = []
    with np.errstate(divide="ignore", invalid="ignore"):
        for b in street.buildings:
            t_col = (b.x - street.cam_x) / rays.wdx
            z = t_col * rays.wdz
            ok = (t_col > 0) & (z >= b.z0) & (z < b.z1)
            _hit_face(best, face, len(faces), t_col, ok, rays.dy, g.camera_height, b.height)
            faces.append((b, 0))
            if b.z0 > 0:
                t_col = b.z0 / rays.wdz
                x = street.cam_x + t_col * rays.wdx
                lo, hi = sorted((b.x, b.x + b.back))
                ok = (t_col > 0) & (x >= lo) & (x <= hi)
                _hit_face(best, face, len(faces), t_col, ok, rays.dy, g.camera_height, b.height)
                faces.append((b, 1))
    return best, face, faces


def _shade(normal: tuple[float, float, float], street: _Street) -> float:
    """Lambert plus ambient, scaled so a surface facing the light is 1.1."""
    lambert = max(0.0, float(np.dot(normal, street.sun)))
    return 1.1 * (street.ambient + (1.0 - street.ambient) * lambert)


def _sun_shadow(street: _Street, rays: _Rays) -> np.ndarray:
    """Which ground hits see the sun: (R, C) float32, 1 lit, 0 in a building's shadow.

    Ground hits depend on the row alone for ``t``, so a building's shadow
    (its box swept along the sun direction down to the ground) can only
    cover a band of rows; each band is slab-tested against the box. Values
    at rays that do not hit the ground are meaningless.
    """
    g = street.ground
    lit = np.ones((rays.v.size, rays.wdx.size), dtype=np.float32)
    lx, ly, lz = (float(c) for c in street.sun)
    if street.ambient >= 0.8:  # overcast: diffuse light casts no visible shadows
        return lit
    lx = lx if abs(lx) > 1e-6 else 1e-6
    lz = lz if abs(lz) > 1e-6 else 1e-6
    below = rays.v - g.horizon
    first = int(np.searchsorted(below, 0.0, side="right"))
    t_row = (g.focal * g.camera_height / below[first:]).astype(np.float32)  # decreasing
    wdx = rays.wdx.astype(np.float32)
    wdz = rays.wdz.astype(np.float32)
    w_lo, w_hi = float(wdz.min()), float(wdz.max())
    for b in street.buildings:
        reach = b.height / ly  # the shadow ray leaves the box's height at this parameter
        z_lo = b.z0 - max(0.0, reach * lz)
        z_hi = b.z1 - min(0.0, reach * lz)
        if z_hi <= 0:
            continue
        t_lo, t_hi = max(z_lo, 0.0) / w_hi, z_hi / w_lo
        r0 = int(np.searchsorted(-t_row, -t_hi))
        r1 = int(np.searchsorted(-t_row, -t_lo, side="right"))
        if r1 <= r0:
            continue
        t = t_row[r0:r1, None]
        x = street.cam_x + t * wdx
        z = t * wdz
        sx0 = (b.x - x) * (1.0 / lx)
        sx1 = (b.x + b.back - x) * (1.0 / lx)
        sz0 = (b.z0 - z) * (1.0 / lz)
        sz1 = (b.z1 - z) * (1.0 / lz)
        enter = np.maximum(np.maximum(np.minimum(sx0, sx1), np.minimum(sz0, sz1)), 0.0)
        leave = np.minimum(np.minimum(np.maximum(sx0, sx1), np.maximum(sz0, sz1)), reach)
        lit[first + r0 : first + r1][enter <= leave] = 0.0
    return lit


@dataclass(frozen=True)
class _Hits:
    """The rays of one surface class, gathered as flat float32 arrays (N,)."""

    t: np.ndarray  # depth along the optical axis
    dy: np.ndarray
    wdx: np.ndarray
    wdz: np.ndarray

    @staticmethod
    def gather(flat: np.ndarray, t: np.ndarray, rays: _Rays) -> _Hits:
        """The rays at flat indices ``flat`` of the (R, C) grid."""
        rows, cols = np.divmod(flat, rays.wdx.size)
        return _Hits(
            t=t.ravel()[flat].astype(np.float32),
            dy=rays.dy.astype(np.float32)[rows],
            wdx=rays.wdx.astype(np.float32)[cols],
            wdz=rays.wdz.astype(np.float32)[cols],
        )


def _sky_colour(street: _Street, h: _Hits) -> np.ndarray:
    """Gradient plus optional clouds; (N, 3) float32."""
    elevation = np.arctan2(h.dy, np.hypot(h.wdx, h.wdz))
    s = np.clip(elevation / 0.9, 0.0, 1.0) ** 0.55
    rgb = street.sky_horizon + (street.sky_zenith - street.sky_horizon) * s[:, None]
    if street.ambient < 0.8:  # a glow around the sun, wide and warm when it is low
        lx, ly, lz = (float(c) for c in street.sun)
        cos_sun = (h.wdx * lx + h.dy * ly + h.wdz * lz) / np.sqrt(h.wdx**2 + h.dy**2 + h.wdz**2)
        low = street.sky == "dusk"
        glow = np.clip(cos_sun, 0.0, 1.0) ** (6.0 if low else 40.0) * (0.6 if low else 0.35)
        warm = np.array([255.0, 206.0, 150.0] if low else [255.0, 250.0, 236.0], dtype=np.float32)
        rgb = rgb + (warm - rgb) * glow[:, None]
    if street.clouds > 0:
        # Clouds live on a plane above the camera (scaled to unit height), seen from below.
        inv = 1.0 / np.maximum(h.dy, 1e-3)
        px = h.wdx * inv
        pz = h.wdz * inv
        n = (
            0.55 * _smooth_noise(street.noise, px * 1.3, pz * 0.5, 1)
            + 0.3 * _smooth_noise(street.noise, px * 3.1, pz * 1.4, 2)
            + 0.15 * _smooth_noise(street.noise, px * 7.0, pz * 3.3, 3)
        )
        cover = np.clip((n - (1.0 - street.clouds)) * 4.0, 0.0, 1.0)
        cover *= np.clip(elevation * 12.0, 0.0, 1.0)  # none near the horizon, where they'd shimmer
        tone = 1.0 if street.sky != "overcast" else 0.86
        cloud = street.sky_horizon * tone - (40.0 * (n - 0.5))[:, None]
        if street.sky == "dusk":
            cloud = cloud * np.array([1.0, 0.82, 0.78], dtype=np.float32)
        rgb = rgb + (np.clip(cloud, 0, 255) - rgb) * cover[:, None]
    return rgb


def _ground_colour(street: _Street, h: _Hits, lit: np.ndarray) -> np.ndarray:
    """Road, markings, kerbs, sidewalks and verges at the ground hits; (N, 3) float32.

    ``lit`` (N,) is 1 where the sun reaches the ground, 0 in shadow.
    """
    g = street.ground
    t = h.t
    x = float(street.cam_x) + t * h.wdx
    z = t * h.wdz
    # How far one sub-ray step moves the hit on the ground, to box-filter stripes.
    dt_row = t * t * float(1.0 / (g.focal * g.camera_height))
    sin_yaw = abs(float(np.sin(street.yaw)))
    fx = (t * float(1.0 / g.focal) + np.abs(h.wdx) * dt_row) * (1.0 / _SS)
    fz = (t * float(sin_yaw / g.focal) + np.abs(h.wdz) * dt_row) * (1.0 / _SS)
    ax = np.abs(x)
    noise = street.noise

    # Asphalt: coarse patches plus grain, the grain fading where it is sub-pixel.
    blotch = _smooth_noise(noise, x * 0.3, z * 0.08, 4) - 0.5
    grain = _cell(noise, _lattice(x * 10.0), _lattice(z * 10.0), 5) - 0.5
    grain *= np.clip(1.0 - 8.0 * np.maximum(fx, fz), 0.0, 1.0)
    shade = 1.0 + 0.22 * blotch + 0.14 * grain
    # Darker wheel tracks in each lane, fading out with distance like the grain.
    lane_pos = (x + float(street.road_half)) * float(1.0 / street.lane_w)
    track = np.clip(np.cos((lane_pos - 0.5) * float(4 * np.pi)), 0.0, 1.0)
    shade -= 0.06 * track * np.clip(1.0 - 2.0 * fx, 0.0, 1.0)
    road = street.asphalt * shade[:, None]

    white = np.zeros_like(t)
    centre = np.zeros_like(t)
    lw = street.line_w
    for k in range(1, street.lanes):
        cx = -street.road_half + k * street.lane_w
        if 2 * k == street.lanes and street.centre_double:
            left = _box_band(x, fx, cx - 1.5 * lw, cx - 0.5 * lw)
            centre = np.maximum(centre, left + _box_band(x, fx, cx + 0.5 * lw, cx + 1.5 * lw))
        else:
            across = _box_band(x, fx, cx - lw / 2, cx + lw / 2)
            dashes = _box_periodic(z, fz, street.dash_period, 0.0, street.dash)
            white = np.maximum(white, across * dashes)
    if street.edge_lines:
        edge = street.road_half - 0.3
        white = np.maximum(white, _box_band(ax, fx, edge - lw / 2, edge + lw / 2))
    road += (street.line_colour - road) * white[:, None]
    road += (street.centre_colour - road) * centre[:, None]

    # Kerb stones with joints, sidewalk tiles with joints, the verge beyond:
    # only for the hits off the road, which are a minority.
    beyond_kerb = _box_band(ax, fx, street.road_half, 1e9)
    off = np.flatnonzero(beyond_kerb > 0)
    x, z, ax, fx, fz = x[off], z[off], ax[off], fx[off], fz[off]
    kerb = street.kerb * (1.0 - 0.35 * _box_periodic(z, fz, 1.0, 0.0, 0.04))[:, None]
    joints = 1.0 - (1.0 - _box_periodic(ax, fx, street.tile, 0.0, 0.03)) * (
        1.0 - _box_periodic(z, fz, street.tile, 0.0, 0.03)
    )
    stain = _smooth_noise(noise, x * 0.7, z * 0.7, 6) - 0.5
    walk = street.paving * (1.0 - 0.3 * joints + 0.14 * stain)[:, None]
    verge = street.verge * (1.0 + 0.4 * stain)[:, None]

    walk_in = street.road_half + street.kerb_w
    verge_in = walk_in + np.where(x > 0, np.float32(street.walk_w[1]), np.float32(street.walk_w[0]))
    beyond_walk = _box_band(ax, fx, walk_in, 1e9)
    beyond_verge = np.clip((ax - verge_in) / np.maximum(fx, 1e-6) + 0.5, 0.0, 1.0)
    rgb = road
    side = road[off] + (kerb - road[off]) * beyond_kerb[off, None]
    side += (walk - side) * beyond_walk[:, None]
    side += (verge - side) * beyond_verge[:, None]
    rgb[off] = side
    sun = (1.0 - street.ambient) * max(0.0, float(street.sun[1]))
    return rgb * (1.1 * (street.ambient + sun * lit))[:, None]


def _face_colour(
    street: _Street, h: _Hits, fid: np.ndarray, faces: list[tuple[_Building, int]]
) -> np.ndarray:
    """Walls and windows at the building hits; (N, 3) float32.

    ``fid`` (N,) int32 indexes ``faces``, whose (building, kind) gives the
    wall's parameters; kind 0 is the facade, 1 the front end wall.
    """
    g = street.ground

    def per_face(fn: Callable[[_Building, int], float]) -> np.ndarray:
        """One value per face, spread to the hits: (N,) float32."""
        return np.array([fn(b, k) for b, k in faces], dtype=np.float32)[fid]

    kind = per_face(lambda b, k: k)
    facade = kind == 0
    x_face = per_face(lambda b, k: b.x)
    z0 = per_face(lambda b, k: b.z0)
    top = per_face(lambda b, k: b.height)
    storey_h = per_face(lambda b, k: b.floor)
    bay = per_face(lambda b, k: b.bay)
    win_w = per_face(lambda b, k: b.win_w)
    win_h = per_face(lambda b, k: b.win_h)
    shop = per_face(lambda b, k: b.shop) > 0
    lit = per_face(lambda b, k: b.lit)
    length = per_face(lambda b, k: (b.z1 - b.z0) if k == 0 else abs(b.back))

    def normal(b: _Building, k: int) -> tuple[float, float, float]:
        # Facades face the road (-sign(x) along X); end walls face the camera (-Z).
        return (-float(np.sign(b.x)), 0.0, 0.0) if k == 0 else (0.0, 0.0, -1.0)

    shade = per_face(lambda b, k: _shade(normal(b, k), street))
    colour = np.array([b.colour for b, _ in faces], dtype=np.float32)[fid]

    t = h.t
    x = float(street.cam_x) + t * h.wdx
    y = float(g.camera_height) + t * h.dy
    u = np.where(facade, t * h.wdz - z0, np.abs(x - x_face))  # metres along the wall
    # Footprint of one sub-ray on the wall: along it (grazing walls stretch) and up it.
    across = np.maximum(np.where(facade, np.abs(h.wdx), np.abs(h.wdz)), 1e-6)
    fu = t / (float(g.focal * _SS) * across)
    fv = t * float(1.0 / (g.focal * _SS))

    # A whole number of window bays, centred, so the wall ends are plain.
    n_bays = np.maximum(np.floor((length - 1.2) / bay), 0)
    uu = (u - (length - n_bays * bay) / 2) / bay  # in bays
    in_bays = (uu >= 0) & (uu < n_bays)
    vv = y / storey_h  # in storeys
    storey = np.floor(vv)
    upper = (storey >= 1) & (y < top - 0.8)
    cu = _box_periodic(uu, fu / bay, 1.0, (1 - win_w) / 2, win_w)
    cv = _box_periodic(vv, fv / storey_h, 1.0, 0.3, win_h)
    win = cu * cv * (in_bays & upper)
    shop_win = _box_periodic(uu, fu / bay, 1.0, 0.06, 0.88) * _box_band(y, fv, 0.45, 0.8 * storey_h)
    win = np.where((storey == 0) & shop & in_bays, shop_win, win)

    # Per-window glass: dark, reflecting some sky; at dusk some windows are lit.
    cell = _cell(street.noise, _lattice(uu) + 31 * fid, storey.astype(np.int32), 8)
    reflect = (0.15 + 0.5 * cell)[:, None]
    dark = np.array([30.0, 38.0, 48.0], dtype=np.float32)
    glass = dark * (1 - reflect) + street.sky_horizon * (0.8 * reflect)
    lit_win = (cell < lit)[:, None] & (win > 0)[:, None]
    lamp = np.array([250.0, 206.0, 120.0], dtype=np.float32)
    glass = np.where(lit_win, lamp / shade[:, None], glass)  # lamps are not dimmed by shading

    # Wall: subtle dirt, a darker plinth, storey bands and a lighter parapet.
    dirt = _smooth_noise(street.noise, u * 0.4, y * 0.4, 9 + fid) - 0.5
    band = _box_periodic(vv, fv / storey_h, 1.0, 0.0, 0.05) * (storey >= 1)
    wall_f = 1.0 + 0.14 * dirt - 0.14 * band - 0.22 * _box_band(y, fv, -1.0, 0.4)
    wall_f += 0.1 * _box_band(y, fv, top - 0.5, top + 1.0)
    rgb = colour * wall_f[:, None]
    rgb += (glass - rgb) * win[:, None]
    return rgb * shade[:, None]


def street_scene(seed: int, index: int, height: int = 224, width: int = 224) -> StreetScene:
    """Render procedural street background number ``index`` of ``seed``.

    A level camera (height 1.2-2 m, horizon at 35-55 % of the image height,
    focal 0.8-1.3 x width, yawed up to 7 degrees) stands in a lane of a
    straight road, with buildings, sidewalks and sky drawn from the
    ``(seed, index)`` stream.

    Args:
        seed: non-negative master seed.
        index: non-negative scene number; scenes are independent of each other.
        height: image height in pixels, at least 8.
        width: image width in pixels, at least 8.

    Returns:
        A :class:`StreetScene`: ``image`` (height, width, 3) uint8 RGB,
        ``depth`` (height, width) float32 metres along the optical axis of the
        surface at each pixel centre (``inf`` for sky), and ``ground``, the
        camera; unoccluded ground pixels have exactly
        ``ground.ground_depth(row)`` (rounded to float32).

    Raises:
        ValueError: a size below 8 or a negative seed/index.
        TypeError: a non-integer argument.
    """
    seed, index = check_args(seed, index, height=height, width=width)
    rng = np.random.default_rng([seed, index, SCENE_SALT])
    street = _draw_street(rng, height, width)
    rays = _make_rays(street, height, width)
    t, face, faces = _trace(street, rays)

    rgb = np.empty((t.size, 3), dtype=np.float32)
    flat_face = face.ravel()
    sky = np.flatnonzero(np.isinf(t))
    ground = np.flatnonzero((flat_face < 0) & np.isfinite(t.ravel()))
    walls = np.flatnonzero(flat_face >= 0)
    rgb[sky] = _sky_colour(street, _Hits.gather(sky, t, rays))
    hits = _Hits.gather(ground, t, rays)
    lit = _sun_shadow(street, rays).ravel()[ground]
    rgb[ground] = _fog(street, _ground_colour(street, hits, lit), hits.t)
    if faces:
        hits = _Hits.gather(walls, t, rays)
        fid = flat_face[walls].astype(np.int32)
        rgb[walls] = _fog(street, _face_colour(street, hits, fid, faces), hits.t)

    # Box-filter the ray grid down to pixels (strided sums beat a 5-D mean).
    rgb = rgb.reshape(height, _SS, width * _SS, 3).sum(axis=1)
    image = rgb.reshape(height, width, _SS, 3).sum(axis=2) * np.float32(1.0 / _SS**2)
    image += rng.normal(0.0, 1.2, size=image.shape).astype(np.float32)  # a little sensor noise
    image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    centre = _SS // 2
    depth = t[centre::_SS, centre::_SS].astype(np.float32)
    return StreetScene(image=image, depth=depth, ground=street.ground)


def _fog(street: _Street, rgb: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Aerial perspective: surfaces fade into the horizon colour with distance."""
    keep = np.exp(t * np.float32(-1.0 / street.fog))[:, None]
    return street.sky_horizon + (rgb - street.sky_horizon) * keep
