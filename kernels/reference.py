"""Plain NumPy references for the kernels: slow, obvious, used by the tests."""

from __future__ import annotations

import numpy as np

from kernels.placement import visible_window


def composite_reference(
    bg_images: np.ndarray,
    bg_depth: np.ndarray,
    atlas: np.ndarray,
    table: np.ndarray,
    threshold: int,
    occlusion: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Reference for :func:`kernels.composite.composite_batch`.

    Same arguments (without outputs). Returns ``images (B, H, W, 3) uint8``,
    ``masks (B, H, W) uint8``, ``depth (B, H, W) uint16`` (float16 bits) and
    ``alpha (B, H, W) uint8``, computed in float64 with ``floor(v + 0.5)``
    rounding, one sample at a time.
    """
    n = len(table)
    _, height, width, _ = bg_images.shape
    images = np.empty((n, height, width, 3), np.uint8)
    masks = np.zeros((n, height, width), np.uint8)
    depth = np.empty((n, height, width), np.uint16)
    alpha_out = np.zeros((n, height, width), np.uint8)
    for b, row in enumerate(table):
        bg, off, x, y, h, w, flip, d = (int(v) for v in row)
        fg = atlas[off : off + h * w * 4].reshape(h, w, 4).astype(np.float64)
        if flip:
            fg = fg[:, ::-1]
        out, part = visible_window(x, y, h, w, height, width)
        fg = fg[part]
        image = bg_images[bg].astype(np.float64)
        if occlusion:  # hidden where the background is nearer (compared as float16 values)
            behind = bg_depth[bg][out]
            near = (behind > 0) & (behind.view(np.float16) < np.uint16(d).view(np.float16))
            fg[near, 3] = 0
        a = fg[..., 3:4] / 255.0
        region = image[out]
        image[out] = np.floor(fg[..., :3] * a + region * (1 - a) + 0.5)
        images[b] = image.astype(np.uint8)
        alpha_out[b][out] = fg[..., 3]
        masks[b] = np.where(alpha_out[b] > threshold, 255, 0)
        depth[b] = np.where(masks[b] > 0, d, bg_depth[bg])
    return images, masks, depth, alpha_out


def composite_objects_reference(
    bg_images: np.ndarray,
    bg_depth: np.ndarray,
    atlas: np.ndarray,
    table: np.ndarray,
    offset: np.ndarray,
    threshold: int,
    occlusion: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Reference for :func:`kernels.composite.composite_objects_batch`, from a
    table in *any* order within a sample: it sorts each sample's objects far to
    near itself (by float16 depth value, ties by instance id) and pastes them one
    by one. ``table``: ``(M, 9) int64``; returns images, masks, depth (float16
    bits), instances ``(B, H, W) uint16`` and the union coverage ``alpha``.
    """
    n = len(offset) - 1
    _, height, width, _ = bg_images.shape
    images = np.empty((n, height, width, 3), np.uint8)
    masks = np.zeros((n, height, width), np.uint8)
    depth = np.empty((n, height, width), np.uint16)
    ids = np.zeros((n, height, width), np.uint16)
    cover = np.zeros((n, height, width), np.uint8)
    for b in range(n):
        rows = [[int(v) for v in r] for r in table[offset[b] : offset[b + 1]]]
        rows.sort(key=lambda r: (-float(np.uint16(r[7]).view(np.float16)), r[8]))
        bg = rows[0][0]
        image = bg_images[bg].astype(np.float64)
        depth[b] = bg_depth[bg]
        c = np.zeros((height, width), np.float64)
        for _, off, x, y, h, w, flip, d, k in rows:
            fg = atlas[off : off + h * w * 4].reshape(h, w, 4).astype(np.float64)
            if flip:
                fg = fg[:, ::-1]
            out, part = visible_window(x, y, h, w, height, width)
            fg = fg[part]
            if occlusion:
                behind = bg_depth[bg][out]
                fg[(behind > 0) & (behind.view(np.float16) < np.uint16(d).view(np.float16)), 3] = 0
            a = fg[..., 3:4] / 255.0
            region = image[out]
            image[out] = np.floor(fg[..., :3] * a + region * (1 - a) + 0.5)
            c[out] = np.floor(fg[..., 3] + c[out] * (1 - a[..., 0]) + 0.5)
            shown = fg[..., 3] > threshold
            masks[b][out][shown] = 255
            depth[b][out][shown] = d
            ids[b][out][shown] = k
        images[b] = image.astype(np.uint8)
        cover[b] = c.astype(np.uint8)
    return images, masks, depth, ids, cover


def jpeg_reference(image: np.ndarray, quality: int) -> bytes:
    """Reference for :func:`kernels.jpeg.encode_jpeg_batch` on one ``(H, W, 3) uint8``
    image: the same file, built with whole-block NumPy matrix products (the full
    8×8 DCT, no even/odd halves) and a bit string in plain Python."""
    from kernels.jpeg import ZIGZAG, blocks_per_side, jpeg_tables

    height, width, _ = image.shape
    t = jpeg_tables(height, width, quality)
    rows, cols = blocks_per_side(height), blocks_per_side(width)
    padded = np.pad(image.astype(np.int64), ((0, 8 * rows - height), (0, 8 * cols - width), (0, 0)), mode="edge")
    r, g, b = padded[..., 0], padded[..., 1], padded[..., 2]
    planes = [
        ((19595 * r + 38470 * g + 7471 * b + 32768) >> 16) - 128,
        ((-11059 * r - 21709 * g + 32768 * b + 8388608 + 32767) >> 16) - 128,
        ((32768 * r - 27439 * g - 5329 * b + 8388608 + 32767) >> 16) - 128,
    ]
    m = t.dct.astype(np.int64)

    def coefficients(block: np.ndarray, table: int) -> np.ndarray:
        f = m @ ((block @ m.T + 512) >> 10)
        q = t.quant[table].reshape(8, 8).astype(np.int64) << 16
        return (np.sign(f) * ((np.abs(f) + (q >> 1)) // q)).reshape(64)[ZIGZAG]

    def code(table_code: np.ndarray, table_len: np.ndarray, tab: int, symbol: int) -> str:
        return format(int(table_code[tab, symbol]), f"0{int(table_len[tab, symbol])}b")

    def amplitude(v: int) -> tuple[int, str]:
        size = int(abs(v)).bit_length()
        return size, (format(v if v >= 0 else v + (1 << size) - 1, f"0{size}b") if size else "")

    out = bytearray(t.header)
    for row in range(rows):
        bits: list[str] = []
        pred = [0, 0, 0]
        for col in range(cols):
            for comp in range(3):
                tab = 0 if comp == 0 else 1
                z = coefficients(planes[comp][8 * row : 8 * row + 8, 8 * col : 8 * col + 8], tab)
                size, extra = amplitude(int(z[0]) - pred[comp])
                pred[comp] = int(z[0])
                bits += [code(t.dc_code, t.dc_len, tab, size), extra]
                run = 0
                for v in z[1:]:
                    if v == 0:
                        run += 1
                        continue
                    while run > 15:
                        bits.append(code(t.ac_code, t.ac_len, tab, 0xF0))
                        run -= 16
                    size, extra = amplitude(int(v))
                    bits += [code(t.ac_code, t.ac_len, tab, (run << 4) | size), extra]
                    run = 0
                if run:
                    bits.append(code(t.ac_code, t.ac_len, tab, 0))
        stream = "".join(bits)
        stream += "1" * (-len(stream) % 8)
        for k in range(0, len(stream), 8):
            byte = int(stream[k : k + 8], 2)
            out += bytes([byte, 0]) if byte == 0xFF else bytes([byte])
        out += bytes([0xFF, 0xD9 if row == rows - 1 else 0xD0 + row % 8])
    return bytes(out)
