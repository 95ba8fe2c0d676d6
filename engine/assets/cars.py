"""Procedural car cut-outs for the built-in foregrounds.

Car sprites are drawn with signed distance functions in units of the sprite
height: each shape is painted with its exact-to-a-pixel coverage
``clip(0.5 - sdf / pixel, 0, 1)``, which gives the same soft edges as dense
supersampling at a fraction of the cost. Colours are accumulated
premultiplied and divided out at the end, so the RGB of a semi-transparent
edge pixel is the colour of the car there (straight alpha), not a blend with
the transparent background.
"""

from __future__ import annotations

import numpy as np

from engine.assets.procedural import CAR_SALT, check_args, jitter_colour

_CAR_COLOURS = (
    (176.0, 24.0, 28.0),  # red
    (120.0, 16.0, 24.0),  # dark red
    (28.0, 62.0, 150.0),  # blue
    (22.0, 34.0, 72.0),  # navy
    (182.0, 186.0, 192.0),  # silver
    (120.0, 124.0, 130.0),  # grey
    (234.0, 234.0, 230.0),  # white
    (24.0, 24.0, 28.0),  # black
    (226.0, 186.0, 36.0),  # yellow
    (30.0, 96.0, 60.0),  # green
    (214.0, 98.0, 28.0),  # orange
    (170.0, 150.0, 120.0),  # beige
    (70.0, 130.0, 190.0),  # light blue
)
_CAR_WEIGHTS = (3, 1, 2, 2, 4, 3, 4, 4, 1, 1, 1, 1, 1)  # silver, white, black and grey dominate
# Side-view greenhouse: rear base, rear roof, front roof, front base (fractions of the length).
_CABINS = {
    "sedan": (0.12, 0.3, 0.58, 0.76),
    "hatch": (0.04, 0.13, 0.55, 0.74),
    "suv": (0.03, 0.07, 0.6, 0.74),
}


def _cov(sdf: np.ndarray, px: float) -> np.ndarray:
    """Pixel coverage of the shape ``sdf < 0`` (sdf in the same units as ``px``)."""
    return np.clip(0.5 - sdf / px, 0.0, 1.0)


def _sd_circle(x: np.ndarray, y: np.ndarray, cx: float, cy: float, r: float) -> np.ndarray:
    """Signed distance to the circle of radius ``r`` around (cx, cy)."""
    return np.hypot(x - cx, y - cy) - r


def _sd_box(
    x: np.ndarray,
    y: np.ndarray,
    x0: float,
    y0: float,
    x1: float,
    y1: float,
    r: float | tuple[float, float, float, float] = 0.0,
) -> np.ndarray:
    """Rounded box ``[x0, x1] x [y0, y1]``.

    ``r`` is one corner radius or (top-left, top-right, bottom-left, bottom-right).
    """
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    hx, hy = (x1 - x0) / 2, (y1 - y0) / 2
    if isinstance(r, tuple):
        tl, tr, bl, br = (np.float32(v) for v in r)
        rr = np.where(x > cx, np.where(y > cy, tr, br), np.where(y > cy, tl, bl))
    else:
        rr = r
    qx = np.abs(x - cx) - hx + rr
    qy = np.abs(y - cy) - hy + rr
    return np.hypot(np.maximum(qx, 0), np.maximum(qy, 0)) + np.minimum(np.maximum(qx, qy), 0) - rr


def _sd_convex(x: np.ndarray, y: np.ndarray, pts: list[tuple[float, float]]) -> np.ndarray:
    """Exact signed distance to a convex polygon with counter-clockwise vertices."""
    shape = np.broadcast_shapes(x.shape, y.shape)
    inside = np.full(shape, -np.inf, dtype=np.float32)
    dist = np.full(shape, np.inf, dtype=np.float32)
    for (ax, ay), (bx, by) in zip(pts, pts[1:] + pts[:1]):
        ex, ey = bx - ax, by - ay
        ln = float(np.hypot(ex, ey))
        px, py = x - ax, y - ay
        # Outward normal of a CCW edge is (ey, -ex).
        inside = np.maximum(inside, (px * ey - py * ex) / ln)
        h = np.clip((px * ex + py * ey) / (ln * ln), 0.0, 1.0)
        dist = np.minimum(dist, np.hypot(px - h * ex, py - h * ey))
    return np.where(inside > 0, dist, inside)


class _Painter:
    """Premultiplied layer stack over a fixed (h, w) grid, float32."""

    def __init__(self, shape: tuple[int, int], px: float) -> None:
        self.px = px
        self.rgb = np.zeros(shape + (3,), dtype=np.float32)
        self.a = np.zeros(shape, dtype=np.float32)

    def paint(self, sdf: np.ndarray, colour: np.ndarray, opacity: float = 1.0) -> None:
        """Paint ``colour`` (0-255, broadcastable to (h, w, 3)) over the shape ``sdf < 0``."""
        a = _cov(np.broadcast_to(sdf, self.a.shape), self.px) * np.float32(opacity)
        # Only the shape's bounding box changes: most layers are small.
        rows = np.flatnonzero(a.any(axis=1))
        if rows.size == 0:
            return
        cols = np.flatnonzero(a.any(axis=0))
        box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        a = a[box]
        colour = np.broadcast_to(np.asarray(colour, dtype=np.float32), self.rgb.shape)[box]
        self.rgb[box] += (colour - self.rgb[box]) * a[..., None]
        self.a[box] += (1 - self.a[box]) * a


def _body_shading(
    y: np.ndarray, lo: float, hi: float, colour: np.ndarray, gloss: float
) -> np.ndarray:
    """Body paint darkening downwards with a specular stripe near ``hi``; (h, w, 3)."""
    rel = np.clip((y - lo) / max(hi - lo, 1e-6), 0.0, 1.2)
    f = 0.62 + 0.38 * rel
    stripe = np.exp(-(((rel - 0.82) / 0.07) ** 2)) * gloss
    base = colour * f[..., None]
    return base + (255.0 - base) * stripe[..., None] * 0.55


def _glass(y: np.ndarray, x: np.ndarray, lo: float, hi: float, tint: np.ndarray) -> np.ndarray:
    """Dark glass reflecting a brighter sky at the top and a diagonal glint; (h, w, 3)."""
    rel = np.clip((y - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
    glint = np.clip(1.0 - np.abs(((x * 1.4 + y) * 3.0) % 2.0 - 1.0) * 6.0, 0.0, 1.0) * 0.18
    base = tint * (0.55 + 0.6 * rel[..., None] ** 2)
    return base + (255.0 - base) * glint[..., None]


def _draw_side(
    rng: np.random.Generator,
    x: np.ndarray,
    y: np.ndarray,
    aspect: float,
    p: _Painter,
    paint: np.ndarray,
    gloss: float,
) -> np.ndarray:
    """Side view facing +x; returns the silhouette sdf (units of the height)."""
    A = aspect
    style = rng.choice(["sedan", "hatch", "suv"], p=[0.45, 0.3, 0.25])
    R = rng.uniform(0.2, 0.24) if style != "suv" else rng.uniform(0.22, 0.27)
    wy = R - 0.015  # tyres squash: the contact patch is flat on the bottom edge
    xr = max(A * rng.uniform(0.17, 0.22), R * 1.2 + 0.05)
    xf = min(A * rng.uniform(0.78, 0.83), A - R * 1.2 - 0.05)
    sill = R * rng.uniform(0.45, 0.65)
    belt = rng.uniform(0.5, 0.6) if style != "suv" else rng.uniform(0.56, 0.64)
    nose = rng.uniform(0.12, 0.2)
    body = _sd_box(x, y, -0.03, sill, A + 0.03, belt, (rng.uniform(0.06, 0.12), nose, 0.05, 0.05))
    # Greenhouse profile as fractions of the length: rear base, rear roof, front roof, front base.
    jitter = rng.uniform(-0.025, 0.025, size=4)
    if style == "suv":
        jitter[:2] /= 2  # an upright tailgate stays upright
    ar, br, bf, af = (float(v) for v in (np.array(_CABINS[style]) + jitter) * A)
    ar = max(ar, 0.03)
    roof_r = rng.uniform(0.05, 0.1)
    cabin = _rounded_cabin(x, y, (ar, af), (br, bf), belt, roof_r)
    tyres = np.minimum(_sd_circle(x, y, xr, wy, R), _sd_circle(x, y, xf, wy, R))
    wells = np.minimum(_sd_circle(x, y, xr, wy, R * 1.13), _sd_circle(x, y, xf, wy, R * 1.13))
    shape = np.minimum(np.minimum(body, cabin), tyres)

    p.paint(cabin, _body_shading(y, belt, 1.0, paint, gloss * 0.6) * 1.05)
    p.paint(body, _body_shading(y, sill, belt, paint, gloss))
    # Windows: the cabin inset by the pillar width, above the belt line, split by pillars.
    pillar = rng.uniform(0.03, 0.05)
    windows = np.maximum(cabin + pillar, -(y - belt - 0.025))
    tint = jitter_colour(rng, (40.0, 48.0, 60.0), 0.2)
    p.paint(windows, _glass(y, x, belt, 1.0, tint))
    trim = np.array([22.0, 22.0, 24.0]) if rng.random() < 0.6 else paint * 0.8
    xb = (br + af) / 2 + rng.uniform(-0.03, 0.03) * A
    p.paint(np.maximum(windows, _sd_box(x, y, xb - 0.022, 0, xb + 0.022, 2)), trim)
    if style == "suv":
        xc = br + (xb - br) * rng.uniform(0.5, 0.7)
        p.paint(np.maximum(windows, _sd_box(x, y, xc - 0.03, 0, xc + 0.03, 2)), trim)
    # Door seams and handles.
    line_w = max(0.006, 0.5 * p.px)
    seams = [xb]
    if style != "hatch" or rng.random() < 0.5:
        seams.append(xr + R * 1.25)
    seams.append(min(af + 0.02, xf - R * 1.2))
    seam_col = paint * 0.45
    for sx in seams:
        seam = _sd_box(x, y, sx - line_w, sill + 0.03, sx + line_w, belt + 0.01)
        p.paint(np.maximum(body, seam), seam_col)
    # Handles sit at the rear edge of each door (the car faces +x).
    for sx in seams[:-1]:
        hx = sx + 0.05 * A
        handle = _sd_box(x, y, hx - 0.035, belt - 0.07, hx + 0.035, belt - 0.052, 0.008)
        p.paint(handle, paint * 0.55)
    # Dark rocker panel and bumpers.
    p.paint(np.maximum(body, -(sill + 0.045 - y)), np.array([30.0, 30.0, 32.0]), 0.85)
    # Lights.
    head = _sd_box(x, y, A - 0.1, belt - 0.09, A + 0.05, belt - 0.035, 0.02)
    p.paint(head, np.array([238.0, 236.0, 220.0]))
    tail = _sd_box(x, y, -0.05, belt - 0.1, 0.07, belt - 0.035, 0.015)
    p.paint(tail, np.array([190.0, 24.0, 22.0]))
    # Wheels: dark wells, tyres, rims with spokes and a hub.
    p.paint(np.maximum(wells, body), np.array([14.0, 14.0, 16.0]))
    if rng.random() < 0.7:
        rim_col = jitter_colour(rng, (190.0, 192.0, 196.0), 0.1)  # alloy
    else:
        rim_col = np.array([64.0, 64.0, 68.0], dtype=np.float32)  # dark steel
    spokes = int(rng.integers(5, 8))
    rim_r = R * rng.uniform(0.55, 0.68)
    for wx in (xr, xf):
        d = np.hypot(x - wx, y - wy)
        p.paint(d - R, np.array([30.0, 30.0, 32.0]) * (1.2 - 0.4 * np.clip(d / R, 0, 1))[..., None])
        p.paint(d - rim_r, rim_col)
        theta = np.arctan2(y - wy, x - wx)
        gap = np.cos(spokes * theta) - 0.35  # gaps between spokes read as dark
        ring = np.maximum(d - rim_r * 0.85, R * 0.22 - d)
        p.paint(np.maximum(ring, -gap * R * 0.3), rim_col * 0.35)
        p.paint(d - R * 0.12, rim_col * 0.7)
    return shape


def _rounded_cabin(
    x: np.ndarray,
    y: np.ndarray,
    base: tuple[float, float],
    roof: tuple[float, float],
    belt: float,
    r: float,
) -> np.ndarray:
    """Greenhouse trapezoid from ``base`` (x at the belt line) to ``roof`` (x at the top).

    The top edge lies just above the canvas so the crop's first row is solid;
    the sides are extended below the belt, inside the body, so the rounded
    bottom corners never show as notches.
    """
    top, low = 1.02, belt - 0.15
    (b0, b1), (r0, r1) = base, roof
    k0 = (r0 - b0) / (top - belt)
    k1 = (r1 - b1) / (top - belt)
    pts = [(b0 - k0 * (belt - low), low), (b1 - k1 * (belt - low), low), (r1, top), (r0, top)]
    return _sd_convex(x, y, _shrink(pts, r)) - r


def _shrink(pts: list[tuple[float, float]], r: float) -> list[tuple[float, float]]:
    """Move every edge of a CCW convex polygon inwards by ``r`` (its vertices follow)."""
    n = len(pts)
    lines = []
    for i in range(n):
        (ax, ay), (bx, by) = pts[i], pts[(i + 1) % n]
        ex, ey = bx - ax, by - ay
        ln = np.hypot(ex, ey)
        nx, ny = -ey / ln, ex / ln  # inward normal of a CCW edge
        lines.append((ax + nx * r, ay + ny * r, ex, ey))
    out = []
    for i in range(n):
        ax, ay, ex, ey = lines[i - 1]
        bx, by, fx, fy = lines[i]
        den = ex * fy - ey * fx
        s = ((bx - ax) * fy - (by - ay) * fx) / den
        out.append((float(ax + s * ex), float(ay + s * ey)))
    return out


def _draw_end(
    rng: np.random.Generator,
    x: np.ndarray,
    y: np.ndarray,
    aspect: float,
    p: _Painter,
    paint: np.ndarray,
    gloss: float,
) -> np.ndarray:
    """Rear or front view; returns the silhouette sdf (units of the height)."""
    A = aspect
    rear = rng.random() < 0.6
    belt = rng.uniform(0.52, 0.62)
    tw = A * rng.uniform(0.12, 0.16)
    ty = rng.uniform(0.2, 0.26)
    tyres = np.minimum(
        _sd_box(x, y, A * 0.04, -0.05, A * 0.04 + tw, ty, 0.03),
        _sd_box(x, y, A * 0.96 - tw, -0.05, A * 0.96, ty, 0.03),
    )
    low = rng.uniform(0.1, 0.14)
    body = _sd_box(x, y, -0.03, low, A + 0.03, belt, (0.08, 0.08, 0.04, 0.04))
    inset_b = A * rng.uniform(0.05, 0.1)
    inset_t = A * rng.uniform(0.17, 0.25)
    roof_r = rng.uniform(0.05, 0.1)
    cabin = _rounded_cabin(x, y, (inset_b, A - inset_b), (inset_t, A - inset_t), belt, roof_r)
    under = _sd_box(x, y, A * 0.08, 0.04, A * 0.92, low + 0.05)
    shape = np.minimum(np.minimum(np.minimum(body, cabin), tyres), under)

    p.paint(tyres, np.array([26.0, 26.0, 28.0]))
    p.paint(under, np.array([20.0, 20.0, 22.0]))
    p.paint(cabin, _body_shading(y, belt, 1.0, paint, gloss * 0.5) * 1.05)
    p.paint(body, _body_shading(y, low, belt, paint, gloss))
    pillar = rng.uniform(0.04, 0.07) if rear else rng.uniform(0.03, 0.05)
    window = np.maximum(cabin + pillar, -(y - belt - 0.04))
    tint = jitter_colour(rng, (40.0, 48.0, 60.0), 0.2)
    p.paint(window, _glass(y, x, belt, 1.0, tint))
    # Bumper band.
    p.paint(np.maximum(body, -(low + 0.07 - y)), paint * 0.5, 0.8)
    lw = A * rng.uniform(0.14, 0.22)
    lh0, lh1 = belt - rng.uniform(0.14, 0.2), belt - 0.035
    light_col = np.array([196.0, 22.0, 24.0]) if rear else np.array([236.0, 234.0, 218.0])
    for x0, x1 in ((-0.05, A * 0.03 + lw), (A * 0.97 - lw, A + 0.05)):
        lights = _sd_box(x, y, x0, lh0, x1, lh1, 0.02)
        p.paint(lights, light_col)
        p.paint(lights + 0.012, np.minimum(light_col * 1.25 + 30, 255))
    plate_w, plate_h = A * rng.uniform(0.26, 0.32), 0.075
    py = rng.uniform(0.24, 0.32) if rear else low + 0.08
    plate_col = np.array([240.0, 240.0, 236.0] if rng.random() < 0.7 else [244.0, 206.0, 40.0])
    px0, px1 = A / 2 - plate_w / 2, A / 2 + plate_w / 2
    plate = _sd_box(x, y, px0, py - plate_h / 2, px1, py + plate_h / 2, 0.008)
    p.paint(plate, np.array([30.0, 30.0, 30.0]))
    p.paint(plate + 0.006, plate_col)
    n_chars = 6
    cw = (plate_w - 0.04) / n_chars
    for i in range(n_chars):
        cx = px0 + 0.02 + cw * (i + 0.5)
        char = _sd_box(x, y, cx - cw * 0.3, py - plate_h * 0.28, cx + cw * 0.3, py + plate_h * 0.28)
        p.paint(char, np.array([30.0, 30.0, 34.0]))
    if rear:
        # Boot lid seam above the plate and a badge.
        p.paint(np.maximum(body, np.abs(y - (belt - 0.045)) - max(0.004, 0.4 * p.px)), paint * 0.45)
        p.paint(_sd_circle(x, y, A / 2, belt - 0.1, 0.025), np.array([200.0, 200.0, 205.0]))
    else:
        gw = A * rng.uniform(0.25, 0.4)
        grille = _sd_box(x, y, A / 2 - gw / 2, py + 0.06, A / 2 + gw / 2, lh1 - 0.01, 0.02)
        p.paint(grille, np.array([26.0, 26.0, 28.0]))
        bars = np.abs(((y - py) / 0.03) % 1.0 - 0.5) * 0.03 - 0.005
        p.paint(np.maximum(grille + 0.01, bars), np.array([90.0, 90.0, 95.0]))
    return shape


def car_sprite(seed: int, index: int, height: int = 224) -> np.ndarray:
    """Render procedural car cut-out number ``index`` of ``seed``.

    About 60 % are side views (width/height 1.8-2.8: body, cabin with
    windows, two wheels, lights, door seams), the rest rear or front views
    (1.1-1.5: rear window or windscreen, two lamps, number plate, tyres at the
    bottom corners), in a random paint colour with shading.

    Args:
        seed: non-negative master seed.
        index: non-negative sprite number; sprites are independent of each other.
        height: sprite height in pixels, at least 8.

    Returns:
        (height, w, 4) uint8 RGBA with straight (not premultiplied) alpha,
        tightly cropped: the first and last rows and columns each contain a
        pixel with alpha > 0, and the bottom row is where the tyres touch the
        ground. Edges are anti-aliased; RGB is 0 where alpha is 0.

    Raises:
        ValueError: a height below 8 or a negative seed/index.
        TypeError: a non-integer argument.
    """
    seed, index = check_args(seed, index, height=height)
    rng = np.random.default_rng([seed, index, CAR_SALT])
    side = rng.random() < 0.6
    aspect = rng.uniform(1.8, 2.8) if side else rng.uniform(1.1, 1.5)
    width = max(int(round(aspect * height)), 1)
    aspect = width / height  # the canvas is exactly [0, aspect] x [0, 1]
    px = 1.0 / height
    # Pixel centres in units of the height, y up from the ground; (1, w) and (h, 1).
    x = ((np.arange(width, dtype=np.float32) + 0.5) * np.float32(px))[None, :]
    y = (1 - (np.arange(height, dtype=np.float32) + 0.5) * np.float32(px))[:, None]
    weights = np.array(_CAR_WEIGHTS, dtype=np.float64)
    colour = _CAR_COLOURS[rng.choice(len(_CAR_COLOURS), p=weights / weights.sum())]
    paint = jitter_colour(rng, colour, 0.1)
    gloss = rng.uniform(0.3, 0.9)
    painter = _Painter((height, width), px)
    draw = _draw_side if side else _draw_end
    shape = draw(rng, x, y, aspect, painter, paint, gloss)
    if side and rng.random() < 0.5:  # face left as often as right
        shape = shape[:, ::-1]
        painter.rgb = painter.rgb[:, ::-1]
        painter.a = painter.a[:, ::-1]

    alpha = np.rint(_cov(shape, px) * 255.0)
    rgb = painter.rgb / np.maximum(painter.a, 1e-6)[..., None]
    rgb = np.where(alpha[..., None] > 0, np.clip(np.rint(rgb), 0, 255), 0)
    return np.concatenate([rgb, alpha[..., None]], axis=-1).astype(np.uint8)
