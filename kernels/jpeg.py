"""Baseline JPEG encoding of ``uint8`` RGB batches, one restart interval per MCU row.

A JPEG file's entropy-coded data is one long bit stream, so an encoder is
serial within an image, and encoders that take one image at a time (libjpeg,
torchvision's nvJPEG) pay their set-up and synchronisations once per image.
Restart markers cut that stream into independent segments: after each marker
the DC predictions start again from zero and the bits restart on a byte
boundary. With one restart interval per row of 8×8 blocks, a 224×224 image
is 28 segments that can be coded at once; a batch of 2,048 images is 57,344
(one CUDA thread or one CPU task each). Every baseline decoder reads restart
markers (libjpeg, libjpeg-turbo, nvJPEG, DALI, browsers).

The format written (what :func:`jpeg_header` announces):

- 8-bit baseline (SOF0), YCbCr (JFIF), full-resolution colour (4:4:4: with
  4:2:0, quality 95 decodes to only ~39 dB on the composites' colour edges);
- the IJG quality scaling of the Annex K quantisation tables (the tables
  libjpeg and Pillow write for the same quality) and the Annex K Huffman tables;
- restart interval = blocks per row; the image edge replicated into partial blocks.

All arithmetic is integer (libjpeg's colour constants, a fixed-point DCT), so
the CPU functions here and their CUDA twins in :mod:`kernels.jpeg_cuda` write
the same bytes. The per-segment function :func:`encode_segment` is plain
Python compiled for both targets by :func:`build_segment_encoder`.

Segments are written as little-endian ``uint32`` words (4 bytes at a time,
fewer stores on the GPU), into a fixed capacity per segment; a segment that
does not fit reports its length anyway, so the caller can code it again with
room (only for near-random pixels at high quality).
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

from kernels.checks import check_array

#: natural (row-major) index of each zig-zag position
ZIGZAG = np.array(sorted(range(64), key=lambda k: (k // 8 + k % 8, (k // 8) if (k // 8 + k % 8) % 2 else (k % 8))),
                  dtype=np.int32)

# Annex K.1: luminance and chrominance quantisation tables at quality 50 (natural order).
_LUMA_QUANT = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], dtype=np.int32)
_CHROMA_QUANT = np.full(64, 99, dtype=np.int32)
_CHROMA_QUANT[[0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 24, 25]] = [17, 18, 24, 47, 18, 21, 26, 66, 24, 26, 56, 47, 66]

# Annex K.3: (code counts per length 1..16, symbols) of the four standard Huffman tables.
_DC_LUMA = ([0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0], list(range(12)))
_DC_CHROMA = ([0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0], list(range(12)))
_AC_LUMA = ([0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7D], bytes.fromhex(
    "01020300041105122131410613516107227114328191a1082342b1c11552d1f02433627282090a161718191a25262728292a3435"
    "363738393a434445464748494a535455565758595a636465666768696a737475767778797a838485868788898a92939495969798"
    "999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae1e2e3e4e5e6e7e8e9eaf1f2f3f4"
    "f5f6f7f8f9fa"))
_AC_CHROMA = ([0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77], bytes.fromhex(
    "000102031104052131061241510761711322328108144291a1b1c109233352f0156272d10a162434e125f11718191a26272829"
    "2a35363738393a434445464748494a535455565758595a636465666768696a737475767778797a82838485868788898a92939495"
    "969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae2e3e4e5e6e7e8e9eaf2f3"
    "f4f5f6f7f8f9fa"))

#: fixed-point scale of the DCT matrix (bits)
_DCT_BITS = 13
#: words of slack past a segment's raw size; see :func:`segment_capacity_words`
_SLACK_WORDS = 64


def quant_tables(quality: int) -> np.ndarray:
    """``(2, 64) int32`` luminance and chrominance tables (natural order) at
    ``quality`` 1..100, scaled as libjpeg's ``jpeg_set_quality`` does (baseline: ≤ 255)."""
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    tables = (np.stack([_LUMA_QUANT, _CHROMA_QUANT]).astype(np.int64) * scale + 50) // 100
    return np.clip(tables, 1, 255).astype(np.int32)


#: bits of the quantisation reciprocals: exact for every dividend below 2**12 (tested)
_RECIP_BITS = 20


def quant_reciprocals(quant: np.ndarray) -> np.ndarray:
    """``(2, 64) int64`` per table entry ``Q``: ``(Q << 15) << 32 | ceil(2**20 / Q)``,
    the rounding offset and the reciprocal with which :func:`encode_segment`
    divides by ``Q << 16`` (the DCT's scale) without a division instruction."""
    q = quant.astype(np.int64)
    return ((q << 15) << 32) | (((1 << _RECIP_BITS) + q - 1) // q)


def huffman_codes(counts: list[int], symbols: bytes | list[int]) -> tuple[np.ndarray, np.ndarray]:
    """``(codes, lengths)``, each ``(256,) int32`` by symbol, of a table given
    as its code counts per length and its symbols (JPEG Annex C)."""
    codes = np.zeros(256, np.int32)
    lengths = np.zeros(256, np.int32)
    code, k = 0, 0
    for length, n in enumerate(counts, start=1):
        for _ in range(n):
            codes[symbols[k]] = code
            lengths[symbols[k]] = length
            code += 1
            k += 1
        code <<= 1
    return codes, lengths


def dct_matrix() -> np.ndarray:
    """``(8, 8) int32`` orthonormal DCT-II basis ``M[u, x]`` scaled by ``2**13``:
    ``M @ block @ M.T`` is JPEG's forward DCT (Annex A.3.3) times ``2**26``."""
    u = np.arange(8)[:, None]
    x = np.arange(8)[None, :]
    c = np.where(u == 0, np.sqrt(1 / 8), np.sqrt(2 / 8))
    return np.round(c * np.cos((2 * x + 1) * u * np.pi / 16) * 2**_DCT_BITS).astype(np.int32)


def jpeg_header(height: int, width: int, quality: int) -> bytes:
    """The bytes before the entropy-coded data (SOI through SOS) of an image
    coded by :func:`encode_segment`: JFIF, quantisation and Huffman tables,
    baseline frame of 3 components at 1×1 sampling, restart interval = blocks per row."""
    if not (1 <= height <= 65535 and 1 <= width <= 65535):
        raise ValueError(f"JPEG images are 1..65535 pixels a side, got {height}x{width}")

    def segment(marker: int, body: bytes) -> bytes:
        return bytes([0xFF, marker]) + (len(body) + 2).to_bytes(2, "big") + body

    q = quant_tables(quality)
    dqt = b"".join(bytes([t]) + bytes(q[t][ZIGZAG].astype(np.uint8)) for t in range(2))
    sof = bytes([8]) + height.to_bytes(2, "big") + width.to_bytes(2, "big") + bytes([3, 1, 0x11, 0, 2, 0x11, 1, 3, 0x11, 1])
    dht = b"".join(bytes([klass]) + bytes(counts) + bytes(symbols)
                   for klass, (counts, symbols) in ((0x00, _DC_LUMA), (0x10, _AC_LUMA), (0x01, _DC_CHROMA), (0x11, _AC_CHROMA)))
    sos = bytes([3, 1, 0x00, 2, 0x11, 3, 0x11, 0, 63, 0])
    return (b"\xff\xd8" + segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00") + segment(0xDB, dqt)
            + segment(0xC0, sof) + segment(0xC4, dht) + segment(0xDD, blocks_per_side(width).to_bytes(2, "big"))
            + segment(0xDA, sos))


def blocks_per_side(pixels: int) -> int:
    """8×8 blocks covering ``pixels`` (a partial block replicates the edge)."""
    return (pixels + 7) // 8


def segment_capacity_words(width: int) -> int:
    """``uint32`` words of room per segment (one row of blocks): its raw pixel
    bytes plus slack. Quality-95 composites code to about a fifth of that; a
    segment of noise at quality 100 can pass it and is coded again with room."""
    return (8 * blocks_per_side(width) * 8 * 3 + 3) // 4 + _SLACK_WORDS


@dataclass(frozen=True)
class JpegTables:
    """What the coding functions read, as arrays both targets take.

    Attributes:
        quant: ``(2, 64) int32`` quantisation tables, natural order (luma, chroma).
        recip: ``(2, 64) int64`` their :func:`quant_reciprocals`.
        dc_code, dc_len: ``(2, 256) int32`` DC Huffman codes and lengths by category.
        ac_code, ac_len: ``(2, 256) int32`` AC Huffman codes and lengths by (run << 4 | size).
        dct: ``(8, 8) int32`` :func:`dct_matrix`.
        zigzag: ``(64,) int32`` :data:`ZIGZAG`.
        header: :func:`jpeg_header` of the images.
    """

    quant: np.ndarray
    recip: np.ndarray
    dc_code: np.ndarray
    dc_len: np.ndarray
    ac_code: np.ndarray
    ac_len: np.ndarray
    dct: np.ndarray
    zigzag: np.ndarray
    header: bytes

    def arrays(self) -> tuple[np.ndarray, ...]:
        """The tables in :func:`encode_segment`'s argument order."""
        return self.recip, self.dc_code, self.dc_len, self.ac_code, self.ac_len, self.dct, self.zigzag


@functools.lru_cache(maxsize=32)
def jpeg_tables(height: int, width: int, quality: int) -> JpegTables:
    """The :class:`JpegTables` of ``height × width`` images at ``quality`` (cached)."""
    dc = [huffman_codes(*_DC_LUMA), huffman_codes(*_DC_CHROMA)]
    ac = [huffman_codes(*_AC_LUMA), huffman_codes(*_AC_CHROMA)]
    quant = quant_tables(quality)
    return JpegTables(
        quant=quant, recip=quant_reciprocals(quant),
        dc_code=np.stack([c for c, _ in dc]), dc_len=np.stack([n for _, n in dc]),
        ac_code=np.stack([c for c, _ in ac]), ac_len=np.stack([n for _, n in ac]),
        dct=dct_matrix(), zigzag=ZIGZAG.copy(), header=jpeg_header(height, width, quality),
    )


# -- the per-segment coding, compiled for the CPU here and for CUDA in kernels.jpeg_cuda --

def _push_byte(out, seg, byte, word, wk, pos):  # pragma: no cover - compiled by Numba
    """Append one byte to segment ``seg`` of ``out`` (``uint32`` words, little-endian)."""
    word |= np.uint32(byte) << np.uint32(8 * wk)
    wk += 1
    if wk == 4:
        if pos < out.shape[1]:
            out[seg, pos] = word
        pos += 1
        word = np.uint32(0)
        wk = 0
    return word, wk, pos


def _mcu_pixels(images, b, y0, x0, px):  # pragma: no cover - compiled by Numba
    """Level-shifted Y, Cb, Cr of the 8×8 block at ``(y0, x0)`` of image ``b``
    into ``px`` (``(192,) int32``: component-major), the edge replicated."""
    height = images.shape[1]
    width = images.shape[2]
    for y in range(8):
        yy = min(y0 + y, height - 1)
        for x in range(8):
            xx = min(x0 + x, width - 1)
            r = np.int32(images[b, yy, xx, 0])
            g = np.int32(images[b, yy, xx, 1])
            bl = np.int32(images[b, yy, xx, 2])
            k = y * 8 + x
            # libjpeg's JFIF constants (16-bit fixed point): exact integers on both targets
            px[k] = ((19595 * r + 38470 * g + 7471 * bl + 32768) >> 16) - 128
            px[64 + k] = ((-11059 * r - 21709 * g + 32768 * bl + 8388608 + 32767) >> 16) - 128
            px[128 + k] = ((32768 * r - 27439 * g - 5329 * bl + 8388608 + 32767) >> 16) - 128


def _block_coefficients(px, comp, recip, dct, tmp, coef):  # pragma: no cover - compiled by Numba
    """Quantised DCT coefficients (natural order) of component ``comp`` of ``px`` into ``coef``;
    ``recip``: :func:`quant_reciprocals` of the tables."""
    base = 64 * comp
    t = 0 if comp == 0 else 1
    # Even/odd halves: M[u, 7 - x] = (-1)**u M[u, x] exactly, so each sum of 8
    # products is one of 4, the same integer as the full product.
    for y in range(8):  # rows: keep 3 fraction bits (|value| < 2**15)
        r = base + y * 8
        e0 = px[r] + px[r + 7]
        e1 = px[r + 1] + px[r + 6]
        e2 = px[r + 2] + px[r + 5]
        e3 = px[r + 3] + px[r + 4]
        o0 = px[r] - px[r + 7]
        o1 = px[r + 1] - px[r + 6]
        o2 = px[r + 2] - px[r + 5]
        o3 = px[r + 3] - px[r + 4]
        for u in range(0, 8, 2):
            tmp[y * 8 + u] = (dct[u, 0] * e0 + dct[u, 1] * e1 + dct[u, 2] * e2 + dct[u, 3] * e3 + 512) >> 10
            tmp[y * 8 + u + 1] = (dct[u + 1, 0] * o0 + dct[u + 1, 1] * o1 + dct[u + 1, 2] * o2 + dct[u + 1, 3] * o3 + 512) >> 10
    for u in range(8):  # columns: the DCT times 2**16 (|value| < 2**28)
        e0 = tmp[u] + tmp[56 + u]
        e1 = tmp[8 + u] + tmp[48 + u]
        e2 = tmp[16 + u] + tmp[40 + u]
        e3 = tmp[24 + u] + tmp[32 + u]
        o0 = tmp[u] - tmp[56 + u]
        o1 = tmp[8 + u] - tmp[48 + u]
        o2 = tmp[16 + u] - tmp[40 + u]
        o3 = tmp[24 + u] - tmp[32 + u]
        for v in range(8):
            if v % 2 == 0:
                s = dct[v, 0] * e0 + dct[v, 1] * e1 + dct[v, 2] * e2 + dct[v, 3] * e3
            else:
                s = dct[v, 0] * o0 + dct[v, 1] * o1 + dct[v, 2] * o2 + dct[v, 3] * o3
            # round(s / (Q << 16)), halves away from zero, without a division:
            # floor(a / (Q << 16)) = floor((a >> 16) / Q) = ((a >> 16) * recip) >> 20
            r = recip[t, v * 8 + u]
            if s >= 0:
                coef[v * 8 + u] = (((s + (r >> 32)) >> 16) * (r & 0xFFFFFFFF)) >> 20
            else:
                coef[v * 8 + u] = -(((((r >> 32) - s) >> 16) * (r & 0xFFFFFFFF)) >> 20)


def build_segment_encoder(jit: Callable[..., Any]) -> Callable[..., Any]:
    """:func:`encode_segment` and its helpers compiled with ``jit`` (``numba.njit``,
    or ``numba.cuda.jit(device=True)``): one source, so both targets write the same bytes."""
    push_byte = jit(_push_byte)
    mcu_pixels = jit(_mcu_pixels)
    block_coefficients = jit(_block_coefficients)

    def put_bits(out, seg, code, length, acc, nbits, word, wk, pos):  # pragma: no cover - compiled by Numba
        """Append ``length`` bits of ``code`` (MSB first), stuffing 0x00 after each 0xFF."""
        acc = (acc << length) | code
        nbits += length
        while nbits >= 8:
            nbits -= 8
            byte = (acc >> nbits) & 0xFF
            word, wk, pos = push_byte(out, seg, byte, word, wk, pos)
            if byte == 0xFF:
                word, wk, pos = push_byte(out, seg, 0, word, wk, pos)
        acc &= (1 << nbits) - 1
        return acc, nbits, word, wk, pos

    put_bits = jit(put_bits)

    def encode_segment(images, b, row, seg, recip, dc_code, dc_len, ac_code, ac_len, dct, zigzag,
                       px, tmp, coef, out):  # pragma: no cover - compiled by Numba
        """Code block row ``row`` of image ``b`` into segment ``seg`` of ``out``
        (``(S, words) uint32``); returns its length in bytes, padded with 1-bits
        to a byte (more than ``4 * words``: it did not fit, code it again with room).
        ``px``, ``tmp``, ``coef``: ``(192,)``, ``(64,)``, ``(64,)`` int32 scratch."""
        acc = 0
        nbits = 0
        word = np.uint32(0)
        wk = 0
        pos = 0
        pred0 = 0  # DC predictions restart at every restart marker
        pred1 = 0
        pred2 = 0
        blocks = (images.shape[2] + 7) // 8
        for m in range(blocks):
            mcu_pixels(images, b, row * 8, m * 8, px)
            for comp in range(3):
                block_coefficients(px, comp, recip, dct, tmp, coef)
                t = 0 if comp == 0 else 1
                dc = coef[0]
                if comp == 0:
                    diff = dc - pred0
                    pred0 = dc
                elif comp == 1:
                    diff = dc - pred1
                    pred1 = dc
                else:
                    diff = dc - pred2
                    pred2 = dc
                a = diff if diff >= 0 else -diff
                size = 0
                while a > 0:
                    size += 1
                    a >>= 1
                acc, nbits, word, wk, pos = put_bits(out, seg, dc_code[t, size], dc_len[t, size], acc, nbits, word, wk, pos)
                if size > 0:
                    bits = diff if diff >= 0 else diff + (1 << size) - 1
                    acc, nbits, word, wk, pos = put_bits(out, seg, bits, size, acc, nbits, word, wk, pos)
                run = 0
                for k in range(1, 64):
                    v = coef[zigzag[k]]
                    if v == 0:
                        run += 1
                        continue
                    while run > 15:  # ZRL: sixteen zeros
                        acc, nbits, word, wk, pos = put_bits(out, seg, ac_code[t, 0xF0], ac_len[t, 0xF0], acc, nbits, word, wk, pos)
                        run -= 16
                    a = v if v >= 0 else -v
                    size = 0
                    while a > 0:
                        size += 1
                        a >>= 1
                    symbol = (run << 4) | size
                    acc, nbits, word, wk, pos = put_bits(out, seg, ac_code[t, symbol], ac_len[t, symbol], acc, nbits, word, wk, pos)
                    bits = v if v >= 0 else v + (1 << size) - 1
                    acc, nbits, word, wk, pos = put_bits(out, seg, bits, size, acc, nbits, word, wk, pos)
                    run = 0
                if run > 0:  # EOB
                    acc, nbits, word, wk, pos = put_bits(out, seg, ac_code[t, 0], ac_len[t, 0], acc, nbits, word, wk, pos)
        if nbits > 0:  # pad the last byte with 1-bits (Annex F.1.2.3)
            pad = 8 - nbits
            acc, nbits, word, wk, pos = put_bits(out, seg, (1 << pad) - 1, pad, acc, nbits, word, wk, pos)
        length = pos * 4 + wk
        if wk > 0 and pos < out.shape[1]:
            out[seg, pos] = word
        return length

    return jit(encode_segment)


_encode_segment_cpu = build_segment_encoder(numba.njit(cache=True, nogil=True))


def _encode_segments(images, recip, dc_code, dc_len, ac_code, ac_len, dct, zigzag, out, lengths):  # pragma: no cover
    n, n_rows = lengths.shape
    for s in numba.prange(n * n_rows):
        px = np.empty(192, np.int32)
        tmp = np.empty(64, np.int32)
        coef = np.empty(64, np.int32)
        b = s // n_rows
        lengths[b, s - b * n_rows] = _encode_segment_cpu(images, b, s - b * n_rows, s, recip, dc_code, dc_len,
                                                         ac_code, ac_len, dct, zigzag, px, tmp, coef, out)


def _renamed(fn, name):
    """``fn`` under another name: Numba's on-disk cache is keyed by the function's
    qualified name (not by ``parallel``), so two compilations of one function would
    load each other's machine code in a later process."""
    copy = types.FunctionType(fn.__code__, fn.__globals__, name, fn.__defaults__, fn.__closure__)
    copy.__qualname__ = name
    return copy


#: every core (one caller at a time), and one core (callers on their own threads: writer pools)
_encode_segments_cpu = numba.njit(parallel=True, nogil=True, cache=True)(_encode_segments)
_encode_segments_serial = numba.njit(nogil=True, cache=True)(_renamed(_encode_segments, "_encode_segments_serial"))


@numba.njit(nogil=True, cache=True)
def _pack_cpu(segments, lengths, header, starts, packed):  # pragma: no cover - compiled by Numba
    n, n_rows = lengths.shape
    h = header.shape[0]
    for b in range(n):
        p = starts[b]
        packed[p : p + h] = header
        p += h
        for r in range(n_rows):
            k = lengths[b, r]
            packed[p : p + k] = segments[b * n_rows + r, :k]
            p += k
            packed[p] = 0xFF
            packed[p + 1] = 0xD9 if r == n_rows - 1 else 0xD0 + (r % 8)  # RSTn between rows, EOI after the last
            p += 2


def file_starts(lengths: np.ndarray, header_bytes: int) -> np.ndarray:
    """``(B + 1,) int64`` offsets of each image's file in the packed buffer:
    header, its segments with a 2-byte marker after each (RSTn, EOI last)."""
    sizes = header_bytes + (lengths.astype(np.int64) + 2).sum(axis=1)
    return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)


def split_files(packed: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """``(B,) object`` array of each file's ``bytes`` from the packed buffer."""
    out = np.empty(len(starts) - 1, dtype=object)
    view = memoryview(packed)
    for i in range(len(out)):
        out[i] = bytes(view[starts[i] : starts[i + 1]])
    return out


def encode_jpeg_batch(images: np.ndarray, quality: int, words: int | None = None, parallel: bool = True) -> np.ndarray:
    """``(B, H, W, 3) uint8`` host images → ``(B,) object`` baseline JPEG ``bytes``
    (4:4:4, a restart interval per block row), coded on every CPU core without
    the GIL. Byte for byte what :class:`kernels.jpeg_cuda.CudaJpegEncoder` writes.

    Args:
        images: the batch, any ``B`` ≥ 0.
        quality: 1..100.
        words: ``uint32`` words of room per segment; default :func:`segment_capacity_words`.
            An image with a longer segment is coded again with room for it.
        parallel: code the segments on every core (Numba's threads); ``False``:
            on the calling thread, for callers that run several batches at once.
    """
    dims = check_array(images, "images", np.uint8, ["B", "H", "W", 3])
    n, height, width = dims["B"], dims["H"], dims["W"]
    if n == 0:
        return np.empty(0, dtype=object)
    images = np.ascontiguousarray(images)
    tables = jpeg_tables(height, width, quality)
    words = words or segment_capacity_words(width)
    n_rows = blocks_per_side(height)
    lengths = np.zeros((n, n_rows), np.int64)
    segments = np.zeros((n * n_rows, words), np.uint32)
    (_encode_segments_cpu if parallel else _encode_segments_serial)(images, *tables.arrays(), segments, lengths)
    redo, room = overflowing_images(lengths, words)
    files = pack_files(segments.view(np.uint8), lengths, tables.header)
    if len(redo):
        files[redo] = list(encode_jpeg_batch(images[redo], quality, room, parallel))
    return files


def overflowing_images(lengths: np.ndarray, words: int) -> tuple[np.ndarray, int]:
    """``(indices, words)``: the images with a segment longer than ``words``
    words, and the words per segment that hold their longest. Their lengths
    are then set to 0 in ``lengths`` (their files are coded again)."""
    redo = np.flatnonzero((lengths > 4 * words).any(axis=1))
    room = int(lengths[redo].max() + 3) // 4 + _SLACK_WORDS if len(redo) else words
    lengths[redo] = 0
    return redo, room


def pack_files(segments: np.ndarray, lengths: np.ndarray, header: bytes) -> np.ndarray:
    """``(B,) object`` JPEG ``bytes`` from coded segments on the host.

    Args:
        segments: ``(B * rows, bytes) uint8`` coded segments, image-major.
        lengths: ``(B, rows) int64`` their lengths in bytes.
        header: :func:`jpeg_header` of the images.
    """
    starts = file_starts(lengths, len(header))
    packed = np.empty(int(starts[-1]), np.uint8)
    _pack_cpu(segments, lengths, np.frombuffer(header, np.uint8), starts, packed)
    return split_files(packed, starts)
