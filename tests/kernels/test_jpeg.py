"""fgbg's baseline JPEG kernels: the CPU twin and the CUDA kernels (Numba's
simulator without a GPU) against the plain reference, the tables against
libjpeg's, the files against real decoders."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from kernels import jpeg as J
from kernels.reference import jpeg_reference


def scene(n: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """``(n, H, W, 3) uint8``: smooth gradients, a hard-edged saturated box
    (a pasted car's colour edges) and a little noise, different per image."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    out = np.empty((n, height, width, 3), np.uint8)
    for i in range(n):
        base = np.stack([(x * 3 + y + 40 * i) % 256, (y * 2 + 17 * i) % 256, 255 - (x + y) % 256], -1).astype(np.float64)
        base += rng.normal(0, 1.5, base.shape)
        a, b = rng.integers(0, max(height // 2, 1)), rng.integers(0, max(width // 2, 1))
        base[a : a + height // 3, b : b + width // 3] = rng.integers(0, 256, 3)
        out[i] = np.clip(base, 0, 255).astype(np.uint8)
    return out


def encode(images: np.ndarray, quality: int, device: str) -> list[bytes]:
    if device == "cpu":
        return list(J.encode_jpeg_batch(images, quality))
    from numba import cuda

    from kernels.jpeg_cuda import CudaJpegEncoder

    return list(CudaJpegEncoder(cuda.stream()).encode(cuda.to_device(images), quality))


def decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255**2 / max(mse, 1e-12)))


def pillow_jpeg(image: np.ndarray, quality: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality, subsampling="4:4:4")
    return buffer.getvalue()


def dali_decode(files: list[bytes], device: str) -> list[np.ndarray]:
    """The files decoded by DALI's image decoder (``cpu``, or ``mixed``: nvJPEG on GPU 0)."""
    dali = pytest.importorskip("nvidia.dali")
    from nvidia.dali import fn, types

    @dali.pipeline_def(batch_size=len(files), num_threads=1, device_id=None if device == "cpu" else 0)
    def pipe():
        raw = fn.external_source(source=lambda: [np.frombuffer(f, np.uint8) for f in files], batch=True)
        return fn.decoders.image(raw, device=device, output_type=types.RGB)

    p = pipe()
    p.build()
    (decoded,) = p.run()
    decoded = decoded if device == "cpu" else decoded.as_cpu()
    return [np.asarray(decoded.at(i)) for i in range(len(files))]


def markers(data: bytes) -> dict[int, list[bytes]]:
    """The header's segments by marker byte (up to SOS), bodies without length."""
    out: dict[int, list[bytes]] = {}
    p = 2
    while True:
        marker, length = data[p + 1], int.from_bytes(data[p + 2 : p + 4], "big")
        out.setdefault(marker, []).append(data[p + 4 : p + 2 + length])
        p += 2 + length
        if marker == 0xDA:
            return out


@pytest.mark.parametrize("quality", [1, 10, 50, 75, 95, 100])
def test_quantisation_tables_are_libjpegs(quality: int) -> None:
    ours = J.quant_tables(quality)
    theirs = Image.open(io.BytesIO(pillow_jpeg(scene(1, 16, 16)[0], quality))).quantization
    for t in range(2):
        np.testing.assert_array_equal(ours[t], np.array(theirs[t]))


def test_huffman_tables_are_the_standard_ones_libjpeg_writes() -> None:
    ours = markers(J.jpeg_header(16, 16, 95))[0xC4]  # one DHT segment holding four tables
    theirs = markers(pillow_jpeg(scene(1, 16, 16)[0], 95))[0xC4]  # libjpeg: one segment per table, same order
    assert b"".join(ours) == b"".join(theirs)


@pytest.mark.parametrize("height, width, quality", [(16, 16, 95), (37, 53, 95), (24, 40, 50), (9, 70, 100), (1, 1, 95)])
def test_files_equal_the_reference(kernel_device: str, height: int, width: int, quality: int) -> None:
    images = scene(3, height, width, seed=height)
    got = encode(images, quality, kernel_device)
    assert got == [jpeg_reference(im, quality) for im in images]


def test_restart_markers_one_per_block_row() -> None:
    data = J.encode_jpeg_batch(scene(1, 90, 40), 95)[0]  # 12 block rows, 5 blocks per row
    assert int.from_bytes(markers(data)[0xDD][0], "big") == 5
    body = data[data.index(b"\xff\xda") + 14 :]  # after SOS (its marker and 12 bytes)
    found = [body[k + 1] for k in range(len(body) - 1) if body[k] == 0xFF and body[k + 1] >= 0xD0]
    assert found == [0xD0 + r % 8 for r in range(11)] + [0xD9]
    assert data.endswith(b"\xff\xd9")


@pytest.mark.parametrize("quality, min_db", [(95, 40.0), (75, 33.0)])
def test_decoders_read_the_files(quality: int, min_db: float) -> None:
    """Pillow (libjpeg), torchvision (libjpeg-turbo) and DALI's CPU decoder read
    them; quality and size are libjpeg's at the same quality (4:4:4)."""
    import torch
    from torchvision.io import decode_jpeg

    images = scene(4, 64, 96)
    files = J.encode_jpeg_batch(images, quality)
    for image, data in zip(images, files):
        ref = pillow_jpeg(image, quality)
        assert psnr(decode(data), image) >= min_db
        assert psnr(decode(data), image) >= psnr(decode(ref), image) - 0.2
        assert abs(len(data) - len(ref)) <= 0.03 * len(ref) + 40  # restart markers cost a few bytes a row
        tv = decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8)).permute(1, 2, 0).numpy()
        assert psnr(tv, image) >= min_db
    for decoded, image in zip(dali_decode(list(files), "cpu"), images):
        assert psnr(decoded, image) >= min_db


def test_too_long_segments_are_coded_again(kernel_device: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Noise at quality 100 overflows a small room; those images come out as
    with room to spare (the others are untouched)."""
    images = scene(3, 24, 32)
    images[1] = np.random.default_rng(5).integers(0, 256, images[1].shape, dtype=np.uint8)
    want = [jpeg_reference(im, 100) for im in images]
    assert list(J.encode_jpeg_batch(images, 100, words=J.segment_capacity_words(32) * 8)) == want
    if kernel_device == "cpu":
        got = list(J.encode_jpeg_batch(images, 100, words=70))
    else:
        import kernels.jpeg_cuda as JC

        monkeypatch.setattr(JC, "segment_capacity_words", lambda width: 70)
        got = encode(images, 100, "cuda")
    assert got == want


def test_serial_and_pool_coding_equal_every_core() -> None:
    from engine.store.jpeg import encode_jpeg_fgbg

    images = scene(7, 40, 24)
    want = list(J.encode_jpeg_batch(images, 90))
    assert list(J.encode_jpeg_batch(images, 90, parallel=False)) == want
    with ThreadPoolExecutor(3) as pool:
        assert list(encode_jpeg_fgbg(images, 90, pool)) == want
    assert list(encode_jpeg_fgbg(images, 90)) == want
    assert len(J.encode_jpeg_batch(images[:0], 90)) == 0


def test_inputs_are_checked() -> None:
    with pytest.raises(TypeError, match="uint8"):
        J.encode_jpeg_batch(np.zeros((1, 8, 8, 3), np.float32), 95)
    with pytest.raises(ValueError, match=r"\(B, H, W, 3\)"):
        J.encode_jpeg_batch(np.zeros((1, 8, 8), np.uint8), 95)
    with pytest.raises(ValueError, match="quality"):
        J.encode_jpeg_batch(np.zeros((1, 8, 8, 3), np.uint8), 0)
    with pytest.raises(ValueError, match="65535"):
        J.jpeg_header(70000, 8, 95)


def test_quantisation_without_division_is_exact() -> None:
    """Every dividend the DCT can produce (|s| < 2**27, so (|s| + Q/2 << 16) >> 16 < 2**11 + 128)
    and every table entry: the reciprocal gives floor division's result."""
    q = np.arange(1, 256, dtype=np.int64)
    packed = J.quant_reciprocals(q)
    a = np.arange(2**11 + 128, dtype=np.int64)[:, None]
    np.testing.assert_array_equal((a * (packed & 0xFFFFFFFF)) >> 20, a // q)
    assert np.all((packed >> 32) == q << 15)
    m = J.dct_matrix().astype(np.int64)
    row_max = 128 * np.abs(m).sum(axis=1).max() >> 10
    assert 8 * np.abs(m).max() * (row_max + 1) < 2**27


@pytest.mark.parametrize("quality", [100, 95, 30])
def test_extreme_blocks_equal_the_reference(kernel_device: str, quality: int) -> None:
    """Checkerboards, stripes and flat extremes: the largest coefficients (quality 100: Q = 1)."""
    y, x = np.mgrid[0:16, 0:24]
    patterns = [((x + y) % 2) * 255, (x % 2) * 255, (y % 2) * 255, np.zeros_like(x), np.full_like(x, 255),
                ((x // 4 + y // 4) % 2) * 255]
    images = np.stack([np.stack([p, 255 - p, p], -1) for p in patterns]).astype(np.uint8)
    assert encode(images, quality, kernel_device) == [jpeg_reference(im, quality) for im in images]


def test_dct_halves_match_the_full_matrix() -> None:
    """The even/odd split relies on the rounded basis being exactly (anti)symmetric."""
    m = J.dct_matrix()
    sign = np.where(np.arange(8) % 2 == 0, 1, -1)[:, None]
    np.testing.assert_array_equal(m[:, ::-1], sign * m)


@pytest.mark.gpu
def test_dali_gpu_decoder_reads_the_files() -> None:
    """DALI's mixed (nvJPEG) decoder, the training loaders' path, reads the restart-marked files."""
    images = scene(8, 224, 224)
    for decoded, image in zip(dali_decode(J.encode_jpeg_batch(images, 95), "mixed"), images):
        assert psnr(decoded, image) >= 40.0


def test_the_one_core_and_every_core_coders_have_their_own_numba_cache_files():
    # Numba keys its on-disk cache by the function's qualified name, not by
    # ``parallel``: one cache file for both would load one's code in place of the other's.
    from kernels import jpeg

    every_core = jpeg._encode_segments_cpu._cache._cache_file._index_path
    one_core = jpeg._encode_segments_serial._cache._cache_file._index_path
    assert every_core != one_core
