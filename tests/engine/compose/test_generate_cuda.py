"""The CUDA engine writes the same store as the CPU engine, bit for bit.

Without a GPU these run the real CUDA path (streams, pinned buffers, events,
slot ring) on Numba's CUDA simulator, at tiny sizes; ``gpu``-marked tests
repeat it at full size where a GPU exists.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.compose.compositor_cuda import cuda_status, resolve_device
from engine.compose.generate import generate
from engine.config import DEFAULT_COMPRESSION_LEVEL, GenerateConfig, RunOptions
from engine.errors import ConfigError
from tests.engine.compose.test_generate import tree

#: the CPU writers' compressor name with the default level
CPU_NAME = f"cpu-zstd-{DEFAULT_COMPRESSION_LEVEL}"


def tiny(**overrides) -> GenerateConfig:
    """2 backgrounds x 2 cars x 2 flips x 3 positions = 24 samples of 16x24, 5 shards."""
    base = dict(builtin_backgrounds=2, builtin_foregrounds=2, height=16, width=24, positions=3,
                shard_size=5, chunk_size=5, scale_min=0.3, scale_max=0.9)
    return GenerateConfig(**{**base, **overrides})


@pytest.mark.parametrize("overrides", [
    {}, {"save_alpha": True, "image_codec": "none", "occlusion": "background"},
    {"objects_min": 2, "objects_max": 3, "max_overlap": 0.8, "save_alpha": True, "occlusion": "background"},
    {"truncation": 0.6, "placement": "uniform", "save_alpha": True, "occlusion": "background"},
    {"truncation": 0.6, "objects_min": 1, "objects_max": 3, "occlusion": "background"},
])
def test_cuda_store_equals_cpu_store(tmp_path: Path, overrides: dict) -> None:
    generate(tiny(**overrides), tmp_path / "cpu.zarr", RunOptions(device="cpu"))
    # compressor="cpu": on a real GPU auto is hybrid, whose nvCOMP frames differ (decoded arrays do not)
    report = generate(tiny(**overrides), tmp_path / "cuda.zarr", RunOptions(device="cuda", writer_threads=1, compressor="cpu"))
    assert report.device == "cuda"
    assert tree(tmp_path / "cuda.zarr") == tree(tmp_path / "cpu.zarr")


def test_cuda_shard_jobs_of_several_objects_equal_the_cpu_store(tmp_path: Path) -> None:
    """Two --shard jobs on the GPU path: per-object results through side files, the CPU store's bytes."""
    from engine.distributed import discover

    config = tiny(objects_min=1, objects_max=3, max_overlap=0.8, occlusion="background")
    generate(config, tmp_path / "cpu.zarr", RunOptions(device="cpu"))
    for part in ("1/2", "0/2"):
        generate(config, tmp_path / "cuda.zarr", RunOptions(device="cuda", compressor="cpu"), ranks=discover(part, {}))
    assert tree(tmp_path / "cuda.zarr") == tree(tmp_path / "cpu.zarr")


def test_cuda_atlas_reset_and_growth_keep_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tiny atlas budget forces resets between batches: the device copy must follow."""
    from engine.compose import compositor

    real_init = compositor.ForegroundAtlas.__init__

    def small_budget(self, foregrounds, max_bytes=0):
        real_init(self, foregrounds, max_bytes=1)

    monkeypatch.setattr(compositor.ForegroundAtlas, "__init__", small_budget)
    generate(tiny(), tmp_path / "cpu.zarr", RunOptions(device="cpu"))
    generate(tiny(), tmp_path / "cuda.zarr", RunOptions(device="cuda", compressor="cpu"))
    assert tree(tmp_path / "cuda.zarr") == tree(tmp_path / "cpu.zarr")


@pytest.fixture()
def nvcomp_stand_in(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The GPU compression path with the host stand-in for nvCOMP (which the
    simulator cannot run); returns the batches the compositor made."""
    import engine.compose.generate as gen
    from engine.compose.compositor_cuda import CudaCompositor
    from engine.compose.hardware import Hardware
    from engine.store.device_codec import HostZstdStandIn

    batches: list[object] = []
    original = CudaCompositor.composite

    def composite(self, p, **kwargs):  # type: ignore[no-untyped-def]
        batches.append(original(self, p, **kwargs))
        return batches[-1]

    monkeypatch.setattr(gen, "detect_hardware", lambda device: Hardware(cores=2, nvcomp=None, nvimgcodec="off"))
    monkeypatch.setattr(gen, "make_device_compressor", lambda: HostZstdStandIn(level=DEFAULT_COMPRESSION_LEVEL))
    monkeypatch.setattr(CudaCompositor, "composite", composite)
    return batches


@pytest.mark.parametrize("overrides", [
    {}, {"save_alpha": True, "occlusion": "background", "chunk_size": 2, "shard_size": 6},
    {"objects_max": 3, "max_overlap": 0.8, "chunk_size": 2, "shard_size": 6},
])
def test_device_compression_writes_the_cpu_stores_shards(tmp_path: Path, nvcomp_stand_in: list, overrides: dict) -> None:
    """Chunks compressed on the device (edge chunks padded there), assembled
    into shards: the same shard files as the CPU store, and nothing came back raw."""
    import json

    generate(tiny(**overrides), tmp_path / "cpu.zarr", RunOptions(device="cpu"))
    report = generate(tiny(**overrides), tmp_path / "gpu.zarr", RunOptions(device="cuda", compressor="nvcomp"))
    assert report.compressor == "host-zstd-stand-in" and report.writer_threads >= 2
    cpu, gpu = tree(tmp_path / "cpu.zarr"), tree(tmp_path / "gpu.zarr")
    assert cpu.keys() == gpu.keys()
    assert [k for k in cpu if cpu[k] != gpu[k]] == ["zarr.json"]  # only the attributes: who compressed
    attrs, cpu_attrs = (json.loads(t["zarr.json"])["attributes"]["fgbg"] for t in (gpu, cpu))
    assert attrs["writers"] == [{"compressor": "host-zstd-stand-in", "jpeg_encoder": None}]
    # the images never came back, yet the statistics were counted (on the device): the CPU store's
    assert attrs["stats"] == cpu_attrs["stats"] and attrs["stats"]["samples"] == 24
    assert all(b.histogram is not None for b in nvcomp_stand_in)
    assert nvcomp_stand_in and all(b.images is None and b.masks is None and b.depth is None and b.alpha is None
                                   for b in nvcomp_stand_in)
    # instances come back raw: the host counts each object's visible pixels from them
    assert all((b.instances is not None) == ("objects_max" in overrides) for b in nvcomp_stand_in)


def _route_alternately(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Force hybrid's choice: GPU, CPU, GPU, ... (whatever the writers' state); returns the choices."""
    import engine.compose.generate as gen

    choices: list[str] = []

    def alternate(cpu_busy: int, gpu_busy: int, cpu_writers: int, gpu_writers: int) -> str:
        choices.append("gpu" if len(choices) % 2 == 0 else "cpu")
        return choices[-1]

    monkeypatch.setattr(gen, "route_shard", alternate)
    return choices


@pytest.mark.parametrize("overrides", [
    {"save_alpha": True, "occlusion": "background", "chunk_size": 2, "shard_size": 6},
    {"objects_max": 3, "max_overlap": 0.8, "chunk_size": 2, "shard_size": 6},
    {"image_codec": "jpeg", "jpeg_encoder": "fgbg"},  # the encoder that writes the same bytes on both devices
])
def test_hybrid_writes_the_cpu_stores_shards(tmp_path: Path, nvcomp_stand_in: list, monkeypatch: pytest.MonkeyPatch,
                                             overrides: dict) -> None:
    """Shards compressed on the device and on the CPU within one run: the CPU store's
    shard files; the device ones brought nothing lossless back raw, the CPU ones all of it."""
    import json
    import threading

    from engine.store.device_codec import HostZstdStandIn

    choices = _route_alternately(monkeypatch)
    threads: set[str] = set()
    original = HostZstdStandIn.compress

    def compress(self, *args):  # type: ignore[no-untyped-def]
        threads.add(threading.current_thread().name.rsplit("_", 1)[0])
        return original(self, *args)

    monkeypatch.setattr(HostZstdStandIn, "compress", compress)
    generate(tiny(**overrides), tmp_path / "cpu.zarr", RunOptions(device="cpu"))
    report = generate(tiny(**overrides), tmp_path / "hybrid.zarr", RunOptions(device="cuda", compressor="hybrid"))
    assert threads == {"fgbg-writer-gpu"}  # the device side's own writers
    n_shards = len(choices)
    assert n_shards >= 4 and report.shards_written == n_shards
    cpu_name = CPU_NAME
    assert report.compressor == f"hybrid (host-zstd-stand-in + {cpu_name})"
    assert report.compressed_shards == {"host-zstd-stand-in": choices.count("gpu"), cpu_name: choices.count("cpu")}
    cpu, hybrid = tree(tmp_path / "cpu.zarr"), tree(tmp_path / "hybrid.zarr")
    assert cpu.keys() == hybrid.keys()
    assert [k for k in cpu if cpu[k] != hybrid[k]] == ["zarr.json"]  # only the attributes: who compressed
    attrs, cpu_attrs = (json.loads(t["zarr.json"])["attributes"]["fgbg"] for t in (hybrid, cpu))
    jpeg = overrides.get("jpeg_encoder")
    assert attrs["writers"] == [{"compressor": "host-zstd-stand-in", "jpeg_encoder": jpeg},
                                {"compressor": cpu_name, "jpeg_encoder": jpeg}]
    assert attrs.get("stats") == cpu_attrs.get("stats")
    for batch, side in zip(nvcomp_stand_in, choices):
        lossless_back = [batch.masks is not None, batch.depth is not None]
        assert lossless_back == ([False, False] if side == "gpu" else [True, True])
        assert bool(batch.compressed) == (side == "gpu")


def test_hybrid_routes_by_the_writers_state(tmp_path: Path, nvcomp_stand_in: list, monkeypatch: pytest.MonkeyPatch) -> None:
    """Unforced: route_shard decides every shard's launch from the writers' state
    (two writers: one per side), and the report counts every shard once."""
    import engine.compose.generate as gen
    from engine.compose.hardware import route_shard

    seen: list[tuple[int, int, int, int, str]] = []

    def recorded(*state: int) -> str:
        seen.append((*state, route_shard(*state)))
        return seen[-1][-1]

    monkeypatch.setattr(gen, "route_shard", recorded)
    report = generate(tiny(), tmp_path / "h.zarr", RunOptions(device="cuda", compressor="hybrid", writer_threads=2))
    assert report.writer_threads == 2 and len(seen) == report.shards_written == 5
    assert all(cpu_w == 1 and gpu_w == 1 for _, _, cpu_w, gpu_w, _ in seen)
    assert seen[0] == (0, 0, 1, 1, "cpu")  # nothing in flight: the CPU first
    assert sum(report.compressed_shards.values()) == 5


def test_hybrid_auto_and_resume(tmp_path: Path, nvcomp_stand_in: list, monkeypatch: pytest.MonkeyPatch) -> None:
    """auto = hybrid where nvCOMP runs; an interrupted hybrid store resumes to the CPU store's bytes,
    and info names both compressors."""
    from typer.testing import CliRunner

    import cli
    from engine.store.zarr_store import ZarrWriter

    _route_alternately(monkeypatch)
    generate(tiny(), tmp_path / "cpu.zarr", RunOptions(device="cpu"))
    calls = {"n": 0}
    original = ZarrWriter.write_shard

    def fail_third(self, index, batch):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(28, "No space left on device")
        return original(self, index, batch)

    monkeypatch.setattr(ZarrWriter, "write_shard", fail_third)
    with pytest.raises(OSError, match="No space left"):
        generate(tiny(), tmp_path / "h.zarr", RunOptions(device="cuda", writer_threads=1))
    monkeypatch.setattr(ZarrWriter, "write_shard", original)
    report = generate(tiny(), tmp_path / "h.zarr", RunOptions(device="cuda", resume=True))
    assert report.resumed and report.compressor.startswith("hybrid") and 0 < report.shards_written < 5
    cpu, hybrid = tree(tmp_path / "cpu.zarr"), tree(tmp_path / "h.zarr")
    assert [k for k in cpu if cpu[k] != hybrid.get(k)] == ["zarr.json"] and cpu.keys() == hybrid.keys()
    result = CliRunner().invoke(cli.app, ["info", str(tmp_path / "h.zarr")])
    assert result.exit_code == 0, result.output
    assert f"compressed by {CPU_NAME}, host-zstd-stand-in" in result.output


def test_hybrid_shard_jobs_record_each_shards_compressor(tmp_path: Path, nvcomp_stand_in: list,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Two --shard jobs, hybrid: each progress marker names its shard's compressor, folded
    into the attributes at the end; the shards are the CPU store's."""
    import json

    from engine.distributed import discover

    _route_alternately(monkeypatch)
    generate(tiny(), tmp_path / "cpu.zarr", RunOptions(device="cpu"))
    for part in ("1/2", "0/2"):
        generate(tiny(), tmp_path / "h.zarr", RunOptions(device="cuda", compressor="hybrid"), ranks=discover(part, {}))
    cpu, hybrid = tree(tmp_path / "cpu.zarr"), tree(tmp_path / "h.zarr")
    assert cpu.keys() == hybrid.keys() and [k for k in cpu if cpu[k] != hybrid[k]] == ["zarr.json"]
    attrs = json.loads(hybrid["zarr.json"])["attributes"]["fgbg"]
    assert attrs["progress"]["complete"]
    assert sorted(w["compressor"] for w in attrs["writers"]) == [CPU_NAME, "host-zstd-stand-in"]


def test_nvcomp_is_refused_where_it_cannot_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.compose.generate as gen
    from engine.compose.hardware import Hardware

    with pytest.raises(ConfigError, match="--compressor nvcomp: it runs on the GPU"):
        generate(tiny(), tmp_path / "a.zarr", RunOptions(device="cpu", compressor="nvcomp"))
    monkeypatch.setattr(gen, "detect_hardware", lambda device: Hardware(cores=2, nvcomp="nvCOMP is not installed"))
    with pytest.raises(ConfigError, match="--compressor nvcomp: nvCOMP is not installed"):
        generate(tiny(), tmp_path / "b.zarr", RunOptions(device="cuda", compressor="nvcomp"))
    with pytest.raises(ConfigError, match="--compressor hybrid: nvCOMP is not installed"):
        generate(tiny(), tmp_path / "b.zarr", RunOptions(device="cuda", compressor="hybrid"))
    report = generate(tiny(), tmp_path / "c.zarr", RunOptions(device="cuda"))  # auto: the CPU compresses
    assert report.compressor == CPU_NAME and report.compressed_shards == {CPU_NAME: 5}


def test_auto_never_picks_the_simulator() -> None:
    available, simulated = cuda_status()
    if simulated:
        assert resolve_device("auto") == "cpu"
    else:
        assert resolve_device("auto") == ("cuda" if available else "cpu")


def test_no_driver_means_no_gpu_without_importing_numba_cuda(tmp_path) -> None:
    """Without the CUDA driver library (a CPU machine) ``auto`` is decided by one
    dlopen: numba.cuda's import (~0.7 s of every generate) is not paid."""
    import os
    import subprocess
    import sys

    code = ("import sys; from engine.compose.compositor_cuda import cuda_status, cuda_driver_present; "
            "print(cuda_driver_present(), cuda_status(), 'numba.cuda' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env["NUMBA_CUDA_DRIVER"] = str(tmp_path / "no-libcuda.so")
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[3])
    assert run.stdout.split() == ["False", "(False,", "False)", "False"]


def test_cuda_without_a_gpu_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.compose.compositor_cuda as cc

    monkeypatch.setattr(cc, "cuda_status", lambda: (False, False))
    with pytest.raises(ConfigError, match="--device cuda: no CUDA GPU is available"):
        resolve_device("cuda")
    assert resolve_device("auto") == "cpu"
    with pytest.raises(ConfigError, match="--device must be"):
        resolve_device("tpu")


def test_the_stack_check_runs_a_kernel() -> None:
    """Under the simulator (or on a working GPU) the test kernel runs and checks out."""
    import engine.compose.compositor_cuda as cc

    if cuda_status()[0]:
        assert cc.cuda_stack_problem() is None


def test_a_broken_cuda_stack_is_one_line(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A driver that answers but a numba-cuda that cannot compile (as with numpy 2.5):
    --device cuda is a one-line error naming the versions, auto warns and uses the CPU."""
    import engine.compose.compositor_cuda as cc
    import kernels.probe_cuda

    def broken_compiler(*args, **kwargs):
        raise AttributeError("module 'numpy' has no attribute 'row_stack'")

    monkeypatch.setattr(cc, "cuda_status", lambda: (True, False))
    monkeypatch.setattr(kernels.probe_cuda, "run_probe", broken_compiler)
    problem = cc.cuda_stack_problem()
    assert problem is not None and "row_stack" in problem and "numpy" in problem and "\n" not in problem
    with pytest.raises(ConfigError, match="--device cuda: the GPU is there but a test kernel failed"):
        resolve_device("cuda")
    with caplog.at_level("WARNING"):
        assert resolve_device("auto") == "cpu"
    assert "using the CPU" in caplog.text


def test_cli_reports_a_broken_cuda_stack_in_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    import cli
    import engine.compose.compositor_cuda as cc

    monkeypatch.setattr(cc, "cuda_status", lambda: (True, False))
    monkeypatch.setattr(cc, "cuda_stack_problem", lambda: "a test kernel failed to compile or run (X: y); numpy 9")
    result = CliRunner().invoke(cli.app, ["generate", "--out", str(tmp_path / "s.zarr"), "--device", "cuda",
                                          "--builtin-backgrounds", "1", "--builtin-foregrounds", "1", "--limit", "4"])
    assert result.exit_code == 2
    assert "the GPU is there but a test kernel failed" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "s.zarr").exists()


@pytest.mark.gpu
@pytest.mark.parametrize("overrides", [{}, {"truncation": 0.5, "objects_max": 3, "occlusion": "background"}])
def test_real_gpu_store_equals_cpu_store(tmp_path: Path, overrides: dict) -> None:
    config = GenerateConfig(builtin_backgrounds=8, builtin_foregrounds=8, positions=4, shard_size=128, **overrides)
    generate(config, tmp_path / "cpu.zarr", RunOptions(device="cpu"))
    generate(config, tmp_path / "cuda.zarr", RunOptions(device="cuda", compressor="cpu"))
    assert tree(tmp_path / "cuda.zarr") == tree(tmp_path / "cpu.zarr")


@pytest.mark.gpu
def test_real_gpu_nvcomp_store_reads_like_the_cpu_store(tmp_path: Path) -> None:
    """nvCOMP's frames in a normal Zarr v3 store: zarr-python (and tensorstore,
    where installed) decode exactly the CPU store's arrays."""
    import json

    import numpy as np
    import zarr

    config = GenerateConfig(builtin_backgrounds=8, builtin_foregrounds=8, positions=4, shard_size=128, limit=1000)
    generate(config, tmp_path / "cpu.zarr", RunOptions(device="cpu"))
    report = generate(config, tmp_path / "gpu.zarr", RunOptions(device="cuda", compressor="nvcomp"))
    assert report.compressor == "nvcomp-zstd"
    cpu, gpu = zarr.open_group(tmp_path / "cpu.zarr", mode="r"), zarr.open_group(tmp_path / "gpu.zarr", mode="r")
    for name in ("images", "masks", "depth"):
        np.testing.assert_array_equal(gpu[name][:], cpu[name][:])
    attrs = json.loads((tmp_path / "gpu.zarr" / "zarr.json").read_text())["attributes"]["fgbg"]
    assert attrs["writers"][0]["compressor"] == "nvcomp-zstd"
    try:
        import tensorstore as ts
    except ImportError:
        return
    for name in ("images", "masks", "depth"):
        array = ts.open({"driver": "zarr3", "kvstore": f"file://{tmp_path / 'gpu.zarr' / name}"}).result()
        np.testing.assert_array_equal(array.read().result(), cpu[name][:])


@pytest.mark.gpu
def test_real_gpu_hybrid_store_reads_like_the_cpu_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hybrid with nvCOMP, both sides forced to take shards: zarr-python decodes the CPU store's arrays."""
    import numpy as np
    import zarr

    choices = _route_alternately(monkeypatch)
    config = GenerateConfig(builtin_backgrounds=8, builtin_foregrounds=8, positions=4, shard_size=128, limit=1000)
    generate(config, tmp_path / "cpu.zarr", RunOptions(device="cpu"))
    report = generate(config, tmp_path / "h.zarr", RunOptions(device="cuda", compressor="hybrid"))
    assert report.compressed_shards == {"nvcomp-zstd": choices.count("gpu"), CPU_NAME: choices.count("cpu")}
    assert min(report.compressed_shards.values()) > 0
    cpu, hybrid = zarr.open_group(tmp_path / "cpu.zarr", mode="r"), zarr.open_group(tmp_path / "h.zarr", mode="r")
    for name in ("images", "masks", "depth"):
        np.testing.assert_array_equal(hybrid[name][:], cpu[name][:])
