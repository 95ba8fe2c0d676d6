"""JPEG encoders (libjpeg through Pillow, torchvision on CPU or nvJPEG on CUDA) and
the GPU path that keeps images on the device and encodes them there."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr
from PIL import Image
from typer.testing import CliRunner

from cli import app
from engine.compose.generate import generate
from engine.compose.hardware import Hardware, check_jpeg_kernels, resolve_jpeg_encoder
from engine.config import GenerateConfig, RunOptions
from engine.errors import ConfigError
from engine.store.jpeg import NvimgcodecStreams, encode_jpeg_fgbg, encode_jpeg_pillow, encode_jpeg_torchvision, encode_split

#: the issue's bar: decoded quality-95 JPEGs within 40 dB PSNR of the lossless composite
MIN_PSNR_DB = 40.0


def config(**overrides) -> GenerateConfig:
    """Realistic-size composites (JPEG quality depends on image size): 96 samples of 128x128."""
    base = dict(builtin_backgrounds=3, builtin_foregrounds=2, height=128, width=128, positions=8, shard_size=32)
    return GenerateConfig(**{**base, **overrides})


@pytest.fixture(scope="module")
def lossless(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("jpeg") / "lossless.zarr"
    generate(config(), out)
    return out


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255**2 / max(mse, 1e-12)))


def decode(data: bytes) -> np.ndarray:
    assert data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9"
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


@pytest.mark.parametrize("encoder", ["pillow", "fgbg", pytest.param("fgbg-cuda", marks=pytest.mark.gpu),
                                     pytest.param("nvjpeg", marks=pytest.mark.gpu),
                                     pytest.param("nvimgcodec", marks=pytest.mark.gpu),
                                     pytest.param("nvimgcodec-streams", marks=pytest.mark.gpu)])
def test_quality_95_is_within_40_db(lossless: Path, encoder: str) -> None:
    images = zarr.open_group(lossless, mode="r")["images"][:]
    if encoder == "pillow":
        encoded = encode_jpeg_pillow(images, 95)
    elif encoder == "fgbg":
        encoded = encode_jpeg_fgbg(images, 95)
    elif encoder == "fgbg-cuda":  # the real kernels on the GPU: the CPU's bytes
        from kernels.jpeg_cuda import CudaJpegEncoder

        encoded = CudaJpegEncoder().encode(torch.from_numpy(images).cuda(), 95)
        assert list(encoded) == list(encode_jpeg_fgbg(images, 95))
    elif encoder == "nvjpeg":
        encoded = encode_jpeg_torchvision(torch.from_numpy(images).cuda(), 95)
    elif encoder == "nvimgcodec-streams":  # the real encoders and streams, a batch split 3 ways
        streams = NvimgcodecStreams(streams=3)
        encoded = streams.encode(torch.from_numpy(images).cuda(), 95)
        streams.close()
    else:
        from engine.store.jpeg import encode_jpeg_nvimgcodec

        encoded = encode_jpeg_nvimgcodec(torch.from_numpy(images).cuda(), 95)
    assert encoded.shape == (len(images),) and encoded.dtype == object
    assert min(psnr(decode(encoded[i]), images[i]) for i in range(len(images))) >= MIN_PSNR_DB


def test_torchvision_on_the_cpu_decodes_close(lossless: Path) -> None:
    """torchvision's CPU path (libjpeg, 4:2:0): right files, close but under 40 dB."""
    images = zarr.open_group(lossless, mode="r")["images"][:8]
    encoded = encode_jpeg_torchvision(torch.from_numpy(images), 95)
    assert encoded.shape == (8,) and all(psnr(decode(encoded[i]), images[i]) > 33 for i in range(8))


def test_torchvision_batch_matches_one_call_per_image(lossless: Path) -> None:
    from torchvision.io import encode_jpeg

    images = torch.from_numpy(zarr.open_group(lossless, mode="r")["images"][:5])
    batch = encode_jpeg_torchvision(images, 90)
    for i in range(5):
        assert batch[i] == encode_jpeg(images[i].permute(2, 0, 1).contiguous(), quality=90).numpy().tobytes()


def test_torchvision_encoder_checks_its_input() -> None:
    assert encode_jpeg_torchvision(torch.zeros(0, 8, 8, 3, dtype=torch.uint8), 95).shape == (0,)
    with pytest.raises(ValueError, match="uint8"):
        encode_jpeg_torchvision(torch.zeros(2, 8, 8, 3), 95)
    with pytest.raises(ValueError, match=r"\(B, H, W, 3\)"):
        encode_jpeg_torchvision(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), 95)


def test_gpu_encoders_need_the_jpeg_codec_and_a_gpu() -> None:
    cpu_only = Hardware(cores=2, nvcomp="no GPU", nvimgcodec="no GPU")
    with pytest.raises(ConfigError, match="--jpeg-encoder nvjpeg is for --image-codec jpeg"):
        config(jpeg_encoder="nvjpeg")
    with pytest.raises(ConfigError, match="--jpeg-encoder must be one of"):
        config(image_codec="jpeg", jpeg_encoder="turbo")
    for encoder in ("nvjpeg", "nvimgcodec", "nvimgcodec-streams"):
        with pytest.raises(ConfigError, match="needs --device cuda"):
            resolve_jpeg_encoder(config(image_codec="jpeg", jpeg_encoder=encoder), "cpu", cpu_only)
    with pytest.raises(ConfigError, match="PyTorch sees no CUDA GPU"):
        resolve_jpeg_encoder(config(image_codec="jpeg", jpeg_encoder="nvjpeg"), "cuda", cpu_only)
    with pytest.raises(ConfigError, match="nvimgcodec: no GPU"):
        resolve_jpeg_encoder(config(image_codec="jpeg", jpeg_encoder="nvimgcodec"), "cuda", cpu_only)
    with pytest.raises(ConfigError, match="nvimgcodec-streams: no GPU"):
        resolve_jpeg_encoder(config(image_codec="jpeg", jpeg_encoder="nvimgcodec-streams"), "cuda", cpu_only)
    with pytest.raises(ConfigError, match="nvimgcodec-streams: PyTorch sees no CUDA GPU"):
        resolve_jpeg_encoder(config(image_codec="jpeg", jpeg_encoder="nvimgcodec-streams"), "cuda",
                             Hardware(cores=2, nvimgcodec=None, torch_cuda=False))


@pytest.mark.parametrize("codec, device, hw, want", [
    ("jpeg", "cpu", Hardware(cores=2), "libjpeg"),
    ("zstd", "cuda", Hardware(cores=2, nvimgcodec=None, torch_cuda=True), "libjpeg"),
    ("jpeg", "cuda", Hardware(cores=2, nvimgcodec=None, torch_cuda=True), "nvjpeg"),  # measured faster
    ("jpeg", "cuda", Hardware(cores=2, nvimgcodec=None, jpeg_kernels=None, torch_cuda=True), "fgbg"),
    ("jpeg", "cuda", Hardware(cores=2, jpeg_kernels="numba-cuda cannot compile", torch_cuda=True), "nvjpeg"),
    ("jpeg", "cpu", Hardware(cores=2, jpeg_kernels=None), "libjpeg"),  # the CPU twin is slower than libjpeg
    ("jpeg", "cuda", Hardware(cores=2, nvimgcodec=None, torch_cuda=False), "nvimgcodec"),
    ("jpeg", "cuda", Hardware(cores=2, nvimgcodec="not installed", torch_cuda=False), "libjpeg"),
])
def test_auto_jpeg_encoder_is_the_fastest_that_runs(codec: str, device: str, hw: Hardware, want: str) -> None:
    resolved = resolve_jpeg_encoder(config(image_codec=codec), device, hw)
    assert resolved.jpeg_encoder == want


def test_cli_nvjpeg_on_the_cpu_is_a_one_line_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, [
        "generate", "--out", str(tmp_path / "x.zarr"), "--builtin-backgrounds", "1", "--builtin-foregrounds", "1",
        "--size", "32", "--positions", "1", "--image-codec", "jpeg", "--jpeg-encoder", "nvjpeg", "--device", "cpu", "-q",
    ])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: --jpeg-encoder nvjpeg runs on the GPU: it needs --device cuda (or auto on a GPU machine)"
    ]


def _check_jpeg_store(out: Path, lossless: Path, encoder: str) -> None:
    g, ref = zarr.open_group(out, mode="r"), zarr.open_group(lossless, mode="r")
    assert g.attrs["fgbg"]["config"]["jpeg_encoder"] == encoder
    images = ref["images"][:]
    jpegs = g["images_jpeg"][:]
    assert min(psnr(decode(jpegs[i]), images[i]) for i in range(len(images))) >= MIN_PSNR_DB
    np.testing.assert_array_equal(g["masks"][:], ref["masks"][:])
    np.testing.assert_array_equal(g["depth"][:], ref["depth"][:])


def test_device_encoding_path_on_the_simulator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The nvjpeg wiring under Numba's simulator: images stay in the device slot
    (never copied into the host batch) and the writer threads encode them from
    there. Pillow on a copy of the slot stands in for nvJPEG, which the
    simulator cannot run, so the store must equal the libjpeg one byte for byte."""
    import engine.compose.generate as gen
    from engine.compose.compositor_cuda import CudaCompositor

    seen: list[object] = []
    original = CudaCompositor.composite

    def composite(self, p):  # type: ignore[no-untyped-def]
        batch = original(self, p)
        seen.append(batch.images)
        return batch

    def slot_encoder(self, d_images):  # type: ignore[no-untyped-def]
        return lambda quality: encode_jpeg_pillow(d_images.copy_to_host(), quality)

    small = dict(height=32, width=48, positions=2, shard_size=8)
    generate(config(image_codec="jpeg", **small), tmp_path / "cpu.zarr")
    monkeypatch.setattr(gen, "detect_hardware", lambda device: Hardware(cores=2, nvcomp="off", torch_cuda=True))
    monkeypatch.setattr(CudaCompositor, "composite", composite)
    monkeypatch.setattr(CudaCompositor, "_jpeg_encoder", slot_encoder)
    generate(config(image_codec="jpeg", jpeg_encoder="nvjpeg", **small), tmp_path / "gpu.zarr", RunOptions(device="cuda"))
    assert len(seen) == 3 and all(images is None for images in seen)
    cpu, gpu = zarr.open_group(tmp_path / "cpu.zarr", mode="r"), zarr.open_group(tmp_path / "gpu.zarr", mode="r")
    assert list(gpu["images_jpeg"][:]) == list(cpu["images_jpeg"][:])
    for name in ("masks", "depth"):
        np.testing.assert_array_equal(gpu[name][:], cpu[name][:])


def _fake_part_encoders(built: list[int]):
    """Part encoders for NvimgcodecStreams without a GPU: Pillow on the part's
    host copy (a Numba device array under the simulator, or a host array)."""
    def make(device_id: int):
        built.append(device_id)
        return lambda part, quality: encode_jpeg_pillow(
            part.copy_to_host() if hasattr(part, "copy_to_host") else np.asarray(part), quality)
    return make


def test_encode_split_keeps_the_batch_order() -> None:
    calls: list[tuple[int, list[int]]] = []

    def encoder(k: int):
        def encode(part: np.ndarray, quality: int) -> np.ndarray:
            calls.append((k, list(part)))
            return np.array([f"{k}:{v}:{quality}".encode() for v in part], dtype=object)
        return encode

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        out = encode_split(np.arange(10), 95, [encoder(k) for k in range(4)], pool)
        assert [b.decode().split(":")[1] for b in out] == [str(v) for v in range(10)]
        assert sorted(k for k, _ in calls) == [0, 1, 2, 3]  # each encoder once, contiguous parts of 2-3
        assert sorted(len(p) for _, p in calls) == [2, 2, 3, 3] and all(p == sorted(p) for _, p in calls)
        calls.clear()
        assert list(encode_split(np.arange(2), 95, [encoder(k) for k in range(4)], pool)) == [b"0:0:95", b"1:1:95"]
        assert len(calls) == 2 and len(encode_split(np.arange(0), 95, [encoder(0)], pool)) == 0


def test_encode_split_names_the_part_that_failed() -> None:
    from concurrent.futures import ThreadPoolExecutor

    def good(part, quality):  # type: ignore[no-untyped-def]
        return np.array([b"x"] * len(part), dtype=object)

    def broken(part, quality):  # type: ignore[no-untyped-def]
        raise OSError("encoder state lost")

    def short(part, quality):  # type: ignore[no-untyped-def]
        return np.array([b"x"], dtype=object)

    with ThreadPoolExecutor(2) as pool:
        with pytest.raises(RuntimeError, match=r"images 4..7 of the batch failed: OSError: encoder state lost"):
            encode_split(np.arange(8), 95, [good, broken], pool)
        with pytest.raises(RuntimeError, match=r"returned 1 images for 4 \(images 0..3\)"):
            encode_split(np.arange(8), 95, [short, good], pool)
        with pytest.raises(ValueError, match="at least one encoder"):
            encode_split(np.arange(8), 95, [], pool)


def test_nvimgcodec_streams_has_its_encoders_per_writer_thread(lossless: Path) -> None:
    """Each calling (writer) thread gets its own encoders, built once; bytes equal Pillow's on the whole batch."""
    from concurrent.futures import ThreadPoolExecutor

    images = zarr.open_group(lossless, mode="r")["images"][:12]
    built: list[int] = []
    streams = NvimgcodecStreams(streams=3, make_part_encoder=_fake_part_encoders(built))
    want = list(encode_jpeg_pillow(images, 90))
    with ThreadPoolExecutor(2) as writers:
        results = list(writers.map(lambda _: list(streams.encode(images, 90)), range(6)))
    streams.close()
    assert all(r == want for r in results) and len(want) == 12
    assert len(built) in (3, 6)  # 3 per writer thread that ran (the pool may reuse one thread)
    with pytest.raises(ValueError, match="at least one stream"):
        NvimgcodecStreams(streams=0)


def test_nvimgcodec_streams_path_on_the_simulator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--jpeg-encoder nvimgcodec-streams wired through generate under Numba's
    simulator: each writer splits its shard's device images over 3 stand-in
    encoders; the store equals the libjpeg one byte for byte and records its encoder."""
    import engine.compose.compositor_cuda as cc
    import engine.compose.generate as gen

    built: list[int] = []
    small = dict(height=32, width=48, positions=2, shard_size=8)
    generate(config(image_codec="jpeg", **small), tmp_path / "cpu.zarr")
    monkeypatch.setattr(gen, "detect_hardware", lambda device: Hardware(cores=2, nvcomp="off", nvimgcodec=None,
                                                                        torch_cuda=True))
    monkeypatch.setattr(cc, "make_jpeg_streams", lambda: NvimgcodecStreams(3, make_part_encoder=_fake_part_encoders(built)))
    generate(config(image_codec="jpeg", jpeg_encoder="nvimgcodec-streams", **small), tmp_path / "gpu.zarr",
             RunOptions(device="cuda"))
    cpu, gpu = zarr.open_group(tmp_path / "cpu.zarr", mode="r"), zarr.open_group(tmp_path / "gpu.zarr", mode="r")
    assert list(gpu["images_jpeg"][:]) == list(cpu["images_jpeg"][:])
    assert gpu.attrs["fgbg"]["config"]["jpeg_encoder"] == "nvimgcodec-streams" and len(built) >= 3
    for name in ("masks", "depth"):
        np.testing.assert_array_equal(gpu[name][:], cpu[name][:])


def test_fgbg_encoder_runs_on_either_device_and_says_why_not() -> None:
    jpeg = config(image_codec="jpeg", jpeg_encoder="fgbg")
    assert resolve_jpeg_encoder(jpeg, "cpu", Hardware(cores=2)).jpeg_encoder == "fgbg"
    assert resolve_jpeg_encoder(jpeg, "cuda", Hardware(cores=2, jpeg_kernels=None)).jpeg_encoder == "fgbg"
    with pytest.raises(ConfigError, match="^--jpeg-encoder fgbg: fgbg's JPEG kernels cannot run here"):
        resolve_jpeg_encoder(jpeg, "cuda", Hardware(cores=2, jpeg_kernels="fgbg's JPEG kernels cannot run here (x)"))


def test_jpeg_kernels_are_checked_only_where_jpeg_is_written_on_the_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.store.jpeg as jp

    calls: list[int] = []
    monkeypatch.setattr(jp, "fgbg_jpeg_problem", lambda: calls.append(1) or "broken here")
    hw = Hardware(cores=2)
    assert check_jpeg_kernels(config(), "cuda", hw) is hw  # lossless
    assert check_jpeg_kernels(config(image_codec="jpeg"), "cpu", hw) is hw
    assert check_jpeg_kernels(config(image_codec="jpeg", jpeg_encoder="nvjpeg"), "cuda", hw) is hw
    assert not calls
    assert check_jpeg_kernels(config(image_codec="jpeg"), "cuda", hw).jpeg_kernels == "broken here"
    assert check_jpeg_kernels(config(image_codec="jpeg", jpeg_encoder="fgbg"), "cuda", hw).jpeg_kernels == "broken here"
    assert len(calls) == 2


def test_fgbg_probe_runs_the_kernels() -> None:
    """On the simulator (or a GPU) the probe codes a tiny batch and finds the CPU's bytes."""
    from engine.store.jpeg import fgbg_jpeg_problem

    assert fgbg_jpeg_problem() is None


def test_fgbg_stores_are_the_same_on_cpu_and_cuda(lossless: Path, tmp_path: Path) -> None:
    """--jpeg-encoder fgbg on the CPU and auto on CUDA (which takes fgbg where
    its kernels run: the simulator here) write the same store, byte for byte,
    within 40 dB of the lossless composites."""
    small = dict(height=32, width=48, positions=2, shard_size=8)
    generate(config(image_codec="jpeg", jpeg_encoder="fgbg", **small), tmp_path / "cpu.zarr")
    generate(config(image_codec="jpeg", **small), tmp_path / "gpu.zarr", RunOptions(device="cuda"))
    cpu, gpu = zarr.open_group(tmp_path / "cpu.zarr", mode="r"), zarr.open_group(tmp_path / "gpu.zarr", mode="r")
    assert gpu.attrs["fgbg"]["config"]["jpeg_encoder"] == cpu.attrs["fgbg"]["config"]["jpeg_encoder"] == "fgbg"
    assert list(gpu["images_jpeg"][:]) == list(cpu["images_jpeg"][:])
    for name in ("masks", "depth"):
        np.testing.assert_array_equal(gpu[name][:], cpu[name][:])
    out = tmp_path / "full.zarr"
    generate(config(image_codec="jpeg", jpeg_encoder="fgbg"), out)
    _check_jpeg_store(out, lossless, "fgbg")


@pytest.mark.gpu
@pytest.mark.parametrize("encoder", ["fgbg", "nvjpeg", "nvimgcodec", "nvimgcodec-streams"])
def test_real_gpu_jpeg_store(lossless: Path, tmp_path: Path, encoder: str) -> None:
    out = tmp_path / "gpu.zarr"
    generate(config(image_codec="jpeg", jpeg_encoder=encoder), out, RunOptions(device="cuda"))
    _check_jpeg_store(out, lossless, encoder)


def test_libjpeg_store_is_within_40_db(lossless: Path, tmp_path: Path) -> None:
    out = tmp_path / "lj.zarr"
    generate(config(image_codec="jpeg"), out)
    _check_jpeg_store(out, lossless, "libjpeg")
